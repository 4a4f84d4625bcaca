"""Template filters: money in pounds, UTC times in the branch's local time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask, current_app


def money(pence: int | None, currency: str = "GBP") -> str:
    if pence is None:
        return ""
    sign = "-" if pence < 0 else ""
    pounds, p = divmod(abs(int(pence)), 100)
    symbol = "£" if currency == "GBP" else f"{currency} "
    return f"{sign}{symbol}{pounds:,}.{p:02d}"


def local_time(value: datetime | None, tz: str | None = None, fmt: str = "%a %d %b %Y %H:%M") -> str:
    if value is None:
        return ""
    zone = ZoneInfo(tz or current_app.config["DEFAULT_TIMEZONE"])
    return value.astimezone(zone).strftime(fmt)


def register_filters(app: Flask) -> None:
    app.add_template_filter(money, "money")
    app.add_template_filter(local_time, "local_time")
