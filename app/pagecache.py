"""A few seconds' cache of public pages for visitors who are not signed in (issue 9).

The search page and a car's price page are what most visitors ask for, and they are the same
for everyone who is not signed in and asks the same question: same dates, branch, filters,
extras, same htmx swap or whole page. Such an answer is kept in the worker's memory for
PUBLIC_PAGE_CACHE_SECONDS and served again without Flask, the database or the templates:
what Nginx "micro-caching" does, kept in the app so that only views that declare it are cached
and a signed-in page never is.

The rules, all of them needed for "never someone else's page":
- a view opts in with `@public_cache`; it marks the request only when nobody is signed in;
- only GET requests without the app's cookies (session, remember me) or an Authorization
  header are served from or stored in the cache; a visitor with a session (signed in, or with
  a message to show) always gets a freshly rendered page;
- an answer is stored only with status 200, 409 or 422 and without Set-Cookie (a page that put
  something in the visitor's session, such as a CSRF token, is personal);
- the key is everything such an answer depends on: path, query string, host, scheme and the
  forwarding headers, and the htmx headers that choose fragment or page.

What a visitor may notice: a car someone held in the last PUBLIC_PAGE_CACHE_SECONDS can still
be listed for a visitor who is not signed in; booking it needs signing in, and holding it
checks the database (`services.create_hold`), so the worst is a "just taken" answer with
alternatives. Price edits reach anonymous visitors within the same few seconds.

A hit gets its own X-Request-ID and is counted in `acme_page_cache_total{route, result}`
(results `hit` and `stored`); hits are not in `flask_http_request_*`, which count the
requests Flask itself answered.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import wraps
from typing import Callable, Iterable

from flask import Flask, request
from flask_login import current_user

from .logging_setup import REQUEST_ID_HEADER, request_id
from .metrics import PAGE_CACHE

CACHEABLE_STATUSES = frozenset({200, 409, 422})
# The WSGI environ key a view sets (to its endpoint name) to say "this answer may be kept".
MARK = "acme.public_cache"
# What an anonymous page's answer can depend on besides the path and query string.
KEY_ENVIRON = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "wsgi.url_scheme", "HTTP_HOST",
               "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PREFIX",
               "HTTP_HX_REQUEST", "HTTP_HX_BOOSTED")


def public_cache(view: Callable) -> Callable:
    """Let the public page cache keep this view's answer to a visitor who is not signed in."""
    @wraps(view)
    def marked(*args, **kwargs):
        if not current_user.is_authenticated:
            request.environ[MARK] = request.endpoint
        return view(*args, **kwargs)
    return marked


@dataclass(frozen=True)
class Entry:
    expires: float
    status: str
    headers: tuple[tuple[str, str], ...]  # without X-Request-ID
    body: bytes
    route: str


class PublicPageCache:
    """WSGI middleware around the Flask app: answers repeated anonymous GETs from memory."""

    def __init__(self, app: Flask, wsgi_app):
        self.wsgi_app = wsgi_app
        cfg = app.config
        self.seconds = float(cfg["PUBLIC_PAGE_CACHE_SECONDS"])
        self.max_entries = int(cfg["PUBLIC_PAGE_CACHE_ENTRIES"])
        self.max_bytes = int(cfg["PUBLIC_PAGE_CACHE_MAX_BYTES"])
        self.cookie_names = tuple(f"{cfg[name]}=" for name in
                                  ("SESSION_COOKIE_NAME", "REMEMBER_COOKIE_NAME")
                                  if cfg.get(name))
        self.clock: Callable[[], float] = time.monotonic  # tests replace it
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        key = self._key(environ)
        if key is None:
            return self.wsgi_app(environ, start_response)
        entry = self._get(key)
        if entry is not None:
            return self._serve(entry, environ, start_response)
        return self._render_and_keep(key, environ, start_response)

    def _key(self, environ) -> tuple | None:
        """The cache key, or None when this request must not touch the cache."""
        if self.seconds <= 0 or environ.get("REQUEST_METHOD") != "GET":
            return None
        if environ.get("HTTP_AUTHORIZATION"):
            return None
        cookies = environ.get("HTTP_COOKIE", "")
        if cookies and any(name in cookies for name in self.cookie_names):
            return None
        return tuple(environ.get(name, "") for name in KEY_ENVIRON)

    def _get(self, key: tuple) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires <= self.clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def _serve(self, entry: Entry, environ, start_response) -> Iterable[bytes]:
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        start_response(entry.status, [*entry.headers, (REQUEST_ID_HEADER, rid)])
        PAGE_CACHE.labels(route=entry.route, result="hit").inc()
        return [entry.body]

    def _render_and_keep(self, key: tuple, environ, start_response) -> Iterable[bytes]:
        seen: dict = {}

        def remember(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return start_response(status, headers, exc_info)

        result = self.wsgi_app(environ, remember)
        route = environ.get(MARK)
        if not route or not self._storable(seen.get("status", ""), seen.get("headers", ())):
            return result
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        if len(body) <= self.max_bytes:
            headers = tuple((k, v) for k, v in seen["headers"] if k.lower() != "x-request-id")
            self._put(key, Entry(self.clock() + self.seconds, seen["status"], headers, body, route))
            PAGE_CACHE.labels(route=route, result="stored").inc()
        return [body]

    @staticmethod
    def _storable(status: str, headers) -> bool:
        code = int(status.split(" ", 1)[0] or 0) if status else 0
        return code in CACHEABLE_STATUSES and not any(k.lower() == "set-cookie" for k, _ in headers)

    def _put(self, key: tuple, entry: Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def init_page_cache(app: Flask) -> None:
    """Put the cache in front of the app (outermost, so a hit costs no Flask work)."""
    cache = PublicPageCache(app, app.wsgi_app)
    app.wsgi_app = cache  # type: ignore[method-assign]
    app.extensions["acme_page_cache"] = cache
