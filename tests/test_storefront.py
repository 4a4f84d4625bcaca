"""The storefront (issue 17): the home page is the search, with each class's "from" price from
the rate tables and what every hire includes; search results sorted by price or size; when
nothing is free, why, and the nearest dates and other branches that have cars; each extra's
price beside it before it is picked; one price breakdown (with its subtotal) on the pay pages;
a picture for every car; the favicon. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from sqlalchemy import select

from app.booking.seed import EXTRAS, seed_rate_tables
from app.booking.storefront import branch_hours, car_classes_on_offer, extra_terms
from app.extensions import db
from app.fleet.photos import store
from app.models import CarPhoto, Extra
from tests import factories
from tests.conftest import AuthActions
from tests.test_booking import FMT, as_utc, book, local_day

CAR_ID_RE = re.compile(r'class="car-card" data-car-id="(\d+)"')


@pytest.fixture
def fleet(app):
    """Two branches; at the first a mini, a compact, an estate and a premium car of different
    sizes; at the second one compact; the starting rate tables."""
    lhr, man = factories.make_branch("LHR"), factories.make_branch("MAN")
    mini = factories.make_car_class("mini", daily_rate_pence=2900)
    compact = factories.make_car_class("compact", daily_rate_pence=3900)
    estate = factories.make_car_class("estate", daily_rate_pence=5400)
    premium = factories.make_car_class("premium", daily_rate_pence=8900)
    cars = SimpleNamespace(
        fiat=factories.make_car(car_class=mini, branch=lhr, make="Fiat", model="500", seats=4, doors=3),
        golf=factories.make_car(car_class=compact, branch=lhr, make="Volkswagen", model="Golf"),
        octavia=factories.make_car(car_class=estate, branch=lhr, make="Skoda", model="Octavia"),
        bmw=factories.make_car(car_class=premium, branch=lhr, make="BMW", model="3 Series", doors=4),
        focus=factories.make_car(car_class=compact, branch=man, make="Ford", model="Focus"),
    )
    seed_rate_tables()
    db.session.commit()
    return SimpleNamespace(lhr=lhr, man=man, mini=mini, compact=compact, estate=estate,
                           premium=premium, cars=cars)


def search(client, fleet, start, end, **more):
    args = {"pickup_branch": fleet.lhr.id, "return_branch": fleet.lhr.id,
            "pickup_at": start.strftime(FMT), "return_at": end.strftime(FMT), **more}
    response = client.get("/book/", query_string=args)
    return response, response.get_data(as_text=True)


# --- the home page ------------------------------------------------------------------------

def test_from_prices_come_from_the_cheapest_car_of_each_class_with_vat(app, fleet):
    fleet.cars.golf.daily_rate_override_pence = 3500  # this Golf is cheaper than its class
    factories.make_car(car_class=fleet.premium, branch=fleet.lhr, status="retired",
                       daily_rate_override_pence=100)  # retired: not on offer
    factories.make_car_class("van", daily_rate_pence=1000)  # no cars: not on offer
    db.session.commit()

    offers = {o.car_class.code: o for o in car_classes_on_offer()}

    assert list(offers) == ["mini", "compact", "estate", "premium"]  # cheapest first
    assert offers["mini"].from_per_day_pence == 3480  # £29.00 + 20% VAT
    assert offers["compact"].from_per_day_pence == 4200  # the £35.00 Golf, not the class's £39
    assert offers["premium"].from_per_day_pence == 10680
    assert offers["compact"].cars == 2 and offers["mini"].min_seats == 4
    assert offers["estate"].picture == "img/classes/estate.svg"
    app.config["VAT_PERCENT"] = 5
    assert car_classes_on_offer()[0].from_per_day_pence == 3045


def test_the_home_page_is_the_search(app, client, fleet):
    html = client.get("/").get_data(as_text=True)

    form = re.search(r'<form id="home-search-form"[^>]*>', html).group(0)
    assert 'method="get"' in form and 'action="/book/"' in form
    for name in ("pickup_branch", "return_branch", "pickup_at", "return_at"):
        assert f'name="{name}"' in html
    assert re.search(r'<input[^>]*name="pickup_at"[^>]*type="datetime-local"[^>]*value="\d{4}-\d\d-\d\dT10:00"', html) \
        or re.search(r'type="datetime-local"[^>]*value="\d{4}-\d\d-\d\dT10:00"[^>]*name="pickup_at"', html)
    assert html.count(f'<option value="{fleet.man.id}"') == 2  # pick up at, return to
    assert "Local time at the branch" in html
    # The classes, with their pictures and from-prices.
    assert re.search(r'data-class="mini">((?!</li>).)*from <strong>£34.80</strong> a day', html, re.S)
    assert "from <strong>£106.80</strong> a day" in html
    assert re.search(r'<img class="class-picture" src="/static/img/classes/mini.svg" alt="" '
                     r'width="320" height="160" loading="lazy">', html)
    # The search it leads to answers with cars, not with "enter the dates".
    link = re.search(r'href="(/book/\?[^"]*car_class=estate[^"]*)"', html).group(1).replace("&amp;", "&")
    found = client.get(link)
    assert found.status_code == 200 and "Skoda Octavia" in found.get_data(as_text=True)


def test_what_is_included_says_it_in_words_from_the_settings_and_tables(app, client, fleet):
    app.config.update(EXCESS_MILEAGE_PENCE_PER_MILE=30, FREE_CANCEL_HOURS=24, CANCEL_FEE_PENCE=4000)
    fleet.estate.mileage_allowance_per_day = 250
    db.session.commit()

    html = client.get("/").get_data(as_text=True)

    terms = dict(re.findall(r'<div class="term" id="term-(\w+)"><dt>[^<]*</dt><dd>([^<]*)</dd>', html))
    assert terms["mileage"].startswith("200 to 250 miles a day included")
    assert "beyond that £0.30 a mile" in terms["mileage"]
    assert "Cover Plus: £10.80 a day, at most £108.00 a hire (Excess reduced to £250)" in terms["cover"]
    assert "Full cover: £18.00 a day" in terms["cover"]
    assert terms["deposit"].startswith("£250.00, refundable")  # every class: the factory's £250
    assert terms["cancellation"] == "Free until 24 hours before pickup, then a fee of £40.00."
    assert "£12.00 for each eighth of a tank plus a £20.00 refuelling fee" in terms["fuel"]
    assert "15% off the rental for 7 days or more" in terms["longer"]
    assert "aged 24 or under pay £18.00 a day (at most £180.00 a hire)" in terms["drivers"]


def test_branches_show_their_hours_with_days_run_together(app, client, fleet):
    fleet.man.opening_hours = {"mon": ["08:00", "18:00"], "tue": ["08:00", "18:00"],
                               "wed": ["08:00", "18:00"], "thu": ["08:00", "18:00"],
                               "fri": ["08:00", "20:00"], "sat": ["09:00", "16:00"], "sun": None}
    db.session.commit()
    assert branch_hours(fleet.man) == [("Monday to Thursday", "08:00–18:00"), ("Friday", "08:00–20:00"),
                                       ("Saturday", "09:00–16:00"), ("Sunday", "closed")]
    html = client.get("/").get_data(as_text=True)
    assert "<th scope=\"row\">Monday to Thursday</th><td>08:00–18:00</td>" in html


def test_an_empty_portal_has_a_home_page_without_a_search(app, client):
    response = client.get("/")
    assert response.status_code == 200
    assert "No branch is open for online booking yet" in response.get_data(as_text=True)


# --- search results: order, and when nothing is free ----------------------------------------

@pytest.mark.parametrize("sort, order", [
    ("", ["fiat", "golf", "octavia", "bmw"]),
    ("price", ["fiat", "golf", "octavia", "bmw"]),
    ("price_desc", ["bmw", "octavia", "golf", "fiat"]),
    # Size: seats, then doors, then the class (priced by size): the 5-door estate, the 5-door
    # compact, the 4-door premium saloon, the 4-seat mini.
    ("size", ["octavia", "golf", "bmw", "fiat"]),
    ("size_asc", ["fiat", "bmw", "golf", "octavia"]),
])
def test_results_are_sorted_by_price_or_size(client, fleet, sort, order):
    response, html = search(client, fleet, local_day(12), local_day(15), sort=sort)
    assert response.status_code == 200
    ids = {str(getattr(fleet.cars, name).id): name for name in vars(fleet.cars)}
    assert [ids[i] for i in CAR_ID_RE.findall(html)] == order


def test_sorting_by_size_keeps_the_order_beyond_the_page_limit(app, client, fleet):
    app.config["SEARCH_RESULTS_LIMIT"] = 2
    _, html = search(client, fleet, local_day(12), local_day(15), sort="size")
    assert CAR_ID_RE.findall(html) == [str(fleet.cars.octavia.id), str(fleet.cars.golf.id)]


def test_an_unknown_order_is_named_beside_its_field(client, fleet):
    response, html = search(client, fleet, local_day(12), local_day(15), sort="cheapest'--")
    assert response.status_code == 422
    assert re.search(r'id="sort-errors">\s*<p class="error">Not a valid choice', html)


def test_nothing_free_says_why_and_offers_the_nearest_dates_and_the_other_branch(client, fleet):
    for name in ("fiat", "golf", "octavia", "bmw"):
        factories.make_hire(car=getattr(fleet.cars, name), start=as_utc(local_day(10)), days=3)

    response, html = search(client, fleet, local_day(11), local_day(12))

    assert response.status_code == 200
    assert "All 4 cars at Branch" in html and "are booked for these dates." in html
    nearest = re.search(r'<ul class="suggestions" id="nearest-dates">(.*?)</ul>', html, re.S).group(1)
    labels = re.findall(r'class="button secondary" href="([^"]+)">([^<]+)</a>', nearest)
    # Later: from the day the hires end; earlier: far enough before that the car is cleaned.
    later, earlier = labels
    assert later[1] == f"{local_day(13):%a %d %b} 10:00 to {local_day(14):%a %d %b} 10:00"
    assert earlier[1] == f"{local_day(8):%a %d %b} 10:00 to {local_day(9):%a %d %b} 10:00"
    moved = client.get(later[0].replace("&amp;", "&")).get_data(as_text=True)
    assert len(CAR_ID_RE.findall(moved)) == 4
    other = re.search(r'<ul class="suggestions" id="other-branches">(.*?)</ul>', html, re.S).group(1)
    assert f"Pick up at {fleet.man.name}" in other and "1 car free" in other
    href = re.search(r'href="([^"]+)"', other).group(1).replace("&amp;", "&")
    assert f"pickup_branch={fleet.man.id}" in href and f"return_branch={fleet.man.id}" in href
    assert "Ford Focus" in client.get(href).get_data(as_text=True)


def test_nothing_free_because_of_the_filters_offers_the_search_without_them(client, fleet):
    response, html = search(client, fleet, local_day(11), local_day(12), fuel="electric")

    assert response.status_code == 200
    assert "No car at Branch" in html and "matches these filters." in html
    assert 'id="nearest-dates"' not in html  # other dates would not help
    href = re.search(r'<a href="([^"]+)" id="clear-filters">', html).group(1).replace("&amp;", "&")
    assert "fuel=" not in href
    assert len(CAR_ID_RE.findall(client.get(href).get_data(as_text=True))) == 4


def test_nothing_free_in_an_htmx_swap_too(client, fleet):
    for name in ("fiat", "golf", "octavia", "bmw"):
        factories.make_hire(car=getattr(fleet.cars, name), start=as_utc(local_day(10)), days=3)
    response = client.get("/book/", headers={"HX-Request": "true"}, query_string={
        "pickup_branch": fleet.lhr.id, "return_branch": fleet.lhr.id,
        "pickup_at": local_day(11).strftime(FMT), "return_at": local_day(12).strftime(FMT)})
    html = response.get_data(as_text=True)
    assert "<html" not in html and 'id="nearest-dates"' in html and 'id="other-branches"' in html


# --- the car page: extras' prices before they are picked -----------------------------------

def test_extra_terms_say_the_price_and_how_it_is_charged():
    rows = {e.code: e for e in [Extra(code=c, name=n, description=d, per_day_pence=p, cap_pence=cap,
                                      max_quantity=m, group=g)
                                for c, n, d, p, cap, m, g in EXTRAS]}
    assert extra_terms(rows["gps"]) == "£6.00 a day, at most £36.00 a hire + VAT"
    assert extra_terms(rows["child_seat"]) == "£8.00 a day each, at most £48.00 each a hire + VAT"
    assert extra_terms(rows["cover_full"], vat_percent=20) == "£18.00 a day, at most £180.00 a hire"
    uncapped = Extra(code="x", name="X", per_day_pence=250, cap_pence=None, max_quantity=1)
    assert extra_terms(uncapped) == "£2.50 a day + VAT"
    assert extra_terms(Extra(code="y", name="Y", per_day_pence=0, cap_pence=None, max_quantity=1)) == "free"


def test_the_car_page_shows_each_extras_price_beside_it(client, fleet):
    db.session.get(Extra, db.session.scalar(select(Extra.id).where(Extra.code == "gps"))).per_day_pence = 700
    db.session.commit()
    response = client.get(f"/book/cars/{fleet.cars.golf.id}", query_string={
        "pickup_branch": fleet.lhr.id, "return_branch": fleet.lhr.id,
        "pickup_at": local_day(12).strftime(FMT), "return_at": local_day(15).strftime(FMT)})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    # Inside each label, so a screen reader reads the price with the name.
    assert re.search(r'<label class="check"><input[^>]*name="extra_gps"[^>]*> <span>Satellite navigation '
                     r'<span class="extra-price">£7.00 a day, at most £36.00 a hire \+ VAT</span>', html)
    assert re.search(r'value="cover_plus"[^>]*> <span>Cover Plus <span class="extra-price">£9.00 a day, '
                     r'at most £90.00 a hire \+ VAT</span>', html)
    assert re.search(r'<label for="extra_child_seat">Child seat</label>\s*<small class="hint extra-price">'
                     r'£8.00 a day each, at most £48.00 each a hire \+ VAT</small>', html)


# --- the pay pages show the same breakdown ---------------------------------------------------

def test_the_pay_page_breakdown_has_the_subtotal_before_vat(app, client, fleet):
    user = factories.make_user("customer")
    AuthActions(client).sign_in(user.email)
    shop = SimpleNamespace(lhr=fleet.lhr, car=fleet.cars.golf)
    response = book(client, shop, local_day(12), local_day(15), extras={"extra_gps": "y"})
    assert response.status_code == 303
    pay_url = response.headers["Location"]
    html = client.get(pay_url).get_data(as_text=True)

    table = re.search(r'<table class="breakdown" id="price-lines">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r'<tr[^>]*><th scope="row">([^<]+)</th><td class="amount[^"]*">([^<]+)</td></tr>', table)
    labels = [label for label, _ in rows]
    assert labels[0].startswith("Rental: 3 days")
    assert labels[-3:] == ["Subtotal before VAT", "VAT 20%", "Total"]
    pence = {label: int(amount.replace("£", "").replace(",", "").replace(".", ""))
             for label, amount in rows}
    assert sum(v for k, v in pence.items() if k not in ("Subtotal before VAT", "VAT 20%", "Total")) \
        == pence["Subtotal before VAT"]
    assert pence["Subtotal before VAT"] + pence["VAT 20%"] == pence["Total"]


# --- pictures ------------------------------------------------------------------------------

def test_every_car_without_a_photo_shows_its_class_picture(client, fleet):
    _, html = search(client, fleet, local_day(12), local_day(15))
    pictures = re.findall(r'<img src="(/static/img/classes/[a-z]+\.svg)" alt="" loading="lazy" '
                          r'width="320" height="160">', html)
    assert sorted(pictures) == ["/static/img/classes/compact.svg", "/static/img/classes/estate.svg",
                                "/static/img/classes/mini.svg", "/static/img/classes/premium.svg"]
    van = factories.make_car_class("van", daily_rate_pence=100)  # no drawing of its own
    factories.make_car(car_class=van, branch=fleet.lhr)
    _, html = search(client, fleet, local_day(12), local_day(15))
    assert '<img src="/static/img/classes/car.svg"' in html
    for name in ("mini", "compact", "estate", "premium", "car"):
        svg = client.get(f"/static/img/classes/{name}.svg")
        assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
        assert b'width="320" height="160"' in svg.data and b"style" not in svg.data
        svg.close()


def test_a_photo_is_offered_in_narrower_copies(make_app, tmp_path):
    app = make_app(UPLOAD_DIR=str(tmp_path))
    with app.app_context():
        branch = factories.make_branch()
        car = factories.make_car(branch=branch)
        seed_rate_tables()
        out = io.BytesIO()
        Image.new("RGB", (1200, 800), (200, 30, 30)).save(out, "JPEG")
        stored = store(out.getvalue())
        db.session.add(CarPhoto(car=car, filename=stored.filename, content_type=stored.content_type,
                                width=stored.width, height=stored.height, size_bytes=stored.size_bytes))
        car.photo = stored.filename
        db.session.commit()
        client = app.test_client()

        html = client.get("/book/", query_string={
            "pickup_branch": branch.id, "return_branch": branch.id,
            "pickup_at": local_day(12).strftime(FMT), "return_at": local_day(15).strftime(FMT)}
        ).get_data(as_text=True)
        name = stored.filename
        assert (f'srcset="/media/cars/w320/{name} 320w, /media/cars/w640/{name} 640w, '
                f'/media/cars/w960/{name} 960w, /media/cars/{name} 1200w" sizes="') in html
        small = client.get(f"/media/cars/w320/{name}")
        assert small.status_code == 200 and small.mimetype == "image/jpeg"
        assert Image.open(io.BytesIO(small.data)).size == (320, 213)
        assert "immutable" in small.headers["Cache-Control"]
        small.close()
        assert Path(tmp_path, "cars", "w320", name).exists()
        assert client.get(f"/media/cars/w333/{name}").status_code == 404  # only the named widths
        assert client.get("/media/cars/w320/" + "a" * 64 + ".jpg").status_code == 404

        # A photo no wider than the narrowest copy is offered as it is (no wider "copies").
        out = io.BytesIO()
        Image.new("RGB", (300, 200), (30, 30, 200)).save(out, "JPEG")
        small_photo = store(out.getvalue())
        db.session.add(CarPhoto(car=car, filename=small_photo.filename, content_type="image/jpeg",
                                width=300, height=200, size_bytes=small_photo.size_bytes, position=1))
        car.photo = small_photo.filename
        db.session.commit()
        html = client.get("/book/", query_string={
            "pickup_branch": branch.id, "return_branch": branch.id,
            "pickup_at": local_day(12).strftime(FMT), "return_at": local_day(15).strftime(FMT)}
        ).get_data(as_text=True)
        assert f'<img src="/media/cars/{small_photo.filename}" alt=""' in html and "srcset" not in html


# --- the icon ---------------------------------------------------------------------------------

def test_the_site_has_an_icon(client):
    html = client.get("/account/sign-in").get_data(as_text=True)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/vnd.microsoft.icon"
    assert Image.open(io.BytesIO(icon.data)).format == "ICO"
