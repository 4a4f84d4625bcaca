"""Payments: the money of a hire, taken and given back by two payment providers.

    ledger.py      the money record both providers share: what was paid, what is owed, the
                   deposit, the receipt's lines; PaymentError
    providers.py   the one interface booking, the counter and the scheduler talk to: a
                   provider per `Payment.method` (prepare a payment, take, capture or
                   release the deposit, refund, describe); it imports no provider: each
                   provider package implements it (card/provider.py, crypto/provider.py)
                   and this module registers both
    refunds.py     giving money back: split over the hire's charges, each through its provider
    card/          the card provider (Stripe): checkout, charges, deposits, refunds, webhooks
    crypto/        the crypto provider (ETH): quotes, watching the chain, refunds, review
    routes.py, forms.py                 card pages and Stripe's webhook (/pay)
    crypto_routes.py, crypto_forms.py   crypto pages and staff review, on the same blueprint

Other areas import only the names below (`from ..payments import ...`), never a provider's
modules. The providers' jobs (app/jobs/payments.py, app/jobs/chain.py) use the names their
provider package exports.
"""

from flask import Blueprint

from .card import (charge_saved_card, due_deposit_holds, place_deposit_hold, place_due_deposit_holds,
                   record_hold_failed, release_stranded_holds)
from .crypto import hires_under_review, payment_keeps_hold, review_count
from .ledger import (CARD, CHECKOUT, CRYPTO, EXTENSION, OWING_STATES, SAVED_CARD, PaymentError,
                     PaymentNotFound, RefundError, active_hold, amount_due_pence, describe,
                     eth_deposit, latest_hold, net_paid_pence, payments_of,
                     receipt_lines, rental_paid_pence, saved_card_of)
from .providers import (PaymentProvider, capture_deposit, ensure_deposit_hold, provider_for,
                        register, release_deposit, take_deposit)
from .refunds import MoneyBack, money_back, request_refund
from .card.provider import CardProvider
from .crypto.provider import CryptoProvider

# The two providers behind the one interface (providers.py), registered once, here.
register(CardProvider())
register(CryptoProvider())

__all__ = [
    "bp",
    "charge_saved_card", "due_deposit_holds", "place_deposit_hold", "place_due_deposit_holds",
    "record_hold_failed", "release_stranded_holds",
    "hires_under_review", "payment_keeps_hold", "review_count",
    "CARD", "CHECKOUT", "CRYPTO", "EXTENSION", "OWING_STATES", "SAVED_CARD", "PaymentError", "PaymentNotFound",
    "RefundError", "active_hold", "amount_due_pence", "describe", "eth_deposit",
    "latest_hold", "net_paid_pence", "payments_of", "receipt_lines", "rental_paid_pence",
    "saved_card_of",
    "PaymentProvider", "capture_deposit", "ensure_deposit_hold", "provider_for",
    "release_deposit", "take_deposit",
    "MoneyBack", "money_back", "request_refund",
]

bp = Blueprint("payments", __name__)

from . import crypto_routes, routes  # noqa: E402,F401  (the blueprint's views, once bp exists)
