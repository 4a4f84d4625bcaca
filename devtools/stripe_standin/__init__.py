"""A local, Stripe-compatible HTTP server for development, tests and the offline demo.

The real `stripe` SDK talks to it (`base_addresses={"api": standin.url}`). It implements
what the portal uses — Checkout Sessions with a hosted card page, PaymentIntents (manual
capture, capture, cancel), Refunds, Customers, PaymentMethods — honours Idempotency-Key
like Stripe (same key and parameters: the same answer; other parameters: 400), declines
Stripe's documented test cards, sends signed webhooks, records every request and object,
and has switches to answer slowly or with 500s.

    standin = start(webhook_url="http://127.0.0.1:5000/pay/webhooks/stripe")  # a thread
    python -m devtools.stripe_standin --port 12111 --webhook-url ...          # a process
"""

from .server import DEFAULT_WEBHOOK_SECRET, StripeStandin, sign_payload

__all__ = ["DEFAULT_WEBHOOK_SECRET", "StripeStandin", "sign_payload", "start"]


def start(host: str = "127.0.0.1", port: int = 0, **options) -> StripeStandin:
    """Start a stand-in in background threads and return it (`.url`, `.stop()`)."""
    return StripeStandin(host, port, **options).start()
