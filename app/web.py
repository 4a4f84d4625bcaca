"""The one place that decides "whole page or htmx fragment", how to redirect (and where a
`next`/`return_to` may send someone), and how ids are read from addresses and query strings."""

from __future__ import annotations

from typing import Optional
from urllib.parse import quote, urlsplit

from flask import (Response, current_app, g, has_request_context, redirect, render_template, request,
                   url_for)
from markupsafe import Markup
from werkzeug.routing import IntegerConverter

from .config import DB_INT_MAX, FRAGMENTS_PER_KIND
from .extensions import htmx


def bounded_int(value) -> int:
    """A whole number an INTEGER column holds ("1,200" -> 1200); ValueError for anything else.

    The one bound for ids and numbers from forms, query strings and addresses: a larger one
    would make PostgreSQL refuse the query (DataError) and SQLite's driver overflow.
    """
    number = int(str(value).strip().replace(",", ""))
    if not -DB_INT_MAX <= number <= DB_INT_MAX:
        raise ValueError(f"{value!r} is beyond the database's whole numbers")
    return number


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` in every route (the app factory installs it as "int"): an id larger than a
    database column holds matches no route, so it is a 404 like any other unknown id."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", DB_INT_MAX)
        super().__init__(map, *args, **kwargs)


def int_arg(name: str) -> Optional[int]:
    """A whole-number query parameter (an id) within a database column's range, else None."""
    try:
        return bounded_int(request.args.get(name, ""))
    except ValueError:
        return None


def safe_path(target: Optional[str], default: str) -> str:
    """Where a `next` or `return_to` may send someone: a path on this site ("/fleet/..."),
    else `default`.

    Refused: other sites ("https://evil", "//evil"), "\\" (browsers read it as "/"), and any
    control character: browsers drop tabs and new lines from an address, so "/\t/evil" would
    become "//evil", and a new line cannot go in a Location header at all.
    """
    target = target or ""
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or not target.isprintable()):
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


def wants_fragment() -> bool:
    return bool(htmx) and not htmx.boosted


def render(page: str, fragment: str, status: int = 200, **context) -> tuple[str, int]:
    """Render the full page, or only its partial for an htmx request."""
    return render_template(fragment if wants_fragment() else page, **context), status


def see_other(url: str) -> Response:
    """After a successful POST: 303 for browsers and boosted requests, HX-Redirect for htmx."""
    if htmx and not htmx.boosted:  # a boosted request follows a plain redirect itself
        response = Response(status=204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


def form_status(form) -> int:
    """422 for a submitted form that has errors, 200 for a fresh one."""
    return 422 if form.is_submitted() and form.errors else 200


def add_errors(form, errors: dict[str, str]) -> None:
    """Attach service errors to their fields; "" goes to the form as a whole."""
    for name, message in errors.items():
        field = getattr(form, name, None) if name else None
        if field is None:
            form.form_errors.append(message)
        elif message not in field.errors:
            field.errors = [*field.errors, message]


def row_url(endpoint: str, name: str, value) -> str:
    """`url_for(endpoint, **{name: value})` for the rows of a long list (a template global).

    Werkzeug builds every URL from its rule; for a list of 300 rows that was a tenth of the
    page. The rule is built once per request with a placeholder and each row's value put in
    its place (quoted as a path segment). Only for rules whose one variable is `name`."""
    memo = g.setdefault("_acme_row_urls", {})
    key = (endpoint, name)
    if key not in memo:
        built = url_for(endpoint, **{name: 0})
        head, sep, tail = built.partition("/0")
        memo[key] = (head, tail) if sep and "/0" not in tail else None
    parts = memo[key]
    if parts is None:
        return url_for(endpoint, **{name: value})
    return f"{parts[0]}/{quote(str(value), safe='')}{parts[1]}"


def fragment_cache(kind: str) -> dict:
    """This app's (a Gunicorn worker's) kept fragments of one kind: HTML rendered once from
    plain values and reused, keyed by everything it shows (issue 19: booking/fragments.py,
    counter/board_rows.py). Add to it with `keep_fragment`, which bounds it."""
    return current_app.extensions.setdefault("acme_fragments", {}).setdefault(kind, {})


def keep_fragment(cache: dict, key, html, *, limit: int = FRAGMENTS_PER_KIND) -> Markup:
    """Keep `html` under `key` in a `fragment_cache`; a full cache is emptied and fills again."""
    return keep(cache, key, Markup(html), limit=limit)


def keep(cache: dict, key, value, *, limit: int = FRAGMENTS_PER_KIND):
    """Keep any value under `key` in a `fragment_cache` (bounded as `keep_fragment`)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


def fixed_url(endpoint: str, **values) -> str:
    """`url_for(endpoint, **values)` for the links every page repeats with the same values
    (a template global: base.html's stylesheets, scripts, icons and menu).

    Built once per app (a Gunicorn worker) and path prefix, then reused: each url_for costs
    werkzeug a rule build, and base.html alone had fifteen per page (issue 19). Relative
    paths only, as url_for gives them inside a request; the app sets no URL defaults."""
    if not has_request_context():
        return url_for(endpoint, **values)
    cache = current_app.extensions.setdefault("acme_fixed_urls", {})
    key = (endpoint, tuple(sorted(values.items())), request.script_root)
    url = cache.get(key)
    if url is None:
        url = cache[key] = url_for(endpoint, **values)
    return url
