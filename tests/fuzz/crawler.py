"""Find what a signed-in person can reach: crawl the pages they can see, collect every form and
every htmx request (hx-get / hx-post ...) with the fields it would send."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urldefrag, urljoin, urlsplit

from werkzeug.exceptions import HTTPException

HX_METHODS = ("get", "post", "put", "patch", "delete")
# Inputs whose value the browser sends as typed; others (checkbox, radio) only when chosen.
VOID_INPUT_TYPES = {"submit", "button", "reset", "image"}


@dataclass
class Field:
    name: str
    kind: str  # input type, "select", "textarea", "button"
    value: str = ""
    options: list[str] = field(default_factory=list)
    required: bool = False
    maxlength: int | None = None


@dataclass
class Target:
    """One request a page can make: a form's submission or an htmx attribute's."""

    method: str
    url: str  # path and query, as the page would send it
    fields: list[Field]
    multipart: bool = False
    found_on: str = ""
    htmx: bool = False
    endpoint: str = ""

    @property
    def key(self) -> tuple:
        # One target per endpoint, method and set of field names: ids in URLs and in the
        # prefixes of repeated forms ("class-2-daily_rate") vary, the code behind them not.
        names = {re.sub(r"\d+", "N", f.name) for f in self.fields}
        return (self.method, self.endpoint, tuple(sorted(names)))


class _PageParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.targets: list[tuple[dict, list[Field], bool]] = []  # (attrs, fields, htmx)
        self._form: tuple[dict, list[Field]] | None = None
        self._select: Field | None = None
        self._textarea: Field | None = None
        self._standalone_hx: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "form":
            self._form = (a, [])
            return
        hx = next((m for m in HX_METHODS if f"hx-{m}" in a), None)
        if hx and tag != "form":
            # Inside a form, an htmx element sends that form's fields (htmx's default).
            self._standalone_hx.append({**a, "_form": self._form})
        if self._form is None:
            return
        fields = self._form[1]
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in VOID_INPUT_TYPES:
                fields.append(Field(name, "button", a.get("value", "")))
            else:
                maxlength = int(a["maxlength"]) if a.get("maxlength", "").isdigit() else None
                existing = next((f for f in fields if f.name == name and f.kind in ("radio",)), None)
                if kind == "radio" and existing is not None:
                    existing.options.append(a.get("value", "on"))
                    if "checked" in a:
                        existing.value = a.get("value", "on")
                    return
                fields.append(Field(name, kind, a.get("value", "on" if kind in ("checkbox", "radio") else ""),
                                    options=[a.get("value", "on")] if kind == "radio" else [],
                                    required="required" in a, maxlength=maxlength))
        elif tag == "select" and name:
            self._select = Field(name, "select", required="required" in a)
            fields.append(self._select)
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            self._select.options.append(value)
            if "selected" in a or not self._select.value:
                self._select.value = value
        elif tag == "textarea" and name:
            self._textarea = Field(name, "textarea", required="required" in a)
            fields.append(self._textarea)
        elif tag == "button" and name:
            fields.append(Field(name, "button", a.get("value", "")))

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea.value += data

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form" and self._form is not None:
            attrs, fields = self._form
            htmx = any(f"hx-{m}" in attrs for m in HX_METHODS)
            self.targets.append((attrs, fields, htmx))
            for hx in self._standalone_hx:
                if hx["_form"] is self._form:
                    self.targets.append((hx, fields, True))
            self._standalone_hx = [h for h in self._standalone_hx if h["_form"] is not self._form]
            self._form = None

    def close(self):
        super().close()
        for hx in self._standalone_hx:  # htmx elements outside any form: no fields
            self.targets.append((hx, [], True))


def parse(html: str, page_url: str) -> tuple[list[str], list[Target]]:
    """Links and request targets of one page."""
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    links = [urldefrag(urljoin(page_url, href))[0] for href in parser.links]
    targets = []
    for attrs, fields, htmx in parser.targets:
        method, action = "GET", page_url
        for m in HX_METHODS:
            if f"hx-{m}" in attrs:
                method, action = m.upper(), attrs[f"hx-{m}"] or page_url
                break
        else:
            method = (attrs.get("method") or "GET").upper()
            action = attrs.get("action") or page_url
        multipart = "multipart" in (attrs.get("enctype") or attrs.get("hx-encoding") or "")
        url = urljoin(page_url, action)
        targets.append(Target(method, url, list(fields), multipart, page_url, htmx))
    return links, targets


class Crawler:
    """Breadth-first over same-site pages a client can GET, up to `max_pages`."""

    SKIP_PREFIXES = ("/static/", "/media/", "/account/sign-out", "/dev/")
    SKIP_SUFFIXES = (".csv", ".jpg", ".png", ".svg", ".ics")

    def __init__(self, app, client, *, max_pages: int = 60, max_per_endpoint: int = 3):
        self.app = app
        self.client = client
        self.max_pages = max_pages
        self.max_per_endpoint = max_per_endpoint
        self.adapter = app.url_map.bind("localhost")

    def endpoint(self, url: str, method: str = "GET") -> str | None:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            return None
        try:
            endpoint, _ = self.adapter.match(parts.path, method=method)
        except HTTPException:
            return None
        return endpoint

    def crawl(self, seeds: list[str]) -> tuple[list[Target], list[str]]:
        """(every target found, the pages visited)."""
        seen_urls: set[str] = set()
        per_endpoint: dict[str, int] = {}
        queue = deque(urljoin("http://localhost/", s) for s in seeds)
        visited, targets = [], {}
        while queue and len(visited) < self.max_pages:
            url = queue.popleft()
            parts = urlsplit(url)
            path_qs = parts.path + (f"?{parts.query}" if parts.query else "")
            if path_qs in seen_urls or parts.path.startswith(self.SKIP_PREFIXES) \
                    or parts.path.endswith(self.SKIP_SUFFIXES):
                continue
            seen_urls.add(path_qs)
            endpoint = self.endpoint(url)
            if endpoint is None or per_endpoint.get(endpoint, 0) >= self.max_per_endpoint:
                continue
            per_endpoint[endpoint] = per_endpoint.get(endpoint, 0) + 1
            response = self.client.get(path_qs)
            if response.status_code != 200 or response.mimetype != "text/html":
                continue
            visited.append(path_qs)
            links, found = parse(response.get_data(as_text=True), url)
            queue.extend(links)
            for target in found:
                target.endpoint = self.endpoint(target.url, target.method) or ""
                if not target.endpoint or urlsplit(target.url).path.startswith(self.SKIP_PREFIXES):
                    continue
                targets.setdefault(target.key, target)
                if target.method == "GET" and target.htmx:
                    queue.append(target.url)
        return list(targets.values()), visited


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)
