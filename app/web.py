"""The one place that decides "whole page or htmx fragment", and how to redirect."""

from __future__ import annotations

from flask import Response, redirect, render_template

from .extensions import htmx


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
