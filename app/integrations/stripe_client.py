"""Thin Stripe client: the real `stripe` SDK, an explicit timeout, a caller-chosen idempotency key.

Only jobs call it (app/jobs/payments.py). Every POST carries the FIXED idempotency key of
its business action ("hire:42:checkout:1", "refund:17"...): the SDK would otherwise invent
a random key per call, which protects only its own retries, so a job retried after Stripe
had answered would charge twice. The SDK's own retries are off (max_network_retries=0):
the job queue's bounded retries are the only ones, always with the same key.

Errors come back as three kinds a job can act on:
- StripeUnavailable: no answer or a 5xx/429/409 — retry later with the same key;
- CardDeclined: the bank said no — record it and tell the customer; retrying is pointless;
- StripeRejected: Stripe refused our request (4xx) — a bug or a state conflict, not retried.

In development, with no STRIPE_API_BASE, the local stand-in (devtools/stripe_standin) is
started in a background thread on first use. Never outside development.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import stripe
from flask import current_app

from ..logging_setup import log
from ..settings import settings as portal_settings

DEV_STANDIN_API_KEY = "sk_test_standin_development_only"
WEBHOOK_PATH = "/pay/webhooks/stripe"


class StripeNotConfigured(Exception):
    """No Stripe key (production without secrets): card payment is not offered."""


class StripeUnavailable(Exception):
    """Stripe did not answer usefully (timeout, connection, 5xx, 429): retry with the same key."""


class StripeRejected(Exception):
    """Stripe refused the request itself (4xx other than a card decline)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class CardDeclined(Exception):
    """The card was declined; `message` is Stripe's customer-facing explanation."""

    def __init__(self, message: str, code: str = "", decline_code: str = "",
                 payment_intent: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.decline_code = decline_code
        self.payment_intent = payment_intent or {}


@dataclass(frozen=True)
class Settings:
    api_key: str
    api_base: str  # "" means Stripe itself
    webhook_secret: str
    connect_timeout: float
    read_timeout: float


_standin_lock = threading.Lock()
_dev_standin: Any = None  # the stand-in this process started (development only)
_clients: dict[Settings, stripe.StripeClient] = {}


def _uses_dev_standin() -> bool:
    card = portal_settings().payments
    return (not card.stripe_api_base and current_app.config["ENV_NAME"] == "development"
            and bool(card.stripe_dev_standin))


def is_configured() -> bool:
    """Card payments can be offered (without starting anything)."""
    return bool(portal_settings().payments.stripe_secret_key) or _uses_dev_standin()


def settings() -> Settings:
    card = portal_settings().payments
    base, key, secret = card.stripe_api_base, card.stripe_secret_key, card.stripe_webhook_secret
    if _uses_dev_standin():
        from devtools.stripe_standin import DEFAULT_WEBHOOK_SECRET
        base = ensure_dev_standin()
        key = key or DEV_STANDIN_API_KEY
        secret = secret or DEFAULT_WEBHOOK_SECRET
    if not key:
        raise StripeNotConfigured("STRIPE_SECRET_KEY is not set")
    return Settings(key, base, secret, float(card.stripe_connect_timeout_seconds),
                    float(card.stripe_read_timeout_seconds))


def webhook_secret() -> str:
    """The secret webhooks are signed with; "" when none is configured (all are refused)."""
    secret = portal_settings().payments.stripe_webhook_secret
    if secret:
        return secret
    if _uses_dev_standin():
        from devtools.stripe_standin import DEFAULT_WEBHOOK_SECRET
        return DEFAULT_WEBHOOK_SECRET
    return ""


def ensure_dev_standin() -> str:
    """Development only: start the Stripe stand-in in this process (once); return its URL."""
    global _dev_standin
    cfg = current_app.config
    if cfg["ENV_NAME"] != "development":
        raise RuntimeError("The Stripe stand-in is for development only.")
    port = int(portal_settings().payments.stripe_dev_standin_port)
    with _standin_lock:
        if _dev_standin is None:
            from devtools.stripe_standin import StripeStandin
            webhook_url = cfg["PUBLIC_BASE_URL"].rstrip("/") + WEBHOOK_PATH
            try:
                _dev_standin = StripeStandin("127.0.0.1", port, webhook_url=webhook_url).start()
            except OSError:
                # Another process of this development setup (web or worker) already runs it.
                log().info("stripe stand-in already running", port=port)
                return f"http://127.0.0.1:{port}"
            log().info("stripe stand-in started", url=_dev_standin.url, webhooks=webhook_url)
        return _dev_standin.url


def client() -> stripe.StripeClient:
    current = settings()
    found = _clients.get(current)
    if found is None:
        http = stripe.RequestsClient(timeout=(current.connect_timeout, current.read_timeout))
        options: dict[str, Any] = {"max_network_retries": 0, "http_client": http}
        if current.api_base:
            options["base_addresses"] = {"api": current.api_base}
        found = _clients[current] = stripe.StripeClient(current.api_key, **options)
    return found


def _call(operation: Callable[[], Any], what: str, key: str | None = None) -> dict:
    """Run one SDK call; translate its errors; give back a plain dict."""
    try:
        result = operation()
    except stripe.CardError as exc:
        err = exc.error
        intent = getattr(err, "payment_intent", None) if err is not None else None
        raise CardDeclined(exc.user_message or "Your card was declined.", exc.code or "",
                           getattr(err, "decline_code", None) or "",
                           intent.to_dict() if intent is not None else None) from exc
    except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
        log().warning("stripe unavailable", call=what, key=key, error=type(exc).__name__,
                      status=getattr(exc, "http_status", None))
        raise StripeUnavailable(f"{what}: {type(exc).__name__}") from exc
    except stripe.IdempotencyError as exc:
        # Our key reused with other parameters: a bug, never retried blindly.
        log().error("stripe idempotency error", call=what, key=key)
        raise StripeRejected(str(exc.user_message or exc), "idempotency_error") from exc
    except stripe.StripeError as exc:
        if (exc.http_status or 0) >= 500 or exc.http_status == 409:
            raise StripeUnavailable(f"{what}: HTTP {exc.http_status}") from exc
        raise StripeRejected(str(exc.user_message or exc), exc.code or "") from exc
    return result.to_dict()


def _options(key: str) -> dict:
    return {"idempotency_key": key}


# --- the calls the portal makes ----------------------------------------------------------

def create_checkout_session(params: dict, *, key: str) -> dict:
    return _call(lambda: client().v1.checkout.sessions.create(params, _options(key)),
                 "checkout.sessions.create", key)


def retrieve_checkout_session(session_id: str) -> dict:
    return _call(lambda: client().v1.checkout.sessions.retrieve(
        session_id, {"expand": ["payment_intent.payment_method"]}), "checkout.sessions.retrieve")


def expire_checkout_session(session_id: str, *, key: str) -> dict:
    return _call(lambda: client().v1.checkout.sessions.expire(session_id, None, _options(key)),
                 "checkout.sessions.expire", key)


def create_payment_intent(params: dict, *, key: str) -> dict:
    return _call(lambda: client().v1.payment_intents.create(params, _options(key)),
                 "payment_intents.create", key)


def retrieve_payment_intent(intent_id: str) -> dict:
    return _call(lambda: client().v1.payment_intents.retrieve(intent_id),
                 "payment_intents.retrieve")


def capture_payment_intent(intent_id: str, amount_pence: int, *, key: str) -> dict:
    return _call(lambda: client().v1.payment_intents.capture(
        intent_id, {"amount_to_capture": amount_pence}, _options(key)),
        "payment_intents.capture", key)


def cancel_payment_intent(intent_id: str, *, key: str) -> dict:
    return _call(lambda: client().v1.payment_intents.cancel(intent_id, None, _options(key)),
                 "payment_intents.cancel", key)


def create_refund(params: dict, *, key: str) -> dict:
    return _call(lambda: client().v1.refunds.create(params, _options(key)), "refunds.create", key)


def construct_event(payload: bytes, signature: str | None) -> dict:
    """Verify a webhook's signature over the raw body; raise ValueError if it is not Stripe's."""
    secret = webhook_secret()
    if not secret:
        raise ValueError("no webhook secret configured")
    try:
        event = stripe.Webhook.construct_event(
            payload, signature or "", secret,
            tolerance=portal_settings().payments.stripe_webhook_tolerance_seconds)
    except stripe.SignatureVerificationError as exc:
        raise ValueError(f"bad signature: {exc.user_message or exc}") from exc
    return event.to_dict()
