"""The stand-in's memory: every object, request and event, and the API behaviour over them.

Only what the portal uses is implemented, but that part behaves like Stripe: object shapes,
error bodies (so the real SDK raises CardError, IdempotencyError, InvalidRequestError...),
idempotent replays, test-card declines, manual capture and partial refunds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import cards
from .encoding import as_bool, as_int

API_VERSION = "2025-10-29.clover"
CHECKOUT_MIN_EXPIRY_SECONDS = 30 * 60
CHECKOUT_MAX_EXPIRY_SECONDS = 24 * 60 * 60
CHECKOUT_DEFAULT_EXPIRY_SECONDS = 24 * 60 * 60
# Card networks let an authorisation live about seven days before it lapses.
AUTHORISATION_LIFETIME_SECONDS = 7 * 24 * 60 * 60
MIN_AMOUNT = 1


class ApiError(Exception):
    """An error answer in Stripe's shape: {"error": {"type", "code", "message", ...}}."""

    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, decline_code: str | None = None,
                 extra: dict | None = None, saved: bool = True):
        super().__init__(message)
        self.status = status
        self.error = {"type": type_, "message": message}
        if code:
            self.error["code"] = code
        if param:
            self.error["param"] = param
        if decline_code:
            self.error["decline_code"] = decline_code
        self.error.update(extra or {})
        # Stripe keeps an idempotent result once the request started executing (a decline
        # is replayed on retry), not when the parameters failed validation.
        self.saved = saved

    def body(self) -> dict:
        return {"error": self.error}


def invalid(message: str, param: str | None = None, code: str | None = "parameter_invalid") -> ApiError:
    return ApiError(400, "invalid_request_error", message, code=code, param=param, saved=False)


def missing(param: str) -> ApiError:
    return ApiError(400, "invalid_request_error", f"Missing required param: {param}.",
                    code="parameter_missing", param=param, saved=False)


def not_found(kind: str, ident: str, param: str = "id") -> ApiError:
    return ApiError(404, "invalid_request_error", f"No such {kind}: '{ident}'",
                    code="resource_missing", param=param, saved=False)


@dataclass
class Recorded:
    """One request as the stand-in saw it."""

    method: str
    path: str
    params: dict
    idempotency_key: str | None
    status: int = 0
    replayed: bool = False
    fault: str = ""
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {"method": self.method, "path": self.path, "params": self.params,
                "idempotency_key": self.idempotency_key, "status": self.status,
                "replayed": self.replayed, "fault": self.fault, "at": self.at}


def _fingerprint(method: str, path: str, params: dict) -> str:
    return hashlib.sha256(json.dumps([method, path, params], sort_keys=True).encode()).hexdigest()


class StripeState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.objects: dict[str, dict] = {}
        self.events: list[dict] = []
        self.requests: list[Recorded] = []
        self._idempotent: dict[str, dict] = {}
        self._in_flight: set[str] = set()
        self.event_listeners: list[Callable[[dict], None]] = []
        self.base_url = ""  # where the hosted pages live, set by the server
        self.clock: Callable[[], float] = time.time

    # --- helpers ------------------------------------------------------------------
    def now(self) -> int:
        return int(self.clock())

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(12)}"

    def put(self, obj: dict) -> dict:
        self.objects[obj["id"]] = obj
        return obj

    def get(self, ident: str, kind: str, label: str, param: str = "id") -> dict:
        obj = self.objects.get(ident)
        if obj is None or obj["object"] != kind:
            raise not_found(label, ident, param)
        return obj

    @staticmethod
    def public(obj: Any) -> Any:
        """The object as the API shows it: without the stand-in's private `_fields`."""
        if isinstance(obj, dict):
            return {k: StripeState.public(v) for k, v in obj.items() if not k.startswith("_")}
        if isinstance(obj, list):
            return [StripeState.public(v) for v in obj]
        return copy.deepcopy(obj)

    def expanded(self, obj: dict, expand: list[str] | None) -> dict:
        view = self.public(obj)
        for path in expand or []:
            self._expand(view, path.split("."))
        return view

    def _expand(self, node: Any, parts: list[str]) -> None:
        if not parts or not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        value = node.get(head)
        if isinstance(value, str) and value in self.objects:
            node[head] = value = self.public(self.objects[value])
        if rest:
            self._expand(value, rest)

    def emit(self, type_: str, obj: dict, *, idempotency_key: str | None = None) -> dict:
        event = {
            "id": self.new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": self.now(), "type": type_, "livemode": False, "pending_webhooks": 1,
            "data": {"object": self.public(obj)},
            "request": {"id": self.new_id("req"), "idempotency_key": idempotency_key},
        }
        self.events.append(event)
        for listener in list(self.event_listeners):
            listener(event)
        return event

    # --- idempotency ----------------------------------------------------------------
    def begin(self, key: str | None, method: str, path: str, params: dict) -> tuple[int, dict] | None:
        """A stored answer to replay, or None to execute. Raises on misuse of a key."""
        if not key:
            return None
        stored = self._idempotent.get(key)
        if stored is not None:
            if stored["fingerprint"] != _fingerprint(method, path, params):
                raise ApiError(400, "idempotency_error", (
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request."), saved=False)
            return stored["status"], copy.deepcopy(stored["body"])
        if key in self._in_flight:
            raise ApiError(409, "idempotency_error", (
                "There is currently another in-progress request using this Idempotent Key "
                "(that probably means you submitted twice, and the other request is still "
                "going through). Please retry your request."), code="idempotency_key_in_use",
                saved=False)
        self._in_flight.add(key)
        return None

    def finish(self, key: str | None, method: str, path: str, params: dict, status: int,
               body: dict, save: bool) -> None:
        if not key:
            return
        self._in_flight.discard(key)
        if save:
            self._idempotent[key] = {"fingerprint": _fingerprint(method, path, params),
                                     "status": status, "body": copy.deepcopy(body)}

    # --- customers and payment methods ----------------------------------------------------
    def create_customer(self, p: dict, **_: Any) -> dict:
        return self.put({"id": self.new_id("cus"), "object": "customer", "created": self.now(),
                         "email": p.get("email"), "name": p.get("name"),
                         "metadata": p.get("metadata") or {}, "livemode": False})

    def retrieve_customer(self, p: dict, ident: str, **_: Any) -> dict:
        return self.get(ident, "customer", "customer")

    def _payment_method(self, number: str, customer: str | None) -> dict:
        number = cards.normalise(number)
        return self.put({
            "id": self.new_id("pm"), "object": "payment_method", "type": "card",
            "created": self.now(), "customer": customer, "livemode": False, "metadata": {},
            "card": {"brand": cards.brand_for(number), "last4": number[-4:], "exp_month": 12,
                     "exp_year": 2034, "country": "GB", "funding": "credit"},
            "_number": number,
        })

    def retrieve_payment_method(self, p: dict, ident: str, **_: Any) -> dict:
        return self.get(ident, "payment_method", "PaymentMethod")

    def _card_number_of(self, pm_id: str) -> str:
        if pm_id in cards.TEST_PAYMENT_METHODS:
            return cards.TEST_PAYMENT_METHODS[pm_id]
        return self.get(pm_id, "payment_method", "PaymentMethod", "payment_method")["_number"]

    # --- charges ------------------------------------------------------------------
    def _charge(self, pi: dict, pm_id: str, captured: bool) -> dict:
        number = self._card_number_of(pm_id)
        details = {"brand": cards.brand_for(number), "last4": number[-4:], "exp_month": 12,
                   "exp_year": 2034, "country": "GB"}
        if not captured:
            details["capture_before"] = self.now() + AUTHORISATION_LIFETIME_SECONDS
        return self.put({
            "id": self.new_id("ch"), "object": "charge", "created": self.now(),
            "amount": pi["amount"], "amount_captured": pi["amount"] if captured else 0,
            "amount_refunded": 0, "captured": captured, "refunded": False, "paid": True,
            "status": "succeeded", "currency": pi["currency"], "customer": pi["customer"],
            "payment_intent": pi["id"], "payment_method": pm_id, "metadata": pi["metadata"],
            "payment_method_details": {"type": "card", "card": details},
            "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0},
            "livemode": False,
        })

    # --- payment intents --------------------------------------------------------------
    def _new_payment_intent(self, *, amount: int, currency: str, customer: str | None,
                            metadata: dict, capture_method: str, setup_future_usage: str | None,
                            description: str | None, payment_method: str | None) -> dict:
        return self.put({
            "id": self.new_id("pi"), "object": "payment_intent", "created": self.now(),
            "amount": amount, "amount_capturable": 0, "amount_received": 0,
            "currency": currency, "customer": customer, "metadata": metadata,
            "capture_method": capture_method, "confirmation_method": "automatic",
            "setup_future_usage": setup_future_usage, "description": description,
            "payment_method": payment_method, "payment_method_types": ["card"],
            "status": "requires_payment_method", "latest_charge": None,
            "last_payment_error": None, "cancellation_reason": None, "canceled_at": None,
            "client_secret": None, "livemode": False,
        })

    def _confirm(self, pi: dict, pm_id: str, *, off_session: bool, key: str | None) -> ApiError | None:
        """Try the card; on success the intent moves on, on decline it waits for another card."""
        outcome = cards.outcome_for(self._card_number_of(pm_id), later=off_session)
        pi["payment_method"] = pm_id
        if pi["client_secret"] is None:
            pi["client_secret"] = f"{pi['id']}_secret_{secrets.token_hex(8)}"
        if outcome.declined:
            error = {"type": "card_error", "code": outcome.code, "message": outcome.message,
                     "decline_code": outcome.decline_code, "payment_method": {"id": pm_id}}
            pi.update(status="requires_payment_method", last_payment_error=error)
            self.emit("payment_intent.payment_failed", pi, idempotency_key=key)
            return ApiError(402, "card_error", outcome.message, code=outcome.code,
                            decline_code=outcome.decline_code,
                            extra={"payment_intent": self.public(pi)})
        manual = pi["capture_method"] == "manual"
        charge = self._charge(pi, pm_id, captured=not manual)
        pi.update(latest_charge=charge["id"], last_payment_error=None)
        if pi["setup_future_usage"] and pi["customer"]:
            pm = self.objects.get(pm_id)
            if pm is not None:
                pm["customer"] = pi["customer"]
        if manual:
            pi.update(status="requires_capture", amount_capturable=pi["amount"])
            self.emit("payment_intent.amount_capturable_updated", pi, idempotency_key=key)
        else:
            pi.update(status="succeeded", amount_received=pi["amount"])
            self.emit("charge.succeeded", charge, idempotency_key=key)
            self.emit("payment_intent.succeeded", pi, idempotency_key=key)
        return None

    def create_payment_intent(self, p: dict, key: str | None = None, **_: Any) -> dict:
        amount = as_int(p.get("amount"))
        if amount is None:
            raise missing("amount")
        if amount < MIN_AMOUNT:
            raise invalid("Amount must be at least 1 penny.", "amount", "amount_too_small")
        if not p.get("currency"):
            raise missing("currency")
        capture_method = p.get("capture_method") or "automatic"
        if capture_method not in ("automatic", "automatic_async", "manual"):
            raise invalid(f"Invalid capture_method: {capture_method}", "capture_method")
        customer = p.get("customer")
        if customer:
            self.get(customer, "customer", "customer", "customer")
        pm_id = p.get("payment_method")
        pi = self._new_payment_intent(
            amount=amount, currency=p["currency"].lower(), customer=customer,
            metadata=p.get("metadata") or {}, capture_method=capture_method,
            setup_future_usage=p.get("setup_future_usage"), description=p.get("description"),
            payment_method=pm_id)
        if as_bool(p.get("confirm")):
            if not pm_id:
                raise missing("payment_method")
            declined = self._confirm(pi, pm_id, off_session=as_bool(p.get("off_session")), key=key)
            if declined is not None:
                raise declined
        elif pm_id:
            pi["status"] = "requires_confirmation"
        return pi

    def retrieve_payment_intent(self, p: dict, ident: str, **_: Any) -> dict:
        return self.get(ident, "payment_intent", "payment_intent", "intent")

    def capture_payment_intent(self, p: dict, ident: str, key: str | None = None, **_: Any) -> dict:
        pi = self.get(ident, "payment_intent", "payment_intent", "intent")
        if pi["status"] != "requires_capture":
            raise ApiError(400, "invalid_request_error",
                           f"This PaymentIntent could not be captured because it has a status of "
                           f"{pi['status']}. Only a PaymentIntent with one of the following statuses "
                           "may be captured: requires_capture.",
                           code="payment_intent_unexpected_state", saved=False)
        amount = as_int(p.get("amount_to_capture"), pi["amount_capturable"])
        if amount is None or amount < 1 or amount > pi["amount_capturable"]:
            raise invalid("The amount to capture must be between 1 and the amount capturable.",
                          "amount_to_capture", "amount_too_large")
        charge = self.objects[pi["latest_charge"]]
        # The uncaptured part of the authorisation goes back to the card at once.
        charge.update(captured=True, amount_captured=amount,
                      amount_refunded=charge["amount"] - amount, refunded=False)
        charge["payment_method_details"]["card"].pop("capture_before", None)
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
        self.emit("charge.captured", charge, idempotency_key=key)
        self.emit("payment_intent.succeeded", pi, idempotency_key=key)
        return pi

    def cancel_payment_intent(self, p: dict, ident: str, key: str | None = None, **_: Any) -> dict:
        pi = self.get(ident, "payment_intent", "payment_intent", "intent")
        if pi["status"] not in ("requires_payment_method", "requires_capture",
                                "requires_confirmation", "requires_action", "processing"):
            raise ApiError(400, "invalid_request_error",
                           f"You cannot cancel this PaymentIntent because it has a status of "
                           f"{pi['status']}. Only a PaymentIntent with one of the following statuses "
                           "may be canceled: requires_payment_method, requires_capture, "
                           "requires_confirmation, requires_action, processing.",
                           code="payment_intent_unexpected_state", saved=False)
        if pi["latest_charge"]:
            charge = self.objects[pi["latest_charge"]]
            charge.update(amount_refunded=charge["amount"], refunded=True)
            charge["payment_method_details"]["card"].pop("capture_before", None)
        pi.update(status="canceled", amount_capturable=0, canceled_at=self.now(),
                  cancellation_reason=p.get("cancellation_reason") or "requested_by_customer")
        self.emit("payment_intent.canceled", pi, idempotency_key=key)
        return pi

    # --- refunds ----------------------------------------------------------------------
    def create_refund(self, p: dict, key: str | None = None, **_: Any) -> dict:
        if p.get("payment_intent"):
            pi = self.get(p["payment_intent"], "payment_intent", "payment_intent", "payment_intent")
            charge = self.objects.get(pi["latest_charge"] or "")
        elif p.get("charge"):
            charge = self.get(p["charge"], "charge", "charge", "charge")
            pi = self.objects[charge["payment_intent"]]
        else:
            raise missing("payment_intent")
        if charge is None or pi["status"] != "succeeded":
            raise ApiError(400, "invalid_request_error",
                           f"This PaymentIntent ({pi['id']}) does not have a successful charge to refund.",
                           code="charge_not_refundable" if charge else "resource_missing", saved=False)
        refundable = charge["amount_captured"] - sum(
            r["amount"] for r in charge["refunds"]["data"] if r["status"] != "failed")
        amount = as_int(p.get("amount"), refundable)
        if refundable <= 0:
            raise ApiError(400, "invalid_request_error",
                           f"Charge {charge['id']} has already been refunded.",
                           code="charge_already_refunded", saved=False)
        if amount is None or amount < 1 or amount > refundable:
            raise invalid(f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                          f"({refundable})", "amount", "amount_too_large")
        refund = self.put({
            "id": self.new_id("re"), "object": "refund", "created": self.now(), "amount": amount,
            "currency": charge["currency"], "charge": charge["id"], "payment_intent": pi["id"],
            "reason": p.get("reason"), "metadata": p.get("metadata") or {},
            "status": "succeeded", "livemode": False,
        })
        charge["refunds"]["data"].insert(0, self.public(refund))
        charge["refunds"]["total_count"] += 1
        charge["amount_refunded"] = sum(r["amount"] for r in charge["refunds"]["data"]) + (
            charge["amount"] - charge["amount_captured"])
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self.emit("refund.created", refund, idempotency_key=key)
        self.emit("charge.refunded", charge, idempotency_key=key)
        return refund

    def retrieve_refund(self, p: dict, ident: str, **_: Any) -> dict:
        return self.get(ident, "refund", "refund")

    # --- checkout sessions --------------------------------------------------------------
    def create_checkout_session(self, p: dict, key: str | None = None, **_: Any) -> dict:
        mode = p.get("mode")
        if not mode:
            raise missing("mode")
        if mode != "payment":
            raise invalid("The stand-in supports mode=payment only.", "mode")
        if not p.get("success_url"):
            raise missing("success_url")
        items = p.get("line_items")
        if not isinstance(items, list) or not items:
            raise missing("line_items")
        total, currency = 0, None
        for i, item in enumerate(items):
            price = item.get("price_data") or {}
            unit = as_int(price.get("unit_amount"))
            qty = as_int(item.get("quantity"), 1)
            if unit is None or unit < 0:
                raise invalid("unit_amount must be a non-negative integer.",
                              f"line_items[{i}][price_data][unit_amount]")
            if not price.get("currency") or not (price.get("product_data") or {}).get("name"):
                raise missing(f"line_items[{i}][price_data][product_data][name]")
            currency = currency or price["currency"].lower()
            total += unit * qty
        now = self.now()
        expires_at = as_int(p.get("expires_at"), now + CHECKOUT_DEFAULT_EXPIRY_SECONDS)
        if not now + CHECKOUT_MIN_EXPIRY_SECONDS - 5 <= expires_at <= now + CHECKOUT_MAX_EXPIRY_SECONDS + 5:
            raise invalid("The `expires_at` timestamp must be between 30 minutes and 24 hours "
                          "from Checkout Session creation.", "expires_at")
        customer = p.get("customer")
        if customer:
            self.get(customer, "customer", "customer", "customer")
        intent_data = p.get("payment_intent_data") or {}
        ident = f"cs_test_{secrets.token_hex(24)}"
        return self.put({
            "id": ident, "object": "checkout.session", "created": now, "mode": mode,
            "status": "open", "payment_status": "unpaid", "amount_total": total,
            "amount_subtotal": total, "currency": currency, "customer": customer,
            "customer_email": p.get("customer_email"),
            "customer_creation": p.get("customer_creation"),
            "client_reference_id": p.get("client_reference_id"),
            "metadata": p.get("metadata") or {}, "payment_intent": None,
            "success_url": p["success_url"], "cancel_url": p.get("cancel_url"),
            "url": f"{self.base_url}/checkout/pay/{ident}", "expires_at": expires_at,
            "livemode": False,
            "_line_items": items, "_intent_data": intent_data,
        })

    def retrieve_checkout_session(self, p: dict, ident: str, **_: Any) -> dict:
        session = self.get(ident, "checkout.session", "checkout.session", "session")
        self.lapse_if_expired(session)
        return session

    def expire_checkout_session(self, p: dict, ident: str, key: str | None = None, **_: Any) -> dict:
        session = self.get(ident, "checkout.session", "checkout.session", "session")
        if session["status"] != "open":
            raise ApiError(400, "invalid_request_error",
                           f"This Checkout Session is {session['status']} and can no longer be expired.",
                           code="checkout_session_unexpected_state", saved=False)
        self._expire(session, key)
        return session

    def _expire(self, session: dict, key: str | None = None) -> None:
        session.update(status="expired", url=None)
        if session["payment_intent"]:
            pi = self.objects[session["payment_intent"]]
            if pi["status"] == "requires_payment_method":
                pi.update(status="canceled", canceled_at=self.now(), cancellation_reason="abandoned")
        self.emit("checkout.session.expired", session, idempotency_key=key)

    def lapse_if_expired(self, session: dict) -> None:
        if session["status"] == "open" and self.now() >= session["expires_at"]:
            self._expire(session)

    def pay_checkout_session(self, ident: str, card_number: str, email: str = "") -> tuple[dict, ApiError | None]:
        """The hosted page's form: charge the card for the session (used by the HTML page)."""
        session = self.get(ident, "checkout.session", "checkout.session", "session")
        self.lapse_if_expired(session)
        if session["status"] != "open":
            raise ApiError(400, "invalid_request_error", f"This Checkout Session is {session['status']}.")
        intent_data = session["_intent_data"]
        customer = session["customer"]
        saving = bool(intent_data.get("setup_future_usage"))
        if session["payment_intent"] is None:
            pi = self._new_payment_intent(
                amount=session["amount_total"], currency=session["currency"], customer=customer,
                metadata=intent_data.get("metadata") or {},
                capture_method=intent_data.get("capture_method") or "automatic",
                setup_future_usage=intent_data.get("setup_future_usage"),
                description=intent_data.get("description"), payment_method=None)
            session["payment_intent"] = pi["id"]
        pi = self.objects[session["payment_intent"]]
        outcome = cards.outcome_for(card_number)
        if not outcome.declined and customer is None and (
                saving or session["customer_creation"] == "always"):
            customer = self.create_customer({"email": email or session["customer_email"]})["id"]
            session["customer"] = pi["customer"] = customer
        pm = self._payment_method(card_number, customer if saving and not outcome.declined else None)
        declined = self._confirm(pi, pm["id"], off_session=False, key=None)
        if declined is not None:
            return session, declined
        session.update(status="complete", url=None,
                       payment_status="paid" if pi["status"] == "succeeded" else "unpaid")
        self.emit("checkout.session.completed", session)
        return session, None
