"""The fuzzer's systematic part: every class of hostile value that has reached a 500 before,
tried on every field, address and upload the crawl found, one at a time (the other fields keep
their valid values, so the code behind the first check runs too).

Each sweep yields `Probe`s; test_fuzz_forms sends them and checks the answers. Random
combinations (hypothesis) come after, within a time budget.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, urlsplit

from .crawler import Field, Target

# Column limits and beyond: PostgreSQL INTEGER (2**31), BIGINT / SQLite INTEGER (2**63), and a
# number no 64-bit column holds (Python's sqlite3 raises OverflowError on it).
INT_EDGES_ANY = ["9" * 30]  # every field: a number hiding in a text field
INT_EDGES_NUMERIC = ["2147483648", "-2147483649", "9223372036854775808", "-1"]
# The calendar's ends, and a day that does not exist.
DATE_EDGES = {
    "date": ["0001-01-01", "9999-12-31", "2030-02-30"],
    "datetime-local": ["0001-01-01T00:00", "9999-12-31T23:59", "2030-02-30T10:00"],
    "time": ["00:00", "23:59", "24:00"],
}
# NUL (PostgreSQL refuses it in text), and a new line that would add a header if it got into
# one (a header cannot hold one: werkzeug refuses it, a 500).
CONTROL_EDGES = ["fz\x00nul", "\r\nX-Fz: 1"]
# Where a `next` or `return_to` must never send anyone.
LEAVING = ["/\n/evil.example/x", "/\t/evil.example/x", "//evil.example/x", "/\\evil.example/x",
           "https://evil.example/x", "/\x00/x"]
REDIRECT_NAMES = ("next", "return_to")
# Path segments: ids beyond every column, and references that are not references.
PATH_EDGES = ["2147483648", "9223372036854775808", "9" * 30, "-1", quote("fz\x00", safe=""),
              quote("fz\n", safe=""), "A" * 300]

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?)?$")
NUMERIC_NAME = re.compile(r"(^|_)(id|ids|version|pence|miles|year|level|days|hours|minutes|"
                          r"qty|quantity|count|percent|seats|doors|rate|fee|amount|branch|"
                          r"car_class|car|odometer|mileage)$")
DATE_NAME = re.compile(r"(date|_at$|^from$|^to$|^start|^end|_from$|_to$|day$)")


@dataclass
class Probe:
    what: str  # a short description for the report
    pairs: list[tuple[str, str]]
    files: list[tuple[str, bytes, str]] = field(default_factory=list)
    path: str | None = None  # instead of the target's own path
    query: list[tuple[str, str]] = field(default_factory=list)  # added to the target's query
    redirect: bool = False  # the answer must not send anyone off the site


# --- images -----------------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, *, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A valid PNG of zeros. 1-bit grey compresses a huge picture into a few kilobytes: the
    shape of a decompression bomb."""
    row_bytes = (width * bit_depth * (3 if colour == 2 else 1) + 7) // 8
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * row_bytes
    chunks = []
    for _ in range(height):
        chunks.append(compressor.compress(row))
    chunks.append(compressor.flush())
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))
            + _chunk(b"IDAT", b"".join(chunks)) + _chunk(b"IEND", b""))


# A PNG header claiming 100000 x 100000 pixels: a decompression bomb's first bytes.
BOMB_HEADER = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000,
                                                                  8, 2, 0, 0, 0))


@lru_cache(maxsize=1)
def hostile_files() -> list[tuple[str, bytes, str]]:
    """(what, content, filename) for every upload."""
    return [
        ("empty file", b"", "empty.png"),
        ("not an image", b"not an image at all", "x.png"),
        ("truncated PNG", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "truncated.png"),
        ("SVG with script", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "x.svg"),
        ("path in the name", png(2, 2), "../../../../etc/passwd"),
        ("NUL in the name", png(2, 2), "fz\x00.png"),
        # 225 megapixels in ~30 KB: over Pillow's own bomb limit.
        ("decompression bomb (225 MP)", png(15_000, 15_000, bit_depth=1, colour=0), "bomb.png"),
        ("bomb header only (10 GP)", BOMB_HEADER, "bomb-header.png"),
        # 81 megapixels: under Pillow's limit, a 240 MB decode unless the app bounds pixels.
        ("81 MP picture", png(9_000, 9_000, bit_depth=1, colour=0), "big.png"),
        # Over every per-image byte limit, under the request limit.
        ("9 MB file", b"\xff\xd8\xff\xe0" + b"\x00" * (9 * 1024 * 1024), "huge.jpg"),
    ]


# --- field classes ----------------------------------------------------------------------------

def is_numeric(f: Field) -> bool:
    if f.kind in ("number", "range"):
        return True
    values = [v for v in (f.options or [f.value]) if v]
    if values and all(v.lstrip("-").isdigit() for v in values):
        return True
    return bool(NUMERIC_NAME.search(f.name.split("-")[-1]))


def date_kind(f: Field) -> str | None:
    if f.kind in DATE_EDGES:
        return f.kind
    if DATE_RE.match(f.value or ""):
        return "datetime-local" if "T" in f.value else "date"
    if f.kind in ("text", "hidden", "search") and DATE_NAME.search(f.name.split("-")[-1]):
        return "date"
    return None


def _valid(target: Target, csrf: str) -> list[tuple[str, str]]:
    """What the browser would send unchanged: each field's shown value, the CSRF token."""
    pairs = []
    for f in target.fields:
        if f.name == "csrf_token" or f.name.endswith("-csrf_token"):
            pairs.append((f.name, csrf))
        elif f.kind in ("file", "button"):
            continue
        elif f.kind in ("checkbox", "radio") and not f.value:
            continue
        else:
            pairs.append((f.name, f.value))
    return pairs


def _with(pairs, name: str, value: str) -> list[tuple[str, str]]:
    out = [(k, value if k == name else v) for k, v in pairs]
    return out if any(k == name for k, _ in pairs) else out + [(name, value)]


def field_probes(target: Target, csrf: str):
    """Each field in turn: control characters, the calendar's ends (dates), integers at and
    beyond the columns' limits; then all dates at once at either end.

    Values a field should refuse come first: a form that accepts a value does what it does
    (refuses a pickup, cancels a booking), and later values meet the changed state.
    """
    valid = _valid(target, csrf)
    fields = [f for f in target.fields if f.kind not in ("file", "button")
              and f.name != "csrf_token" and not f.name.endswith("-csrf_token")]
    dates = [(f.name, date_kind(f)) for f in fields if date_kind(f)]
    numeric = [f for f in fields if is_numeric(f)]
    rounds = [
        [(f.name, v) for f in fields for v in CONTROL_EDGES],
        [(name, v) for name, kind in dates for v in DATE_EDGES[kind]],
        [(f.name, v) for f in numeric for v in INT_EDGES_ANY + INT_EDGES_NUMERIC],
        [(f.name, v) for f in fields if f not in numeric for v in INT_EDGES_ANY],
    ]
    for name, value in (probe for round_ in rounds for probe in round_):
        yield Probe(f"{name}={value[:40]!r}", _with(valid, name, value))
    if len(dates) > 1:
        for i, label in enumerate(("earliest", "latest")):
            pairs = valid
            for name, kind in dates:
                pairs = _with(pairs, name, DATE_EDGES[kind][i])
            yield Probe(f"every date at the calendar's {label} end", pairs)
        pairs = valid  # from the first day there is to the last
        for j, (name, kind) in enumerate(dates):
            pairs = _with(pairs, name, DATE_EDGES[kind][0 if j == 0 else 1])
        yield Probe("dates from the calendar's first day to its last", pairs)


def file_probes(target: Target, csrf: str):
    """Every hostile upload in every file field."""
    valid = _valid(target, csrf)
    for f in target.fields:
        if f.kind != "file":
            continue
        for what, content, filename in hostile_files():
            yield Probe(f"{f.name}=<{what}>", valid, files=[(f.name, content, filename)])


def redirect_probes(target: Target, csrf: str):
    """`next` and `return_to` off the site, in the form (if it has one) and in the address."""
    valid = _valid(target, csrf)
    named = {f.name for f in target.fields if f.name in REDIRECT_NAMES}
    for value in LEAVING:
        pairs = valid
        for name in named:
            pairs = _with(pairs, name, value)
        query = [(name, value) for name in REDIRECT_NAMES]
        yield Probe(f"next/return_to={value!r}", pairs, query=query, redirect=True)


def path_probes(target: Target, csrf: str, rule) -> list[Probe]:
    """Each variable part of the address replaced by a huge id or a hostile reference."""
    valid = _valid(target, csrf)
    path = urlsplit(target.url).path
    parts = path.split("/")
    rule_parts = rule.rule.split("/")
    if len(parts) != len(rule_parts):
        return []
    probes = []
    for i, segment in enumerate(rule_parts):
        if "<" not in segment:
            continue
        for value in PATH_EDGES:
            changed = parts[:i] + [value] + parts[i + 1:]
            probes.append(Probe(f"path {segment}={value[:30]}", valid, path="/".join(changed)))
    return probes


def is_off_site(location: str) -> bool:
    """Would a browser following this leave the site? (It drops tabs and new lines first.)"""
    cleaned = re.sub(r"[\t\r\n]", "", location or "").replace("\\", "/").strip()
    if not cleaned:
        return False
    parts = urlsplit(cleaned)
    return cleaned.startswith("//") or (bool(parts.netloc) and parts.hostname not in ("localhost",))
