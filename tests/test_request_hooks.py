"""What runs on every request is registered in one file, app/request_hooks.py (issue 16),
in the order its docstring gives; nothing else in app/ adds a per-request hook."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A registration of a per-request hook: Flask's decorators and methods, the app's or a
# blueprint's (before_app_request...).
HOOK_REGISTRATION = re.compile(
    r"\.(before_request|before_app_request|after_request|after_app_request|teardown_request|"
    r"teardown_app_request|teardown_appcontext|context_processor|app_context_processor|"
    r"url_value_preprocessor|app_url_value_preprocessor|url_defaults|app_url_defaults)\(?\b")


def _name(hook) -> str:
    return f"{hook.__module__}.{hook.__qualname__}"


def test_only_request_hooks_registers_per_request_hooks():
    registering = sorted(
        str(path.relative_to(ROOT)) for path in (ROOT / "app").rglob("*.py")
        if HOOK_REGISTRATION.search(path.read_text()))
    assert registering == ["app/request_hooks.py"]


def test_the_hooks_run_in_the_documented_order(app):
    before = [_name(h) for h in app.before_request_funcs[None]]
    assert before[0].startswith("prometheus_flask_exporter.")  # the timer sees every request
    ours = [h for h in before if h.startswith("app.")]
    assert ours == [
        "app.logging_setup.bind_request_id",
        "app.security.refuse_nul_bytes",
        "app.security.enforce_access",
        "app.accounts.twofactor_routes.staff_password_in_date",
        "app.request_hooks.install.<locals>._start_dev_ticker",
    ]
    # The request id is bound before the CSRF check and the rate limits, so their refusals
    # carry it.
    assert before.index("app.logging_setup.bind_request_id") < min(
        i for i, h in enumerate(before) if h.startswith(("flask_wtf.", "flask_limiter.")))
    # after_request hooks run in reverse: the request id header is set last, no-store first.
    after = [_name(h) for h in app.after_request_funcs[None] if hasattr(h, "__qualname__")]
    assert after[0] == "app.logging_setup.send_request_id"
    assert after[-1] == "app.request_hooks.keep_personal_pages_out_of_caches"
    assert [_name(h) for h in app.teardown_appcontext_funcs][-1] == "app.errors.end_session"


def test_a_refused_form_post_still_carries_its_request_id(app):
    """The request id hook runs before the CSRF check: the 400 page names the id it sends."""
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    response = client.post("/account/sign-in", data={"email": "a@example.com"},
                           headers={"X-Request-ID": "abc123"})
    assert response.status_code == 400
    assert response.headers["X-Request-ID"] == "abc123"
    assert "abc123" in response.get_data(as_text=True)
