"""`flask acme ...`: admin and developer commands; `flask payments ...`: the payment timers."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from .extensions import db
from .jobs.chain import scan_chain, watch
from .jobs.payments import place_due_deposit_holds
from .ops import ping_worker
from .settings import settings

acme = AppGroup("acme", help="ACME Rentals commands.")
acme.add_command(ping_worker)
# `flask payments ...`: what the timers and the chain watcher's service run (names unchanged).
payments = AppGroup("payments", help="Card deposit holds and the crypto chain watcher.")


@payments.command("place-deposit-holds")
def place_deposit_holds_command() -> None:
    """Place the deposit holds that are due now (run from a timer, e.g. every 15 minutes)."""
    click.echo(f"Deposit holds requested: {len(place_due_deposit_holds())}")


@payments.command("chain-scan")
def chain_scan_command() -> None:
    """Scan the chain once: new payments, settlements, refunds."""
    result = scan_chain()
    click.echo(f"chain scan: {result}" if result else "crypto payments are not configured")


@payments.command("chain-watch")
@click.option("--every", type=float, default=None, help="Seconds between scans.")
def chain_watch_command(every: float | None) -> None:
    """Scan the chain for ever (a systemd service on the worker host runs this)."""
    watch(every or settings().payments.chain_scan_interval_seconds)


@acme.command("create-admin")
@click.option("--email", prompt=True)
@click.option("--name", "full_name", prompt="Full name")
@click.password_option()
def create_admin(email: str, full_name: str, password: str) -> None:
    """Create an admin account (or promote an existing one)."""

    from .accounts import validators as v
    from .accounts.services import find_user_by_email, hash_password
    from .models import Role, User

    error = v.password_error(password, min_length=settings().security.password_min_length,
                             min_score=settings().security.password_min_zxcvbn_score,
                             user_inputs=[email, full_name])
    if error:
        raise click.BadParameter(error, param_hint="password")
    user = find_user_by_email(email)
    if user is None:
        user = User(email=v.normalise_email(email), full_name=full_name.strip(),
                    password_hash=hash_password(password), role=Role.ADMIN.value)
        db.session.add(user)
    else:
        user.role = Role.ADMIN.value
        user.password_hash = hash_password(password)
        user.end_all_sessions()
    db.session.commit()
    click.echo(f"Admin {user.email} is ready.")


FIRST_STAFF_SIGN_IN = (
    "Staff and admin set up two-factor sign-in the first time they sign in: scan the QR code\n"
    "with an authenticator app (or type the key shown under it), enter its 6-digit code and keep\n"
    "the recovery codes; every later sign-in asks for a code from the app.")


@acme.command("demo")
def demo() -> None:
    """Load the demo data (idempotent) and print the demo sign-ins."""
    from .demo import load_demo
    from .models import Car

    people = load_demo()
    cars = len(db.session.scalars(select(Car.id)).all())
    click.echo(f"Demo data ready: {cars} cars. Sign in at /account/sign-in with:")
    for email, password in people.items():
        click.echo(f"  {email:<22} {password}")
    click.echo(FIRST_STAFF_SIGN_IN)


@acme.command("tick")
@click.option("--now", "now_iso", default=None, help="Pretend it is this ISO 8601 time (catch-up runs).")
def tick(now_iso: str | None) -> None:
    """Expire unpaid holds, mark no-shows and queue due reminders (a systemd timer runs this
    every minute)."""
    from .jobs.booking import tick as booking_tick

    result = booking_tick(now_iso)
    click.echo(f"Expired {result['expired']} holds; {result['no_shows']} no-shows; "
               f"{result['reminders']} reminders due.")


def register_cli(app: Flask) -> None:
    app.cli.add_command(acme)
    app.cli.add_command(payments)

