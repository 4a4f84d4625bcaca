"""The crypto payment provider: ETH quotes, what a payment seen on chain means, refunds, review.

    quotes.py    amounts and rates, quotes, payments on their way, what the customer sees
    watching.py  the chain watcher's findings: seen, moved, vanished, settled
    refunds.py   refunds to an address the customer confirms; the deposit paid in ETH
    review.py    staff accept or return the payments the rules sent to review
    provider.py  `CryptoProvider`: this package behind the providers' interface (../providers.py)

Plain functions over the session. They take what they need (`now`, `user`, data the chain
job read) and raise `CryptoError` with a message meant for the person. Nothing here talks
to the chain: app/jobs/chain.py does, through app/integrations/chain.py, and hands the
results to these functions (through this package's names below, never its modules).
Booking, the counter and the scheduler reach this provider through app/payments/providers.py.

The rules follow BTCPay Server's invoices:
- a quote locks the ETH amount for QUOTE_MINUTES; fiat stays the price of record;
- paid in full (or short by no more than CRYPTO_UNDERPAID_TOLERANCE_BPS): settled, the
  hire is confirmed;
- overpaid: settled, and the excess is refunded to an address the customer confirms;
- underpaid beyond the tolerance: "partial", sent to staff review;
- paid after the quote expired: "late", staff review; never accepted at the old rate;
- one transaction can never pay two bookings: a transaction naming several goes to review;
- paying a quote (or a hire) already paid: the whole payment is refunded.

There is no card to hold a deposit on, so a quote asks for the price plus the hire's
refundable deposit. Once paid, the deposit is a `deposit_hold` Payment (already received,
so "succeeded") under the rental charge; the counter keeps what the return costs and sends
the rest back (`settle_eth_deposit`, through `providers.capture_deposit`), and a
cancellation returns all of it.
"""

from .quotes import (BPS, PAID_HIRE_STATES, WEI_PER_ETH, CryptoError, CryptoUnavailable,
                     PaymentStatus, Rate, available, create_quote, crypto_payment_in_flight,
                     current_rate, cursor_key, format_eth, hire_payments,
                     hires_under_review, last_scanned_block, latest_quote, payment_keeps_hold,
                     payment_status, payments_cursor_key, pence_for_wei, quote_for_page,
                     report_wallet_tx, tolerance_wei, watch_needed, wei_for_pence)
from .refunds import (ask_for_refund_address, confirm_refund_address, new_refund, refundable,
                      request_crypto_refund, settle_eth_deposit)
from .review import (accept_reviewed, can_accept, refund_reviewed, review_count, review_queue,
                     value_now_pence)
from .watching import (SCAN_JOB_ID, Settlement, confirm_paid_hire, lock_cursor, mark_vanished,
                       move_block, queue_refund, record_deposit, record_seen, request_scan, settle)


__all__ = [
    "BPS", "PAID_HIRE_STATES", "WEI_PER_ETH", "CryptoError", "CryptoUnavailable", "PaymentStatus",
    "Rate", "available", "create_quote", "crypto_payment_in_flight", "current_rate", "cursor_key",
    "format_eth", "hire_payments", "hires_under_review", "last_scanned_block",
    "latest_quote", "payment_keeps_hold", "payment_status", "payments_cursor_key", "pence_for_wei",
    "quote_for_page", "report_wallet_tx", "tolerance_wei", "watch_needed", "wei_for_pence",
    "ask_for_refund_address", "confirm_refund_address", "new_refund", "refundable",
    "request_crypto_refund", "settle_eth_deposit",
    "accept_reviewed", "can_accept", "refund_reviewed", "review_count", "review_queue",
    "value_now_pence",
    "SCAN_JOB_ID", "Settlement", "confirm_paid_hire", "lock_cursor", "mark_vanished", "move_block",
    "queue_refund", "record_deposit", "record_seen", "request_scan", "settle",
]
