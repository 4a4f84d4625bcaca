"""The crypto provider's side of the payment providers' one interface (app/payments/providers.py):
a quote for the price plus the deposit; refunds to an address the customer confirms. Thin:
each method is a function of this package. app/payments/__init__.py registers it."""

from __future__ import annotations

from ...models import CryptoRefund, Payment
from ..ledger import CRYPTO, RefundError, eth_deposit
from ..providers import PaymentProvider
from .quotes import CryptoError, create_quote
from .refunds import request_crypto_refund, settle_eth_deposit


class CryptoProvider(PaymentProvider):
    """ETH: a quote for the price plus the deposit; refunds to an address the customer confirms."""

    method = CRYPTO

    def prepare_payment(self, hire, user, *, now, **details):
        return create_quote(hire, now)

    def take_deposit(self, hire, *, by, now):
        return eth_deposit(hire)  # paid with the price: already taken

    def capture_deposit(self, hire, hold, amount_pence, by, *, now, reason):
        return settle_eth_deposit(hire, hold, amount_pence, by, now=now, reason=reason)

    def prepare_refund(self, hire, charge, amount_pence, reason, by, *, key, now):
        # The crypto refund records and commits its own rows when it is executed.
        return (hire, amount_pence, reason, by, key, now)

    def execute_refund(self, prepared) -> Payment:
        hire, amount_pence, reason, by, key, now = prepared
        try:
            refund: CryptoRefund = request_crypto_refund(
                hire, amount_pence, reason, by, idempotency_key=key, now=now)
        except CryptoError as exc:
            raise RefundError(str(exc)) from exc
        return refund.payment
