"""Facts one area reports and another acts on: the only thing payments and booking share.

Payment providers say what happened to the money ("the rental of hire X is paid"); the hire
lifecycle (app/booking/lifecycle.py) subscribes and decides what follows (confirm the hire,
email the customer). So payments never imports booking: the dependency runs one way,
booking -> payments, and both import this module, which imports nothing of the app.

Signals are blinker's (Flask's own dependency). `report` sends one and refuses a fact
nobody listens to: a payment whose hire is never confirmed must fail loudly, not quietly.
Receivers run synchronously in the sender's thread and transaction, and their exceptions
reach the sender (blinker does not catch them), so a sender still sees, say, a hire that
can no longer be confirmed.
"""

from __future__ import annotations

from typing import Any

from blinker import Namespace, Signal

_signals = Namespace()

rental_paid = _signals.signal("rental-paid", doc="""\
The rental price of a held hire has been paid (a card checkout succeeded, a crypto payment
settled or was accepted after review), or more was paid towards the price of a hire
already confirmed (the difference of a change to a dearer booking). Sender: the Hire;
keyword `now`, and optionally `amount_pence` (what this payment brought towards the price)
and `payment_key` (the payment's idempotency key). The lifecycle confirms a held hire
(held -> confirmed, one email) or, for one already confirmed, has paperwork invoice what
the payment paid that was not invoiced yet; it commits, and raises InvalidTransition when
the hold already ended.""")

refund_requested = _signals.signal("refund-requested", doc="""\
Money is being given back for a hire (`request_refund` recorded the refund and queued it).
Sender: the Hire; keywords `amount_pence`, `reason`, `key` (the refund's idempotency key,
the same for a repeated request), `by` (the person asking, or None) and `now`. Paperwork
issues the credit note (once per key); it commits.""")
hire_extended = _signals.signal("hire-extended", doc="""\
A hire was extended (issue 18). Sender: the Hire, already committed with its new end;
keywords `old_end`, `new_end`, `extra_pence`, `by` (the User), `now`. The seam for the
rental agreement's addendum (the paperwork area subscribes); sent with `signal.send`, not
`report`, because an extension is complete without it.""")

customer_documents = _signals.signal("customer-documents", doc="""\
"Download my data" collects the documents held about a customer (issue 18). Sender: the
User. Each receiver returns a list of (file name, bytes) to put in the ZIP's documents/
folder: the seam for the rental agreements and invoices (the paperwork area subscribes).""")

customer_erased = _signals.signal("customer-erased", doc="""\
A customer's account was erased (issue 18), committed. Sender: the User (pseudonymised);
keyword `now`. The seam for the paperwork area: rental agreements hold the signature and
licence details that must go; invoices (name and address) stay.""")


class NobodyListening(RuntimeError):
    """A fact was reported before its subscriber was imported (a wiring bug, never data)."""


def report(signal: Signal, sender: Any, **facts: Any) -> None:
    """Send `signal` to its receivers; a fact without a receiver is a bug, so raise."""
    if not signal.receivers:
        raise NobodyListening(f"nobody subscribes to {signal.name!r}")
    signal.send(sender, **facts)
