"""The counter board's rows, rendered once per worker and reused (issue 19).

A busy branch's board lists 300 hires, refreshed by every tablet every 30 s; rendering 300
rows through a Jinja macro was most of the page's CPU. A row's HTML is a pure function of its
`BoardHire` (counter_board.py), the plain values read by the board's one query on every
request, with what the row shows worked out there (its list, local time, minutes late,
checked in, the hand-over's seconds, a failed agreement). So each row is rendered by the
`hire_row` macro (templates/counter/partials/_board_row.html) the first time those values
are seen and kept, keyed by all of them: a hire whose state, time, customer, car or flags
changed is a new key, and nothing read from the database is kept here. Per worker, bounded
(app/web.py: fragment_cache).
"""

from __future__ import annotations

from flask import get_template_attribute, request
from markupsafe import Markup

from ..web import fragment_cache, keep_fragment
from . import bp
from .counter_board import BoardHire

ROW_TEMPLATE = "counter/partials/_board_row.html"


@bp.app_template_global()
def board_rows(hires: list[BoardHire]) -> Markup:
    """The rows (`<li>`s) of one of the board's lists, in its order."""
    cache = fragment_cache("board_row")
    root = request.script_root  # the links' prefix
    rows = []
    for h in hires:
        key = (h, root)
        html = cache.get(key)
        if html is None:
            html = keep_fragment(cache, key, get_template_attribute(ROW_TEMPLATE, "hire_row")(h))
        rows.append(html)
    return Markup("".join(rows))
