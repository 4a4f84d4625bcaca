"""Who may use which route. Every endpoint declares it; anything undeclared is refused.

A view declares its audience with `@allow("public")`, `@allow("customer")`,
`@allow("staff", "admin")`...; a whole blueprint can declare a default with
`guard_blueprint(bp, "staff", "admin")` (the staff areas do), which a view may only narrow.
One `before_request` hook enforces it for every request.
"""

from __future__ import annotations

from typing import Callable, Iterable

from flask import Blueprint, Flask, Response, abort, current_app, flash, jsonify, redirect, request
from flask_login import current_user, login_url

from .extensions import htmx, login_manager

PUBLIC = "public"
ROLES = ("customer", "staff", "admin")
AUDIENCES = (PUBLIC, *ROLES)

_blueprint_defaults: dict[str, frozenset[str]] = {}


def allow(*audience: str) -> Callable:
    """Declare who may call this view."""
    unknown = set(audience) - set(AUDIENCES)
    if unknown or not audience:
        raise ValueError(f"unknown audience {unknown or audience}")

    def mark(view: Callable) -> Callable:
        view.allowed_audience = frozenset(audience)  # type: ignore[attr-defined]
        return view

    return mark


def guard_blueprint(bp: Blueprint, *audience: str) -> None:
    """Give every view of `bp` this audience unless it declares a narrower one."""
    _blueprint_defaults[bp.name] = frozenset(audience)


def audience_for(app: Flask, endpoint: str) -> frozenset[str] | None:
    view = app.view_functions.get(endpoint)
    declared = getattr(view, "allowed_audience", None)
    blueprint = endpoint.rsplit(".", 1)[0] if "." in endpoint else None
    default = _blueprint_defaults.get(blueprint) if blueprint else None
    if declared is not None and default is not None:
        # A view in a guarded blueprint may narrow the audience, never widen it.
        return declared & default if PUBLIC not in default else declared
    return declared if declared is not None else default


NUL_REFUSED = ("Your request contained a character that cannot be part of any address or form "
               "field here (a NUL). Please go back and type it again.")


def refuse_nul_bytes() -> None:
    """before_request: a NUL in the address is refused (400) before any route looks it up.

    Nobody types one and PostgreSQL cannot compare text with one (a 500 from a lookup by
    reference). Query and form values are the forms' business: their fields say
    "Remove the control characters." beside the field.
    """
    if "\x00" in request.path:
        abort(400, description=NUL_REFUSED)


def enforce_access() -> None:
    """before_request: refuse anyone the endpoint does not admit."""
    endpoint = request.endpoint
    if endpoint is None:  # 404 / 405: let the error handlers answer
        return None
    if endpoint == "static":
        return None
    audience = audience_for(current_app, endpoint)
    if audience is None:
        current_app.logger.error("route %s declares no audience; refused", endpoint)
        abort(403)
    if PUBLIC in audience:
        return None
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
    if current_user.role not in audience:
        abort(403)
    return None


SIGNED_OUT = "Your session has ended: please sign in again."


def answer_signed_out() -> Response:
    """Flask-Login's unauthorized handler: someone not signed in asked for a route that needs it.

    A page the browser navigates to is sent to the sign-in page, with a message. A request made
    in the background (htmx's refresh of a board, a script's fetch, the counter's service
    worker) gets 401 and leaves the session alone: the cookie a redirect and its message would
    set replaces the one of the sign-in page the person may have open meanwhile, whose form
    would then fail its CSRF check. htmx is told to take the page to sign in (HX-Redirect);
    `Sec-Fetch-Mode` tells a script's request from a navigation (a client that sends no such
    header is treated as a navigation).
    """
    if htmx:
        response = Response(status=401)
        response.headers["HX-Redirect"] = login_url(login_manager.login_view,
                                                    next_url=htmx.current_url or request.url)
        return response
    if request.headers.get("Sec-Fetch-Mode", "navigate") != "navigate":
        return jsonify(error=SIGNED_OUT), 401  # type: ignore[return-value]
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(login_url(login_manager.login_view, next_url=request.url))


def undeclared_endpoints(app: Flask) -> Iterable[str]:
    return [e for e in app.view_functions if e != "static" and audience_for(app, e) is None]
