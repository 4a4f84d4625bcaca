"""Benchmark 3: page weight - the bytes a browser receives, compressed as Nginx sends them.

    .venv/bin/python bench/page_weight.py [--reuse-db]

Compression is Nginx's job (ansible/roles/nginx/templates/acme.conf.j2): this reads its gzip
settings (gzip on, gzip_types, gzip_comp_level - Nginx's default level 1 when not set) and
compresses each response the app serves the same way, with zlib. Measured against the app run
as in production (bench/gunicorn.conf.py, PostgreSQL, Redis, demo fleet).

- First load of the home page and of the search page: the HTML and every stylesheet, script,
  image and icon it references, headers included (counted uncompressed: HTTP/2's HPACK only
  makes them smaller). Target: < 100 KB each.
- A typical htmx swap: the search results fragment (HX-Request) when the dates change, and the
  price breakdown fragment of a car. Target: < 10 KB each.

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import re
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench.throughput import trip  # noqa: E402

FIRST_LOAD_TARGET = 100 * 1024
SWAP_TARGET = 10 * 1024
NGINX_CONF = common.ROOT / "ansible" / "roles" / "nginx" / "templates" / "acme.conf.j2"
NGINX_DEFAULT_LEVEL = 1  # Nginx's own default for gzip_comp_level
# /static/ is served by Nginx itself, typed by its mime.types (Debian 12's Nginx 1.22; from
# 1.25 on, .js is text/javascript, which the role's gzip_types does not list).
NGINX_MIME = {".js": "application/javascript", ".css": "text/css", ".svg": "image/svg+xml",
              ".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp",
              ".ico": "image/x-icon", ".json": "application/json"}


def nginx_gzip() -> tuple[bool, int, set[str], str]:
    """(gzip on?, level, MIME types compressed, where the settings came from)."""
    try:
        conf = NGINX_CONF.read_text()
    except FileNotFoundError:
        return True, 5, {"text/html", "text/css", "application/javascript", "application/json",
                         "image/svg+xml"}, "assumed (no Nginx role found): gzip level 5"
    on = bool(re.search(r"^\s*gzip\s+on\s*;", conf, re.M))
    level_match = re.search(r"^\s*gzip_comp_level\s+(\d+)\s*;", conf, re.M)
    level = int(level_match.group(1)) if level_match else NGINX_DEFAULT_LEVEL
    types_match = re.search(r"^\s*gzip_types\s+([^;]+);", conf, re.M)
    types = {"text/html"} | set(types_match.group(1).split() if types_match else [])
    source = (f"{NGINX_CONF.relative_to(common.ROOT)}: gzip {'on' if on else 'off'}, level {level}"
              f"{'' if level_match else ' (Nginx default)'}, types {' '.join(sorted(types))}")
    return on, level, types, source


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link" and a.get("href") and (a.get("rel") or "") in (
                "stylesheet", "icon", "preload", "modulepreload", "manifest", "apple-touch-icon"):
            self.urls.append(a["href"])
        elif tag in ("script", "img", "source") and a.get("src"):
            self.urls.append(a["src"])


class Meter:
    def __init__(self, base_url: str):
        import requests
        self.base_url = base_url
        self.session = requests.Session()
        self.on, self.level, self.types, self.source = nginx_gzip()

    def fetch(self, path: str, headers: dict | None = None) -> tuple[int, int, str, str]:
        """(bytes on the wire, uncompressed body bytes, content type, text)."""
        response = self.session.get(self.base_url + path, timeout=60,
                                    headers={"X-Forwarded-Proto": "https", **(headers or {})})
        response.raise_for_status()
        body = response.content
        ctype = response.headers.get("Content-Type", "").split(";")[0].strip()
        if path.startswith("/static/"):
            ctype = NGINX_MIME.get(Path(urlsplit(path).path).suffix, ctype)
        wire_body = body
        if self.on and ctype in self.types and len(body) >= 20:  # gzip_min_length 20
            compressor = zlib.compressobj(self.level, zlib.DEFLATED, 31)  # gzip wrapper
            wire_body = compressor.compress(body) + compressor.flush()
        head = len(f"HTTP/1.1 {response.status_code} {response.reason}\r\n") + sum(
            len(f"{k}: {v}\r\n") for k, v in response.headers.items()) + 2
        return head + len(wire_body), len(body), ctype, response.text

    def first_load(self, path: str) -> tuple[int, list[tuple[str, int, int]]]:
        wire, raw, _, html = self.fetch(path)
        parts = [(path, wire, raw)]
        parser = _Assets()
        parser.feed(html)
        for url in dict.fromkeys(parser.urls):  # each asset once, as a browser cache would
            target = urljoin(self.base_url + path, url)
            if urlsplit(target).netloc != urlsplit(self.base_url).netloc:
                continue
            parts_url = urlsplit(target)
            asset = parts_url.path + (f"?{parts_url.query}" if parts_url.query else "")
            a_wire, a_raw, _, _ = self.fetch(asset)
            parts.append((asset, a_wire, a_raw))
        return sum(p[1] for p in parts), parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse-db", action="store_true")
    options = parser.parse_args()
    print(f"machine: {common.machine()}")
    db_url = common.os.environ.get("BENCH_DATABASE_URL", common.DEFAULT_DB)
    env = common.app_env(db_url, common.os.environ.get("BENCH_REDIS_URL", common.DEFAULT_REDIS))
    if not options.reuse_db:
        common.recreate_database(db_url)
    app = common.build_app(env)
    if not options.reuse_db:
        common.migrate_and_seed(app, customers=1)
    args = trip(app)
    from urllib.parse import urlencode
    search = "/book/?" + urlencode(args)
    later = dict(args, pickup_at=args["pickup_at"].replace("T10:00", "T12:00"))

    with common.running_stack(env, rq_worker=False, workers=2) as stack:
        meter = Meter(stack.base_url)
        print(f"compression: {meter.source}")
        rows, failures = [], []
        for name, path in (("home page, first load", "/"), ("search page, first load", search)):
            total, parts = meter.first_load(path)
            detail = ", ".join(f"{Path(urlsplit(p).path).name or p}: {w:,} B ({r:,} raw)"
                               for p, w, r in parts)
            rows.append((name, f"{total:,}", f"{FIRST_LOAD_TARGET:,}", detail))
            if total >= FIRST_LOAD_TARGET:
                failures.append(f"{name}: {total:,} B >= {FIRST_LOAD_TARGET:,} B")
        results_html = meter.fetch(search)[3]
        car = re.search(r'href="(/book/cars/\d+\?[^"]+)"', results_html).group(1).replace("&amp;", "&")
        swaps = (("htmx swap: search results (dates changed)", "/book/?" + urlencode(later)),
                 ("htmx swap: a car's price breakdown", car + "&extra_gps=y"))
        for name, path in swaps:
            wire, raw, ctype, text = meter.fetch(path, {"HX-Request": "true"})
            assert "<html" not in text, f"{path} answered a whole page to htmx"
            rows.append((name, f"{wire:,}", f"{SWAP_TARGET:,}", f"{ctype}, {raw:,} B raw"))
            if wire >= SWAP_TARGET:
                failures.append(f"{name}: {wire:,} B >= {SWAP_TARGET:,} B")
    print()
    print(common.table(rows, ("what", "bytes transferred", "target <", "parts")))
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    print("RESULT:", "FAIL" if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
