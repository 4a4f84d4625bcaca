"""Links the booking pages repeat for every car of a list (issue 19).

Werkzeug builds each URL from its rule and encodes the query string anew: for a page of 24
cars with the same trip that was a third of the results' rendering. `quote_url` builds the
car page's address once per request and trip, and puts each car's id into it.
"""

from __future__ import annotations

from flask import g, url_for

from . import bp

_PLACEHOLDER = 0


@bp.app_template_global()
def quote_url(car_id: int, args: dict) -> str:
    """url_for('booking.quote', car_id=car_id, **args), the same string, built once per trip."""
    key = tuple(args.items())
    cached = g.get("_acme_quote_url")
    if cached is None or cached[0] != key:
        url = url_for("booking.quote", car_id=_PLACEHOLDER, **args)
        path, mark, query = url.partition("?")
        suffix = f"/{_PLACEHOLDER}"
        cached = (key, path[:-len(suffix)] + "/" if path.endswith(suffix) else None, mark + query)
        g._acme_quote_url = cached
    _, prefix, query = cached
    if prefix is None:  # a rule this shortcut does not understand: the long way
        return url_for("booking.quote", car_id=car_id, **args)
    return f"{prefix}{int(car_id)}{query}"
