"""A local stand-in for the driving-licence check service, for development and tests.

It speaks the HTTP JSON protocol that `app/integrations/licence.py` speaks to the real
provider (modelled on the DVLA's driver-data services), so the real client, its timeouts,
retries and idempotency keys are exercised over real sockets:

    POST /v1/driving-licence/checks
    x-api-key: <key>                      (401 when missing or wrong)
    Idempotency-Key: <one per check>      (400 when missing; a repeat replays the answer)
    Content-Type: application/json
    {"drivingLicenceNumber": "CUSTO907150J99AB", "checkCode": "Ab12Cd34"}

    200 {"driver": {"drivingLicenceNumber", "lastName", "dateOfBirth"},
         "licence": {"type": "Full"|"Provisional", "status": "Valid"|"Expired"|"Disqualified"},
         "token": {"validFromDate", "validToDate", "issueNumber"},
         "entitlement": [{"categoryCode", "categoryType": "Full"|"Provisional",
                          "fromDate", "expiryDate"}, ...],
         "endorsements": [{"offenceCode", "offenceLegalLiteral", "offenceDate",
                           "penaltyPoints"}, ...],
         "disqualification": null | {"disqualifiedUntil", "offenceCode"}}
    4xx/5xx {"errors": [{"status", "code", "title", "detail"}]}

Dates are relative to today, so the answers are the same every day.

Test licences
-------------
The outcome is chosen by the check code (8 characters; case and spaces ignored):

    check code  outcome
    ----------  ----------------------------------------------------------------
    EXPIRED1    licence status Expired, photocard ended 30 days ago
    DISQUAL1    status Disqualified, disqualified for another year (DR10)
    POINTS12    valid, but 12 penalty points (SP30, SP30, CU80)
    NOCATB01    only AM and a provisional B entitlement: no full category B
    NEWDRIV1    full B entitlement granted 3 months ago
    WRONGCDE    404 CHECK_CODE_NOT_FOUND (wrong check code)
    OLDCODE1    410 CHECK_CODE_EXPIRED
    SLOWSLOW    every request sleeps `slow_seconds` (past the client's read timeout)
    SLOWONCE    the first request of an idempotency key sleeps; the retry is answered
    FAIL500X    always 500
    FLAKY500    500 for the first request of an idempotency key, then verified
    BADJSON1    200 with a body that is not JSON
    WAITABIT    verified after `pause_seconds` (under the timeout): shows "Checking..."
    anything else (8 letters or digits)   verified: full B held since age 18,
                                          photocard valid for 7 more years, no points

Failing modes can also be chosen by the licence number's surname part (its first five
characters), so a whole person can be a test case: EXPIR (e.g. "Sam Expiry"), DISQU,
POINT, NOCAT, NEWDR, SLOWS, FAILS, FLAKY, BADJS. The demo customer's licence,
CUSTO907150J99AB (Jane Customer), is verified with any ordinary check code such as
DEMO2026. A number not shaped like a DVLA licence number gets 400.

Run it alone with ``python -m devtools.licence_standin --port 8099`` and point the app
at it with ``LICENCE_API_URL=http://127.0.0.1:8099 LICENCE_API_KEY=dev-licence-key``;
tests start it in a thread: ``with LicenceStandIn() as standin: ... standin.url``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHECK_PATH = "/v1/driving-licence/checks"
DEFAULT_API_KEY = "dev-licence-key"
DEFAULT_SLOW_SECONDS = 15.0
DEFAULT_PAUSE_SECONDS = 1.5
MAX_BODY_BYTES = 4096

LICENCE_RE = re.compile(r"^[A-Z9]{5}\d(?:[05][1-9]|[16][0-2])(?:0[1-9]|[12]\d|3[01])\d[A-Z9]{2}\d[A-Z\d]{2}$")
CHECK_CODE_RE = re.compile(r"^[A-Za-z0-9]{8}$")

CODE_SCENARIOS = {
    "EXPIRED1": "expired", "DISQUAL1": "disqualified", "POINTS12": "points",
    "NOCATB01": "no_category", "NEWDRIV1": "new_driver", "WRONGCDE": "code_wrong",
    "OLDCODE1": "code_expired", "SLOWSLOW": "slow", "SLOWONCE": "slow_once",
    "FAIL500X": "fail", "FLAKY500": "flaky", "BADJSON1": "bad_json", "WAITABIT": "pause",
}
SURNAME_SCENARIOS = {
    "EXPIR": "expired", "DISQU": "disqualified", "POINT": "points", "NOCAT": "no_category",
    "NEWDR": "new_driver", "SLOWS": "slow", "FAILS": "fail", "FLAKY": "flaky", "BADJS": "bad_json",
}
# Answers that are the same however often they are asked: replayed for a repeated key.
REPLAYABLE = {"verified", "expired", "disqualified", "points", "no_category", "new_driver",
              "code_wrong", "code_expired", "pause"}


def scenario_for(licence_number: str, check_code: str) -> str:
    code = re.sub(r"\s+", "", check_code or "").upper()
    if code in CODE_SCENARIOS:
        return CODE_SCENARIOS[code]
    return SURNAME_SCENARIOS.get((licence_number or "")[:5], "verified")


def birth_date_of(licence_number: str, today: date) -> date:
    """The birth date a DVLA number encodes; the century is the one giving a plausible age."""
    month = int(licence_number[6:8]) % 50
    day = int(licence_number[8:10])
    yy = int(licence_number[5]) * 10 + int(licence_number[10])
    year = 2000 + yy if 2000 + yy <= today.year - 16 else 1900 + yy
    try:
        return date(year, month, day)
    except ValueError:
        return date(year, month, 28)


def _years_after(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def licence_record(licence_number: str, scenario: str, today: date) -> dict[str, Any]:
    """The 200 answer for a licence in one of the rule scenarios."""
    born = birth_date_of(licence_number, today)
    held_since = min(_years_after(born, 18), today)
    valid_from = today - timedelta(days=3 * 365)
    valid_to = today + timedelta(days=7 * 365)
    status, licence_type, disqualification = "Valid", "Full", None
    b_type = "Full"
    endorsements: list[dict[str, Any]] = []
    categories = ["AM", "B"]
    if scenario == "expired":
        status = "Expired"
        valid_from, valid_to = today - timedelta(days=10 * 365 + 30), today - timedelta(days=30)
    elif scenario == "disqualified":
        status = "Disqualified"
        disqualification = {"disqualifiedUntil": (today + timedelta(days=365)).isoformat(),
                            "offenceCode": "DR10"}
        endorsements = [_endorsement("DR10", "Driving with alcohol level above limit",
                                     today - timedelta(days=60), 3)]
    elif scenario == "points":
        endorsements = [
            _endorsement("SP30", "Exceeding statutory speed limit on a public road",
                         today - timedelta(days=700), 3),
            _endorsement("SP30", "Exceeding statutory speed limit on a public road",
                         today - timedelta(days=300), 3),
            _endorsement("CU80", "Breach of requirements as to control of the vehicle (mobile phone)",
                         today - timedelta(days=90), 6),
        ]
    elif scenario == "no_category":
        licence_type, b_type = "Provisional", "Provisional"
    elif scenario == "new_driver":
        held_since = today - timedelta(days=90)
    return {
        "driver": {"drivingLicenceNumber": licence_number,
                   "lastName": licence_number[:5].rstrip("9"),
                   "dateOfBirth": born.isoformat()},
        "licence": {"type": licence_type, "status": status},
        "token": {"validFromDate": valid_from.isoformat(), "validToDate": valid_to.isoformat(),
                  "issueNumber": "14"},
        "entitlement": [
            {"categoryCode": c, "categoryType": "Full" if c != "B" else b_type,
             "fromDate": held_since.isoformat(),
             "expiryDate": _years_after(born, 70).isoformat()}
            for c in categories
        ],
        "endorsements": endorsements,
        "disqualification": disqualification,
    }


def _endorsement(code: str, literal: str, when: date, points: int) -> dict[str, Any]:
    return {"offenceCode": code, "offenceLegalLiteral": literal, "offenceDate": when.isoformat(),
            "penaltyPoints": points}


def _error(status: int, code: str, title: str, detail: str = "") -> tuple[int, dict]:
    return status, {"errors": [{"status": str(status), "code": code, "title": title,
                                "detail": detail or title}]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a sleeping "slow" answer must not hold up stop()
    standin: "LicenceStandIn"

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that timed out and hung up is expected here, not an error
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.standin.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/healthz":
            self._send(200, {"status": "ok"})
        else:
            self._send(*_error(404, "NOT_FOUND", "No such resource"))

    def do_POST(self) -> None:  # noqa: N802
        standin = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != CHECK_PATH:
            self._drain(length)
            return self._send(*_error(404, "NOT_FOUND", "No such resource"))
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return self._send(*_error(413, "TOO_LARGE", "Request body too large"))
        raw = self.rfile.read(length) if length else b""
        key = self.headers.get("Idempotency-Key", "")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        number = body.get("drivingLicenceNumber", "") if isinstance(body, dict) else ""
        code = body.get("checkCode", "") if isinstance(body, dict) else ""
        attempt = standin._record(path=self.path, licence_number=number, check_code=code,
                                  idempotency_key=key, api_key=self.headers.get("x-api-key", ""))
        if self.headers.get("x-api-key", "") != standin.api_key:
            return self._send(*_error(401, "UNAUTHORISED", "Missing or invalid API key"))
        if not key:
            return self._send(*_error(400, "IDEMPOTENCY_KEY_REQUIRED", "Idempotency-Key header required"))
        if not isinstance(body, dict) or not isinstance(number, str) or not isinstance(code, str):
            return self._send(*_error(400, "BAD_REQUEST", "Body must be a JSON object"))
        if not LICENCE_RE.match(number):
            return self._send(*_error(400, "INVALID_LICENCE_NUMBER", "Invalid driving licence number"))
        if not CHECK_CODE_RE.match(code.replace(" ", "")):
            return self._send(*_error(400, "INVALID_CHECK_CODE", "Invalid check code"))
        replay = standin._replay(key)
        if replay is not None:
            return self._send(*replay, replayed=True)

        scenario = scenario_for(number, code)
        today = standin.today()
        if scenario == "slow" or (scenario == "slow_once" and attempt == 1):
            time.sleep(standin.slow_seconds)
            # The client has long given up; answer anyway, but never replay it: "always slow".
            return self._send(200, licence_record(number, "verified", today))
        if scenario == "slow_once":
            scenario = "verified"
        if scenario == "pause":
            time.sleep(standin.pause_seconds)
        if scenario == "fail" or (scenario == "flaky" and attempt == 1):
            return self._send(*_error(500, "INTERNAL_ERROR", "Internal server error"))
        if scenario == "bad_json":
            return self._send_raw(200, b'{"driver": {"drivingLicenceNumber": ', "application/json")
        if scenario == "code_wrong":
            answer = _error(404, "CHECK_CODE_NOT_FOUND",
                            "No record matches this licence number and check code")
        elif scenario == "code_expired":
            answer = _error(410, "CHECK_CODE_EXPIRED", "This check code has expired")
        else:
            answer = (200, licence_record(number, "verified" if scenario in ("flaky", "pause")
                                          else scenario, today))
        if scenario in REPLAYABLE or scenario == "flaky":
            standin._remember(key, answer)
        self._send(*answer)

    # -- plumbing -----------------------------------------------------------------
    def _drain(self, length: int) -> None:
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _send(self, status: int, payload: dict, replayed: bool = False) -> None:
        extra = {"Idempotent-Replayed": "true"} if replayed else {}
        self._send_raw(status, json.dumps(payload).encode(), "application/json", extra)

    def _send_raw(self, status: int, body: bytes, content_type: str,
                  extra: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client timed out and left; nothing to do


class LicenceStandIn:
    """The stand-in server; `start()` runs it on a thread, `stop()` ends it.

    `requests` lists every POST it received (path, licence number, check code, idempotency
    key, API key), so tests can assert what reached the service, or that nothing did.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: str = DEFAULT_API_KEY,
                 slow_seconds: float = DEFAULT_SLOW_SECONDS,
                 pause_seconds: float = DEFAULT_PAUSE_SECONDS, verbose: bool = False):
        self.api_key = api_key
        self.slow_seconds = slow_seconds
        self.pause_seconds = pause_seconds
        self.verbose = verbose
        self._lock = threading.Lock()
        self._requests: list[dict[str, str]] = []
        self._attempts: dict[str, int] = {}
        self._answers: dict[str, tuple[int, dict]] = {}
        self._server = _Server((host, port), _Handler)
        self._server.standin = self
        self._thread: threading.Thread | None = None

    @staticmethod
    def today() -> date:
        return date.today()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._attempts.clear()
            self._answers.clear()

    def start(self) -> "LicenceStandIn":
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="licence-standin", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "LicenceStandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, **request: str) -> int:
        """Log a request; return how many times its idempotency key has been seen."""
        with self._lock:
            self._requests.append(request)
            key = request["idempotency_key"]
            self._attempts[key] = self._attempts.get(key, 0) + 1
            return self._attempts[key]

    def _replay(self, key: str) -> tuple[int, dict] | None:
        with self._lock:
            return self._answers.get(key)

    def _remember(self, key: str, answer: tuple[int, dict]) -> None:
        with self._lock:
            self._answers.setdefault(key, answer)
