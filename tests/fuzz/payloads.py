"""Hostile values for form fields (hypothesis strategies), and how to recognise them reflected
unescaped in a page."""

from __future__ import annotations

import io

from hypothesis import strategies as st

from .crawler import Field, Target
from .sweeps import BOMB_HEADER, png

XSS = [
    '<script>alert("fz-xss")</script>',
    '"><script>alert("fz-xss")</script>',
    "'><img src=x onerror=alert('fz-xss')>",
    '<svg onload=alert("fz-xss")>',
    '</textarea><script>alert("fz-xss")</script>',
    "javascript:alert('fz-xss')",
    "{{7*7}}fz-ssti",
    "${7*7}fz-ssti",
]
# Seen raw in an HTML response, each of these means a payload was reflected unescaped (or a
# template evaluated it).
RAW_MARKERS = ['<script>alert("fz-xss")', "<img src=x onerror=alert('fz-xss')",
               '<svg onload=alert("fz-xss")', 'href="javascript:', "href='javascript:",
               'src="javascript:', 'action="javascript:', "49fz-ssti"]
SQL = ["' OR '1'='1", "1; DROP TABLE users; --", "' UNION SELECT NULL, version() --",
       "%", "_", "\\", "'", '"', "1' AND SLEEP(5) --", "$1", "%s", "%(x)s"]
CONTROL = ["\x00", "abc\x00def", "\x1b[31mred", "\r\nSet-Cookie: fz=1", "\x7f", "\x08\x08",
           "line\nbreak", "\t"]
UNICODE = ["\u202eevil", "\ufeffbom", "zero\u200bwidth", "🚗🚙", "e\u0301", "ǅ", "１２３", "١٢٣",
           "İstanbul", "ß", "ﬁ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u0000\u0085\u2028\u2029", "Ω" * 3, "  padded  ", ""]
NUMBERS = ["-1", "-0", "0", "1e309", "NaN", "Infinity", "-Infinity", "0x1F", "1.5", " 7 ",
           "99999999999999999999999999", "-99999999999999999999", "2147483648", "9223372036854775808",
           "1,000", "+5", "٣"]
DATES = ["2030-02-30T10:00", "0001-01-01T00:00", "9999-12-31T23:59", "2030-06-01", "10:00",
         "2030-06-01T10:00:00+99:00", "2038-01-19T03:14:08", "1969-12-31T23:59", "2030-06-01T25:61",
         "2030-03-30T01:30", "2030-10-27T01:30"]  # the last two: UK clock changes
EMAILS = ["UPPER@EXAMPLE.COM", " spaced@example.com ", "a@b", "@", "x" * 300 + "@example.com",
          "test+tag@example.com", "ünïcode@exämple.com", "a@b@c.com", "<script>@x.com"]
HOSTILE = XSS + SQL + CONTROL + UNICODE + NUMBERS + DATES + EMAILS
OVERSIZE_BYTES = 17 * 1024 * 1024  # above MAX_CONTENT_LENGTH (16 MB)

# For the random part (the sweeps send hostile_files() to every upload).
FILES = [
    (b"", "empty.jpg"),
    (b"not an image at all", "x.jpg"),
    (png(1, 1), "pixel.png"),
    (png(1, 1), "../../../../etc/passwd"),
    (png(1, 1), "ünï<script>.png"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "x.svg"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "truncated.png"),
    (BOMB_HEADER, "bomb.png"),
]


def _value(f: Field, in_url: bool = False) -> st.SearchStrategy[str]:
    """Mostly plausible values (so deeper code runs), often hostile, sometimes huge.

    In a URL, "huge" stays within what Gunicorn lets through (a 4094-byte request line).
    """
    valid = st.sampled_from(f.options) if f.options else st.just(f.value)
    sizes = [500, 1500] if in_url else [10_000, 100_000, 400_000]  # 400k "é": over 500 KB
    huge = st.sampled_from(sizes).flatmap(
        lambda n: st.sampled_from(["A" * n, "é" * (n // 2), "<" * n, "'" * n, "9" * n]))
    return st.one_of(valid, valid, valid, st.sampled_from(HOSTILE), st.text(max_size=60), huge)


@st.composite
def form_payload(draw, target: Target, csrf: str):
    """A list of (name, value) pairs (a field may be missing or repeated) and the files."""
    pairs: list[tuple[str, str]] = []
    files: list[tuple[str, bytes, str]] = []
    for f in target.fields:
        if f.name == "csrf_token" or f.name.endswith("-csrf_token"):  # prefixed forms too
            pairs.append((f.name, csrf))  # a wrong token only ever gets 400: not worth the time
            continue
        how = draw(st.sampled_from(["send"] * 7 + ["omit", "twice", "empty"]))
        if how == "omit":
            continue
        if f.kind == "file":
            content, filename = draw(st.sampled_from(FILES))
            files.append((f.name, content, filename))
            continue
        if f.kind in ("checkbox", "radio", "button") and how == "send" and draw(st.booleans()):
            continue  # unchecked / not the button clicked
        in_url = target.method == "GET"
        value = "" if how == "empty" else draw(_value(f, in_url))
        pairs.append((f.name, value))
        if how == "twice":
            pairs.append((f.name, draw(_value(f, in_url))))
    if draw(st.integers(0, 9)) == 0:
        pairs.append((draw(st.sampled_from(["id", "role", "state", "customer_id", "amount_pence",
                                            "is_admin", "__proto__"])), draw(st.sampled_from(HOSTILE))))
    return pairs, files


def as_files(files: list[tuple[str, bytes, str]]) -> list[tuple[str, tuple]]:
    return [(name, (io.BytesIO(content), filename)) for name, content, filename in files]


def reflected(html: str) -> list[str]:
    """The unescaped markers present in an HTML response."""
    return [m for m in RAW_MARKERS if m in html]
