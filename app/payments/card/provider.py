"""The card provider's side of the payment providers' one interface (app/payments/providers.py):
Stripe Checkout for the price, a hold on the saved card for the deposit. Thin: each method
is a function of this package. app/payments/__init__.py registers it."""

from __future__ import annotations

from ...logging_setup import log
from ...models import Payment
from ..ledger import CARD, PaymentError, latest_hold
from ..providers import PaymentProvider
from .checkout import close_open_checkouts, start_card_checkout
from .deposits import capture_hold, place_deposit_hold, release_hold
from .refunds import new_card_refund, send_card_refund


class CardProvider(PaymentProvider):
    """Stripe: Checkout for the price, a hold on the saved card for the deposit."""

    method = CARD

    def prepare_payment(self, hire, user, *, now, **details):
        return start_card_checkout(hire, user, now=now, **details)

    def take_deposit(self, hire, *, by, now):
        try:
            return place_deposit_hold(hire, now=now, by=by)
        except PaymentError as exc:
            log().info("no deposit hold at pickup", hire_id=hire.id, reason=exc.message)
            return None

    def capture_deposit(self, hire, hold, amount_pence, by, *, now, reason):
        return capture_hold(hire, hold, amount_pence, by, now=now, reason=reason)

    def release_holds(self, hire, by, *, now, reason):
        close_open_checkouts(hire, now=now)
        hold = latest_hold(hire)
        if hold is None or hold.method != CARD:
            return None
        return release_hold(hold.id, by, now=now, reason=reason)

    def prepare_refund(self, hire, charge, amount_pence, reason, by, *, key, now):
        return new_card_refund(hire, charge, amount_pence, reason, by, key=key, now=now)

    def execute_refund(self, prepared: Payment) -> Payment:
        return send_card_refund(prepared)
