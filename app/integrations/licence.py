"""Client for the driving-licence check service (an HTTP JSON API modelled on the DVLA's).

In: licence number + the gov.uk check code the driver shares. Out: a `LicenceRecord` with
the licence status, photocard validity, entitlement categories, endorsements with penalty
points and any disqualification — or one of the errors below. Only jobs call it.

Every call has a connect and a read timeout, and urllib3's `Retry` retries timeouts,
connection errors and 5xx answers a bounded number of times with exponential backoff; a
4xx is never retried (it would only fail again). The POST carries an `Idempotency-Key`
fixed per check, which is what makes retrying a POST safe.

Configuration: LICENCE_API_URL and LICENCE_API_KEY from the environment. In development
with no URL, the local stand-in (devtools/licence_standin) is started on first use.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import requests
from flask import current_app
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..logging_setup import log
from ..settings import settings

CHECK_PATH = "/v1/driving-licence/checks"
API_KEY_HEADER = "x-api-key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_ON_STATUS = (500, 502, 503, 504)
# The shapes the service accepts; anything else is refused here, before any call.
LICENCE_RE = re.compile(r"^[A-Z9]{5}\d(?:[05][1-9]|[16][0-2])(?:0[1-9]|[12]\d|3[01])\d[A-Z9]{2}\d[A-Z\d]{2}$")
CHECK_CODE_RE = re.compile(r"^[A-Za-z0-9]{8}$")


class LicenceServiceError(Exception):
    """The service gave no usable answer. `code` is stable, for storing and for tests."""

    code = "service_error"


class InvalidLicenceRequest(LicenceServiceError):
    """A licence number or check code that cannot be genuine: refused before any call."""

    code = "invalid_request"


class LicenceUnavailable(LicenceServiceError):
    """Timeouts, connection errors, 5xx after the retries, or the service refusing us (401/429)."""

    code = "service_unavailable"


class LicenceBadResponse(LicenceServiceError):
    """The service answered 200 with something that is not the documented JSON."""

    code = "bad_response"


class CheckCodeRejected(LicenceServiceError):
    """No record for this licence number and check code (404), or the code expired (410)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class LicenceRequestRejected(LicenceServiceError):
    """Any other 4xx: the service would not accept the request as sent."""

    code = "request_rejected"


@dataclass(frozen=True)
class Entitlement:
    category: str
    full: bool
    valid_from: date | None
    valid_to: date | None


@dataclass(frozen=True)
class LicenceRecord:
    """What the service says about one licence."""

    licence_number: str
    status: str  # "Valid", "Expired", "Disqualified", "Revoked", ...
    licence_type: str  # "Full" or "Provisional"
    date_of_birth: date | None
    valid_from: date | None  # the photocard
    valid_to: date | None
    entitlements: tuple[Entitlement, ...]
    penalty_points: int
    disqualified_until: date | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    def disqualified_on(self, day: date) -> bool:
        """Disqualified from driving on `day` (a disqualification that has ended does not count)."""
        return self.status.lower() == "disqualified" or (
            self.disqualified_until is not None and self.disqualified_until >= day)

    def entitlement(self, category: str) -> Entitlement | None:
        """The full entitlement to `category`, if the licence has one."""
        for e in self.entitlements:
            if e.category == category and e.full:
                return e
        return None


def normalise_number(number: str) -> str:
    return re.sub(r"\s+", "", number or "").upper()


def normalise_check_code(code: str) -> str:
    return re.sub(r"\s+", "", code or "")


class LicenceClient:
    def __init__(self, base_url: str, api_key: str, *, connect_timeout: float, read_timeout: float,
                 max_retries: int, backoff: float):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = (connect_timeout, read_timeout)
        self.retry = Retry(
            total=max_retries, connect=max_retries, read=max_retries, status=max_retries,
            other=0, redirect=0, backoff_factor=backoff,
            status_forcelist=RETRY_ON_STATUS,
            allowed_methods=frozenset({"POST"}),  # safe: the idempotency key makes it one request
            raise_on_status=False,  # we map the last 5xx ourselves
            respect_retry_after_header=False,
        )

    def check(self, licence_number: str, check_code: str, *, idempotency_key: str) -> LicenceRecord:
        """Ask the service about a licence. Raises a `LicenceServiceError` subclass."""
        number = normalise_number(licence_number)
        code = normalise_check_code(check_code)
        if len(number) != 16 or not LICENCE_RE.match(number):
            raise InvalidLicenceRequest("not a UK driving licence number")
        if not CHECK_CODE_RE.match(code):
            raise InvalidLicenceRequest("not a check code")
        if not idempotency_key:
            raise ValueError("an idempotency key is required")
        response = self._post({"drivingLicenceNumber": number, "checkCode": code}, idempotency_key)
        return self._record_from(response, number)

    def _post(self, payload: dict[str, str], key: str) -> requests.Response:
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(max_retries=self.retry))
            session.mount("https://", HTTPAdapter(max_retries=self.retry))
            try:
                return session.post(
                    self.base_url + CHECK_PATH, json=payload, timeout=self.timeout,
                    allow_redirects=False,
                    headers={API_KEY_HEADER: self.api_key, IDEMPOTENCY_HEADER: key,
                             "Accept": "application/json"},
                )
            except (requests.Timeout, requests.ConnectionError, requests.exceptions.RetryError) as exc:
                raise LicenceUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _record_from(self, response: requests.Response, number: str) -> LicenceRecord:
        status = response.status_code
        if status >= 500:
            raise LicenceUnavailable(f"HTTP {status} after {self.retry.total} retries")
        if status in (401, 403):
            log().error("licence service refused our API key", status=status)
            raise LicenceUnavailable(f"HTTP {status}: API key refused")
        if status == 429:
            raise LicenceUnavailable("HTTP 429: rate limited")
        if status == 404:
            raise CheckCodeRejected("check_code_invalid", _error_title(response))
        if status == 410:
            raise CheckCodeRejected("check_code_expired", _error_title(response))
        if status != 200:
            raise LicenceRequestRejected(f"HTTP {status}: {_error_title(response)}")
        try:
            body = response.json()
        except ValueError as exc:
            raise LicenceBadResponse("the answer is not JSON") from exc
        try:
            return parse_record(body, number)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LicenceBadResponse(f"unexpected answer: {type(exc).__name__}: {exc}") from exc


def _error_title(response: requests.Response) -> str:
    try:
        return str(response.json()["errors"][0]["title"])[:200]
    except (ValueError, KeyError, IndexError, TypeError):
        return f"HTTP {response.status_code}"


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def parse_record(body: dict[str, Any], number: str) -> LicenceRecord:
    """The documented 200 answer as a `LicenceRecord`; raises on anything else."""
    if not isinstance(body, dict):
        raise TypeError("the answer is not an object")
    driver, licence, token = body["driver"], body["licence"], body.get("token") or {}
    if driver["drivingLicenceNumber"] != number:
        raise ValueError("the answer is about another licence")
    entitlements = tuple(
        Entitlement(category=str(e["categoryCode"]), full=e.get("categoryType") == "Full",
                    valid_from=_date(e.get("fromDate")), valid_to=_date(e.get("expiryDate")))
        for e in body.get("entitlement") or []
    )
    points = 0
    for endorsement in body.get("endorsements") or []:
        value = endorsement.get("penaltyPoints") or 0
        if not isinstance(value, int) or value < 0:
            raise ValueError("penalty points must be a whole number")
        points += value
    disqualification = body.get("disqualification") or {}
    return LicenceRecord(
        licence_number=number, status=str(licence["status"]), licence_type=str(licence.get("type", "")),
        date_of_birth=_date(driver.get("dateOfBirth")),
        valid_from=_date(token.get("validFromDate")), valid_to=_date(token.get("validToDate")),
        entitlements=entitlements, penalty_points=points,
        disqualified_until=_date(disqualification.get("disqualifiedUntil")) if disqualification else None,
        raw=body,
    )


# --- configuration ------------------------------------------------------------------
_standin_lock = threading.Lock()
_dev_standin: Any = None


def client_from_config() -> LicenceClient:
    """The client for this app's settings (starting the development stand-in if needed)."""
    cfg = current_app.config
    licence = settings().licence
    url, key = licence.licence_api_url, licence.licence_api_key
    if not url:
        if cfg["ENV_NAME"] != "development" or not licence.licence_dev_standin:
            log().error("LICENCE_API_URL is not set: licence checks cannot run")
            raise LicenceUnavailable("LICENCE_API_URL is not set")
        url, standin_key = _development_standin(key)
        key = key or standin_key
    return LicenceClient(url, key, connect_timeout=licence.licence_connect_timeout_seconds,
                         read_timeout=licence.licence_read_timeout_seconds,
                         max_retries=licence.licence_max_retries,
                         backoff=licence.licence_retry_backoff_seconds)


def _development_standin(api_key: str) -> tuple[str, str]:
    """Start the stand-in once per process, on a free local port (development only)."""
    global _dev_standin
    with _standin_lock:
        if _dev_standin is None:
            from devtools.licence_standin import DEFAULT_API_KEY, LicenceStandIn
            _dev_standin = LicenceStandIn(api_key=api_key or DEFAULT_API_KEY).start()
            log().info("started the development licence stand-in", url=_dev_standin.url)
        return _dev_standin.url, _dev_standin.api_key
