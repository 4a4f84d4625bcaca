"""The HTTP side: Stripe's v1 routes, the hosted Checkout page, webhooks, fault switches."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

from . import pages
from .encoding import decode
from .state import API_VERSION, ApiError, Recorded, StripeState

DEFAULT_WEBHOOK_SECRET = "whsec_standin_development_only"
WEBHOOK_TIMEOUT_SECONDS = 5
WEBHOOK_ATTEMPTS = 4
WEBHOOK_BACKOFF_SECONDS = 0.25
FAULT_MODES = ("slow", "500")

S = StripeState
ROUTES: list[tuple[str, re.Pattern, Callable]] = [
    ("POST", re.compile(r"^/v1/customers$"), S.create_customer),
    ("GET", re.compile(r"^/v1/customers/([^/]+)$"), S.retrieve_customer),
    ("GET", re.compile(r"^/v1/payment_methods/([^/]+)$"), S.retrieve_payment_method),
    ("POST", re.compile(r"^/v1/payment_intents$"), S.create_payment_intent),
    ("GET", re.compile(r"^/v1/payment_intents/([^/]+)$"), S.retrieve_payment_intent),
    ("POST", re.compile(r"^/v1/payment_intents/([^/]+)/capture$"), S.capture_payment_intent),
    ("POST", re.compile(r"^/v1/payment_intents/([^/]+)/cancel$"), S.cancel_payment_intent),
    ("POST", re.compile(r"^/v1/refunds$"), S.create_refund),
    ("GET", re.compile(r"^/v1/refunds/([^/]+)$"), S.retrieve_refund),
    ("POST", re.compile(r"^/v1/checkout/sessions$"), S.create_checkout_session),
    ("GET", re.compile(r"^/v1/checkout/sessions/([^/]+)$"), S.retrieve_checkout_session),
    ("POST", re.compile(r"^/v1/checkout/sessions/([^/]+)/expire$"), S.expire_checkout_session),
]


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe-Signature header value: t=<ts>,v1=<HMAC-SHA256(secret, "<ts>.<payload>")>."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


@dataclass
class Fault:
    mode: str  # "slow": answer after `slow_seconds` (work done); "500": fail before doing it
    remaining: int
    path: str | None = None  # only requests whose path starts with this


class StripeStandin:
    """A Stripe-compatible HTTP server. Start it in a thread (`start()`) or in the foreground."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, webhook_url: str | None = None,
                 webhook_secret: str = DEFAULT_WEBHOOK_SECRET, api_key: str | None = None,
                 slow_seconds: float = 2.0, quiet: bool = True) -> None:
        self.state = StripeState()
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.api_key = api_key
        self.slow_seconds = slow_seconds
        self.quiet = quiet
        self.deliveries: list[dict] = []
        self._faults: list[Fault] = []
        self._outbox: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self.state.base_url = self.url
        self.state.event_listeners.append(self._on_event)

    # --- running ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "StripeStandin":
        """Serve in background threads; returns at once."""
        for target, name in ((self._server.serve_forever, "stripe-standin"),
                             (self._deliver_webhooks, "stripe-standin-webhooks")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground (the command line)."""
        thread = threading.Thread(target=self._deliver_webhooks, name="stripe-standin-webhooks",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        self._outbox.put(None)
        if any(t.name == "stripe-standin" for t in self._threads):
            self._server.shutdown()  # only a thread-served server; serve_forever has returned
        self._server.server_close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._threads.clear()

    def __enter__(self) -> "StripeStandin":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- switches and records for tests ---------------------------------------------------
    def fail_next(self, mode: str, times: int = 1, path: str | None = None) -> None:
        """Make the next `times` API requests (optionally only under `path`) slow or 500."""
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {FAULT_MODES}")
        with self.state.lock:
            self._faults.append(Fault(mode, times, path))

    def clear_faults(self) -> None:
        with self.state.lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> str:
        with self.state.lock:
            for fault in self._faults:
                if fault.remaining > 0 and (fault.path is None or path.startswith(fault.path)):
                    fault.remaining -= 1
                    return fault.mode
        return ""

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict]:
        """Every API request seen (oldest first), optionally filtered by method and path prefix."""
        with self.state.lock:
            return [r.to_dict() for r in self.state.requests
                    if (method is None or r.method == method)
                    and (path is None or r.path.startswith(path))]

    def objects(self, kind: str) -> list[dict]:
        """Every object of a kind ("refund", "payment_intent", "checkout.session"...)."""
        with self.state.lock:
            return [self.state.public(o) for o in self.state.objects.values() if o["object"] == kind]

    def get(self, ident: str) -> dict:
        with self.state.lock:
            return self.state.public(self.state.objects[ident])

    def events(self, type_: str | None = None) -> list[dict]:
        with self.state.lock:
            return [e for e in self.state.events if type_ is None or e["type"] == type_]

    def pay(self, session_id: str, card: str = "4242424242424242") -> str | None:
        """Pay a Checkout Session as the hosted page would; the decline message, or None."""
        with self.state.lock:
            _, declined = self.state.pay_checkout_session(session_id, card)
        return declined.error["message"] if declined else None

    # --- webhooks ---------------------------------------------------------------------
    def signed(self, event: dict, *, timestamp: int | None = None,
               secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers Stripe would POST for this event."""
        body = json.dumps(event, indent=2).encode()
        header = sign_payload(body, secret or self.webhook_secret, timestamp)
        return body, {"Content-Type": "application/json; charset=utf-8",
                      "Stripe-Signature": header, "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"}

    def _on_event(self, event: dict) -> None:
        if self.webhook_url:
            self._outbox.put(event)

    def wait_for_deliveries(self, timeout: float = 10.0) -> None:
        """Block until every queued webhook was delivered (or given up)."""
        deadline = time.monotonic() + timeout
        while self._outbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def _deliver_webhooks(self) -> None:
        while True:
            event = self._outbox.get()
            try:
                if event is None:
                    return
                self._deliver(event)
            finally:
                self._outbox.task_done()

    def _deliver(self, event: dict) -> None:
        url = self.webhook_url
        record = {"event_id": event["id"], "type": event["type"], "url": url, "status": None,
                  "attempts": 0}
        self.deliveries.append(record)
        for attempt in range(WEBHOOK_ATTEMPTS):
            if attempt:
                time.sleep(WEBHOOK_BACKOFF_SECONDS * 2 ** (attempt - 1))
            body, headers = self.signed(event)
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            record["attempts"] += 1
            try:
                with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as answer:
                    record["status"] = answer.status
                    return
            except urllib.error.HTTPError as exc:
                record["status"] = exc.code
                exc.close()
                if exc.code < 500 and exc.code != 429:
                    return  # Stripe retries 4xx too, over days; here a 4xx is a bug to see at once
            except OSError as exc:
                record["status"] = f"error: {exc}"

    # --- request handling -------------------------------------------------------------
    def handle_api(self, method: str, path: str, params: dict, headers: Any) -> tuple[int, dict, dict]:
        """One /v1 request: authentication, faults, idempotency, then the operation."""
        key = headers.get("Idempotency-Key")
        record = Recorded(method, path, params, key)
        with self.state.lock:
            self.state.requests.append(record)
        extra = {"Request-Id": self.state.new_id("req"),
                 "Stripe-Version": headers.get("Stripe-Version") or API_VERSION}
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer sk_") or (self.api_key and auth != f"Bearer {self.api_key}"):
            record.status = 401
            return 401, {"error": {"type": "invalid_request_error",
                                   "message": "Invalid API Key provided."}}, extra
        fault = self._take_fault(path)
        record.fault = fault
        if fault == "500":
            record.status = 500
            return 500, {"error": {"type": "api_error",
                                   "message": "An unknown error occurred (stand-in fault switch)."}}, extra
        status, body = self._execute(method, path, params, key, record, extra)
        record.status = status
        if fault == "slow":
            time.sleep(self.slow_seconds)  # the work is done; the answer comes too late
        return status, body, extra

    def _execute(self, method: str, path: str, params: dict, key: str | None, record: Recorded,
                 extra: dict) -> tuple[int, dict]:
        for route_method, pattern, operation in ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                break
        else:
            return 404, {"error": {"type": "invalid_request_error",
                                   "message": f"Unrecognized request URL ({method}: {path})."}}
        idem_key = key if method == "POST" else None
        with self.state.lock:
            try:
                replay = self.state.begin(idem_key, method, path, params)
            except ApiError as exc:
                return exc.status, exc.body()
            if replay is not None:
                record.replayed = True
                extra["Idempotent-Replayed"] = "true"
                return replay
            try:
                obj = operation(self.state, params, *match.groups(), key=idem_key)
                status, body, save = 200, self.state.expanded(obj, params.get("expand")), True
            except ApiError as exc:
                status, body, save = exc.status, exc.body(), exc.saved
            self.state.finish(idem_key, method, path, params, status, body, save)
            return status, body

    def checkout_page(self, method: str, session_id: str, form: dict) -> tuple[int, str, str | None]:
        """GET shows the card form; POST pays. Returns (status, html, redirect location)."""
        with self.state.lock:
            session = self.state.objects.get(session_id)
            if session is None or session["object"] != "checkout.session":
                return 404, pages.message_page("Not found", "This checkout link is not valid."), None
            self.state.lapse_if_expired(session)
            if session["status"] == "complete":
                return 200, pages.message_page("Already paid", "This payment is complete.",
                                               self._success_url(session)), None
            if session["status"] != "open":
                return 410, pages.message_page("Checkout expired",
                                               "This checkout session has expired.",
                                               session.get("cancel_url")), None
            if method == "GET":
                return 200, pages.checkout_page(session), None
            card = form.get("cardnumber", "")
            session, declined = self.state.pay_checkout_session(session_id, card, form.get("email", ""))
            if declined is not None:
                # As on Stripe's page: the same page again, the bank's answer shown inline.
                return 200, pages.checkout_page(session, error=declined.error["message"],
                                                email=form.get("email", "")), None
            return 303, "", self._success_url(session)

    @staticmethod
    def _success_url(session: dict) -> str:
        return session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])


def _handler_for(standin: StripeStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "StripeStandin/1.0"
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            if not standin.quiet:
                super().log_message(format, *args)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def _dispatch(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params = decode(parts.query if method == "GET" else body)
            try:
                if parts.path.startswith("/v1/"):
                    status, payload, extra = standin.handle_api(method, parts.path, params, self.headers)
                    self._send(status, json.dumps(payload, indent=2), "application/json", extra)
                elif parts.path.startswith("/checkout/pay/"):
                    session_id = parts.path.rsplit("/", 1)[-1]
                    status, html, location = standin.checkout_page(method, session_id, params)
                    self._send(status, html, "text/html; charset=utf-8",
                               {"Location": location} if location else {})
                elif parts.path.startswith("/_standin/"):
                    self._control(method, parts.path, params)
                else:
                    self._send(404, json.dumps({"error": {"type": "invalid_request_error",
                                                          "message": "Unrecognized request URL."}}),
                               "application/json", {})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. timed out in "slow" mode)

        def _control(self, method: str, path: str, params: dict) -> None:
            """Plain JSON switches for a stand-in run from the command line."""
            if path == "/_standin/health":
                data: Any = {"ok": True}
            elif path == "/_standin/requests":
                data = standin.requests()
            elif path == "/_standin/events":
                data = standin.events()
            elif path == "/_standin/faults" and method == "POST":
                try:
                    standin.fail_next(params.get("mode", ""), int(params.get("times", 1)),
                                      params.get("path"))
                except ValueError as exc:
                    self._send(400, json.dumps({"error": str(exc)}), "application/json", {})
                    return
                data = {"ok": True}
            else:
                self._send(404, "{}", "application/json", {})
                return
            self._send(200, json.dumps(data, indent=2), "application/json", {})

        def _send(self, status: int, text: str, content_type: str, headers: dict) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
