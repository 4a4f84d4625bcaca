"""The card payment provider (Stripe): checkout, charges, deposit holds, refunds, webhooks.

    checkout.py  starting a payment (a Checkout Session) and what the customer sees
    charges.py   a charge's outcome (then the hire is settled), charges on the saved card
    deposits.py  deposit holds on the saved card: place, authorise, capture, release
    refunds.py   card refund rows, their Stripe parameters and outcome
    webhooks.py  Stripe's events: stored once, applied once
    provider.py  `CardProvider`: this package behind the providers' interface (../providers.py)

Plain functions over the session, taking `now` and the people involved, raising
`PaymentError` (app/payments/ledger.py) with a message for the customer or staff. Nothing
here talks to Stripe: services record what should happen (a Payment row with its fixed
idempotency key) and enqueue a job (app/jobs/payments.py) that makes the call; the job
hands Stripe's answer back to an `apply_*`/`record_*` function here (through this
package's names below, never its modules). Webhook events arrive the same way.

Exactly once: each business action has one Payment row (unique idempotency key, also
sent to Stripe), payments move only forward (`Payment.move_to`), rows are re-read under a
row lock before they change (`ledger.lock_payment`), and `settle_paid_hire` — run whenever
a charge is seen to have succeeded, by the webhook or the customer's return from Checkout,
whichever comes first, as often as it likes — confirms the hire through booking's
`confirm_hire` (itself idempotent: one transition, one email) and gives back any money the
hire does not owe. Booking, the counter and the scheduler reach this provider through
app/payments/providers.py.
"""

from ..ledger import lock_payment, payments_of
from .charges import (apply_checkout_session, charge_saved_card, confirm_hire_after_payment,
                      record_charge_declined, record_charge_succeeded, saved_card_params,
                      settle_paid_hire)
from .checkout import (STALLED_MESSAGE, UNDER_REVIEW_MESSAGE, UNREACHABLE_MESSAGE, CardStatus,
                       cancel_if_unpayable, card_status, checkout_close_key, close_open_checkouts,
                       record_checkout_closed, checkout_params, recheck_returned_checkout,
                       record_attempt_error, record_checkout_created, record_checkout_return,
                       record_start_refused, start_card_checkout, under_review)
from .deposits import (capture_hold, deposit_hold_params, due_deposit_holds, hold_unwanted,
                       place_deposit_hold, place_due_deposit_holds, record_deposit_settle_refused,
                       record_deposit_settled, record_hold_authorised, record_hold_failed,
                       record_hold_not_placed, record_hold_released, release_hold,
                       release_stranded_holds)
from .refunds import new_card_refund, record_refund_created, refund_params, send_card_refund
from .webhooks import SUBSCRIBED_EVENTS, apply_refund_event, payment_from, process_event, store_event


__all__ = [
    "lock_payment", "payments_of",
    "apply_checkout_session", "charge_saved_card", "confirm_hire_after_payment",
    "record_charge_declined", "record_charge_succeeded", "saved_card_params", "settle_paid_hire",
    "STALLED_MESSAGE", "UNDER_REVIEW_MESSAGE", "UNREACHABLE_MESSAGE", "CardStatus",
    "cancel_if_unpayable", "card_status", "checkout_close_key", "close_open_checkouts",
    "record_checkout_closed", "checkout_params", "recheck_returned_checkout",
    "record_attempt_error", "record_checkout_created", "record_checkout_return",
    "record_start_refused", "start_card_checkout", "under_review",
    "capture_hold", "deposit_hold_params", "due_deposit_holds", "hold_unwanted", "place_deposit_hold",
    "place_due_deposit_holds", "record_deposit_settle_refused", "record_deposit_settled",
    "record_hold_authorised", "record_hold_failed", "record_hold_not_placed", "record_hold_released",
    "release_hold", "release_stranded_holds",
    "new_card_refund", "record_refund_created", "refund_params", "send_card_refund",
    "SUBSCRIBED_EVENTS", "apply_refund_event", "payment_from", "process_event", "store_event",
]
