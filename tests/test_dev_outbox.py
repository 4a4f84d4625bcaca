"""Issue 14 §6: the development outbox lists each email's attachments and lets you download them.

The confirmation email says "The calendar entry is attached"; in development the outbox is
where a developer reads it, so the .ics must be listed there (name, type, size) and open.
"""

from __future__ import annotations

import re
from html import unescape

import icalendar
from jinja2.filters import do_filesizeformat
from sqlalchemy import select

from app.booking import holds
from app.extensions import db
from app.models import HireState, OutboundEmail, utcnow
from tests import factories

LINK_RE = re.compile(r'<a href="([^"]+)" download>([^<]+)</a>\s*<span class="muted">([^<]+)</span>')


def _confirmed_booking_email():
    hire = factories.make_hire(state=HireState.HELD)
    holds.confirm_hire(hire, by=None, now=utcnow())
    email = db.session.scalars(select(OutboundEmail)).one()
    return hire, email


def test_outbox_lists_and_serves_the_calendar_attachment(make_app, app):
    hire, email = _confirmed_booking_email()
    dev = make_app(ENV_NAME="development").test_client()

    page = dev.get("/dev/outbox")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "The calendar entry is attached" in html
    [(href, name, details)] = LINK_RE.findall(html)
    expected_size = len(email.attachment_text.encode("utf-8"))
    assert name == f"acme-{hire.reference}.ics"
    assert unescape(details).split(" · ") == ["text/calendar", do_filesizeformat(expected_size)]

    download = dev.get(unescape(href))
    assert download.status_code == 200
    assert download.mimetype == "text/calendar"
    assert download.headers["Content-Disposition"] == f"attachment; filename={name}"
    [event] = icalendar.Calendar.from_ical(download.data).walk("VEVENT")
    assert str(event["uid"]) == f"{hire.reference}@acme-rentals.example"
    assert len(download.data) == expected_size


def test_an_email_without_attachments_lists_none(make_app, app):
    from app.mail import record_email
    email = record_email(key="test:plain", to="a@example.com", subject="Plain", body="No files.")
    html = make_app(ENV_NAME="development").test_client().get("/dev/outbox").get_data(as_text=True)
    assert "Plain" in html and "Attachments" not in html
    assert make_app(ENV_NAME="development").test_client().get(
        f"/dev/outbox/{email.id}/attachment.txt").status_code == 404


def test_attachments_are_not_served_outside_development(make_app, app):
    hire, email = _confirmed_booking_email()
    url = f"/dev/outbox/{email.id}/acme-{hire.reference}.ics"
    assert make_app(ENV_NAME="development").test_client().get(url).status_code == 200
    assert app.test_client().get(url).status_code == 404  # test env
    assert make_app(ENV_NAME="development", MAIL_BACKEND="smtp").test_client().get(url).status_code == 404
    assert make_app(ENV_NAME="development").test_client().get(
        f"/dev/outbox/{email.id}/other.ics").status_code == 404
