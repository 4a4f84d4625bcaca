"""Prices: admins edit class rates and the booking engine's tables; new quotes only; audited."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from app.booking import quotes, trips
from app.extensions import db
from app.models import AuditRecord, CarClass, DurationTier, Extra, Hire, OneWayFee, Season
from tests import factories
from tests.conftest import post_form


def _trip(car, days=3):
    start = datetime(2031, 2, 3, 10, tzinfo=timezone.utc)  # a Monday in winter, no season
    return trips.Trip(car.home_branch, car.home_branch, start, start + timedelta(days=days))


def test_a_new_class_rate_applies_to_new_quotes_not_existing_hires(app, client, auth):
    admin = auth.sign_in_as("admin")
    cls = factories.make_car_class(daily_rate_pence=3900)
    car = factories.make_car(car_class=cls)
    hire = factories.make_hire(car=car)
    frozen = (list(hire.price_lines), hire.total_pence)
    before = quotes.price(car, _trip(car), {}, young_driver=False)

    page = client.get("/admin/prices").get_data(as_text=True)
    assert f'id="class-{cls.id}-daily_rate"' in page and 'value="39.00"' in page
    response = post_form(client, f"/admin/prices/classes/{cls.id}",
                         {f"class-{cls.id}-daily_rate": "£45.50", f"class-{cls.id}-deposit": "300",
                          f"class-{cls.id}-mileage_allowance_per_day": "250"},
                         token_from="/admin/prices")
    assert response.status_code == 303
    cls = db.session.get(CarClass, cls.id)
    assert (cls.daily_rate_pence, cls.deposit_pence, cls.mileage_allowance_per_day) == (4550, 30000, 250)
    hire = db.session.get(Hire, hire.id)
    assert (hire.price_lines, hire.total_pence) == frozen
    after = quotes.price(db.session.get(type(car), car.id), _trip(car), {}, young_driver=False)
    assert after.daily_rate_pence == 4550 and after.total_pence > before.total_pence
    record = db.session.scalar(select(AuditRecord).where(AuditRecord.action == "price.class_rates_changed"))
    assert record.actor_id == admin.id
    assert record.old == {"daily_rate_pence": 3900, "deposit_pence": 25000, "mileage_allowance_per_day": 200}
    assert record.new["daily_rate_pence"] == 4550 and record.new["class"] == cls.code


def test_class_rates_are_checked(client, auth):
    auth.sign_in_as("admin")
    cls = factories.make_car_class(daily_rate_pence=3900)
    response = post_form(client, f"/admin/prices/classes/{cls.id}",
                         {f"class-{cls.id}-daily_rate": "forty", f"class-{cls.id}-deposit": "-1",
                          f"class-{cls.id}-mileage_allowance_per_day": "lots"},
                         token_from="/admin/prices")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert page.count("Enter an amount in pounds, like 45 or 45.50.") == 2
    assert "Enter a whole number, like 10." in page
    response = post_form(client, f"/admin/prices/classes/{cls.id}",
                         {f"class-{cls.id}-daily_rate": "0", f"class-{cls.id}-deposit": "0",
                          f"class-{cls.id}-mileage_allowance_per_day": "100"},
                         token_from="/admin/prices")
    assert "The daily rate must be more than £0." in response.get_data(as_text=True)
    assert db.session.get(CarClass, cls.id).daily_rate_pence == 3900
    assert db.session.scalar(select(AuditRecord)) is None


def test_duration_tiers(client, auth):
    auth.sign_in_as("admin")
    car = factories.make_car()
    hire = factories.make_hire(car=car, days=7)
    frozen = (list(hire.price_lines), hire.total_pence)
    week_before = quotes.price(car, _trip(car, days=7), {}, young_driver=False)
    response = post_form(client, "/admin/prices/tier/new",
                         {"tier-new-min_days": "7", "tier-new-percent_off": "10"}, token_from="/admin/prices")
    assert response.status_code == 303
    tier = db.session.scalar(select(DurationTier))
    assert (tier.min_days, tier.percent_off) == (7, 10)
    # New quotes for a week get the discount; the booking made before keeps its price.
    week_after = quotes.price(car, _trip(car, days=7), {}, young_driver=False)
    assert week_after.total_pence < week_before.total_pence
    hire = db.session.get(Hire, hire.id)
    assert (hire.price_lines, hire.total_pence) == frozen
    response = post_form(client, "/admin/prices/tier/new",
                         {"tier-new-min_days": "7", "tier-new-percent_off": "95"}, token_from="/admin/prices")
    page = response.get_data(as_text=True)
    assert "Enter from 1% to 90%." in page
    response = post_form(client, "/admin/prices/tier/new",
                         {"tier-new-min_days": "7", "tier-new-percent_off": "12"}, token_from="/admin/prices")
    assert "There is already a tier from 7 days." in response.get_data(as_text=True)
    post_form(client, f"/admin/prices/tier/{tier.id}",
              {f"tier-{tier.id}-min_days": "7", f"tier-{tier.id}-percent_off": "15"}, token_from="/admin/prices")
    assert db.session.get(DurationTier, tier.id).percent_off == 15
    post_form(client, f"/admin/prices/tier/{tier.id}/delete", {}, token_from="/admin/prices")
    assert db.session.scalar(select(DurationTier)) is None
    actions = db.session.scalars(select(AuditRecord.action).order_by(AuditRecord.id)).all()
    assert actions == ["price.tier_added", "price.tier_changed", "price.tier_removed"]


def test_seasons_extras_and_one_way_fees(client, auth):
    auth.sign_in_as("admin")
    london, leeds = factories.make_branch(), factories.make_branch()
    response = post_form(client, "/admin/prices/season/new", {
        "season-new-code": "Summer", "season-new-name": "Summer", "season-new-starts_on": "2031-08-31",
        "season-new-ends_on": "2031-07-01", "season-new-percent": "20"}, token_from="/admin/prices")
    assert "The last day is before the first day." in response.get_data(as_text=True)
    post_form(client, "/admin/prices/season/new", {
        "season-new-code": "Summer", "season-new-name": "Summer", "season-new-starts_on": "2031-07-01",
        "season-new-ends_on": "2031-08-31", "season-new-percent": "20"}, token_from="/admin/prices")
    season = db.session.scalar(select(Season))
    assert (season.code, season.starts_on, season.percent) == ("summer", date(2031, 7, 1), 20)

    response = post_form(client, "/admin/prices/extra/new", {
        "extra-new-code": "gps", "extra-new-name": "Sat-nav", "extra-new-per_day": "5",
        "extra-new-cap": "4", "extra-new-max_quantity": "1", "extra-new-active": "y"},
        token_from="/admin/prices")
    assert "The cap must be at least the price of one day" in response.get_data(as_text=True)
    post_form(client, "/admin/prices/extra/new", {
        "extra-new-code": "gps", "extra-new-name": "Sat-nav", "extra-new-per_day": "5",
        "extra-new-cap": "25", "extra-new-max_quantity": "1", "extra-new-active": "y"},
        token_from="/admin/prices")
    extra = db.session.scalar(select(Extra))
    assert (extra.per_day_pence, extra.cap_pence, extra.active) == (500, 2500, True)
    # Switched off rather than deleted, so old bookings still name it.
    post_form(client, f"/admin/prices/extra/{extra.id}", {
        f"extra-{extra.id}-code": "gps", f"extra-{extra.id}-name": "Sat-nav",
        f"extra-{extra.id}-per_day": "5", f"extra-{extra.id}-cap": "25",
        f"extra-{extra.id}-max_quantity": "1"}, token_from="/admin/prices")
    assert db.session.get(Extra, extra.id).active is False
    assert post_form(client, f"/admin/prices/extra/{extra.id}/delete", {},
                     token_from="/admin/prices").status_code == 404

    response = post_form(client, "/admin/prices/one_way_fee/new", {
        "one_way_fee-new-from_branch_id": str(london.id), "one_way_fee-new-to_branch_id": str(london.id),
        "one_way_fee-new-fee": "30"}, token_from="/admin/prices")
    assert "Choose a different branch to return to." in response.get_data(as_text=True)
    post_form(client, "/admin/prices/one_way_fee/new", {
        "one_way_fee-new-from_branch_id": str(london.id), "one_way_fee-new-to_branch_id": str(leeds.id),
        "one_way_fee-new-fee": "30"}, token_from="/admin/prices")
    fee = db.session.scalar(select(OneWayFee))
    assert (fee.from_branch_id, fee.to_branch_id, fee.fee_pence) == (london.id, leeds.id, 3000)
    tables = quotes.load_rate_tables()
    assert tables.one_way_fees[(london.id, leeds.id)] == 3000 and not tables.extras
    assert [s.code for s in tables.seasons] == ["summer"]


def test_staff_cannot_change_prices(client, auth):
    auth.sign_in_as("staff")
    cls = factories.make_car_class(daily_rate_pence=3900)
    response = post_form(client, f"/admin/prices/classes/{cls.id}",
                         {f"class-{cls.id}-daily_rate": "1", f"class-{cls.id}-deposit": "0",
                          f"class-{cls.id}-mileage_allowance_per_day": "100"}, token_from="/")
    assert response.status_code == 403
    assert db.session.get(CarClass, cls.id).daily_rate_pence == 3900
