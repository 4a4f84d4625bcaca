"""Issue 2: a customer signs up in real Chromium, at phone and tablet sizes.

One mistake (a licence number that does not match the surname), its message beside the
field without a page reload (htmx swaps the form), the fix, and the customer lands signed
in on their profile. Along the way: no console errors (so the CSP admits htmx and its
config), no sideways scrolling on a phone, touch-sized submit button, and a visible
loading state while the form is in flight.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from tests import factories

from .conftest import PHONE, TABLET, browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

MIN_TOUCH_TARGET_PX = 44
PERSON = {
    "Full name": "Jane Customer",
    "Email": "jane.customer@example.com",
    "Date of birth": "1990-07-15",
    "Phone": "07911 123456",
    "Address": "1 High Street",
    "Town or city": "London",
    "Postcode": "SW1A 1AA",
    "Driving licence number": "CUSTO907150J99AB",
    "Licence valid until (4b)": "2032-07-14",
    "Password": factories.PASSWORD,
    "Repeat password": factories.PASSWORD,
}
WRONG_SURNAME_LICENCE = "SMITH907150J99AB"


def _fill(page: Page, values: dict[str, str]) -> None:
    form = page.locator("#sign-up-form")
    for label, value in values.items():
        form.get_by_label(label, exact=True).fill(value)


def _assert_fits_width(page: Page, width: int) -> None:
    scroll_width = page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll_width <= width, f"page is {scroll_width}px wide in a {width}px viewport"


def _submit_button(page: Page):
    return page.locator("#sign-up-form").get_by_role("button", name="Create account")


@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone", "tablet"])
def test_sign_up_with_a_mistake_then_fixed(live_server, new_page, size):
    width, height = size
    page = new_page(width, height)
    first = page.goto(f"{live_server.url}/account/sign-up")
    # The page runs under the strict CSP, so "no console errors" below also means htmx and
    # its config work without inline script or style.
    assert "script-src 'self'" in first.headers["content-security-policy"]
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    _assert_fits_width(page, width)
    button_box = _submit_button(page).bounding_box()
    assert button_box and button_box["height"] >= MIN_TOUCH_TARGET_PX, button_box

    _fill(page, {**PERSON, "Driving licence number": WRONG_SURNAME_LICENCE})
    # A marker that only survives if the page is not reloaded.
    page.evaluate("window.__sameDocument = true")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        _submit_button(page).click()
    # htmx swaps a 422 only because of the htmx-config meta in base.html: seeing the
    # message below proves that config is read.
    assert answer.value.status == 422
    assert answer.value.request.headers.get("hx-request") == "true"

    licence = page.locator("#sign-up-form").get_by_label("Driving licence number", exact=True)
    message = page.locator("#licence_number-error")
    expect(message).to_have_text("The licence number does not match the surname in your full name.")
    expect(message).to_be_visible()
    # Beside the field: in the same field block, tied to the input for screen readers.
    licence_block = page.locator(".field", has=page.get_by_label("Driving licence number", exact=True))
    assert licence_block.locator(".error").all_inner_texts() == [message.inner_text()]
    expect(licence).to_have_attribute("aria-invalid", "true")
    expect(licence).to_have_attribute("aria-describedby", "licence_number-error")
    assert page.evaluate("window.__sameDocument === true"), "the form caused a full page reload"
    assert page.url == f"{live_server.url}/account/sign-up"
    # Only that field is wrong; what was typed elsewhere is kept.
    expect(page.locator("#sign-up-form .error")).to_have_count(1)
    expect(page.locator("#sign-up-form").get_by_label("Full name")).to_have_value("Jane Customer")
    _assert_fits_width(page, width)

    licence.fill(PERSON["Driving licence number"])
    _submit_button(page).click()  # the passwords typed before are still there

    page.wait_for_url(f"{live_server.url}/account/profile")
    expect(page.get_by_role("heading", name="My account")).to_be_visible()
    expect(page.get_by_text("Welcome, Jane Customer.")).to_be_visible()
    expect(page.get_by_text(PERSON["Email"])).to_be_visible()
    expect(page.get_by_label("Full name")).to_have_value("Jane Customer")
    sign_out = page.get_by_role("button", name="Sign out", exact=True)
    expect(sign_out).to_be_visible()
    assert sign_out.bounding_box()["height"] >= MIN_TOUCH_TARGET_PX
    _assert_fits_width(page, width)
    assert page.console_errors == []


def test_submit_button_is_disabled_while_the_form_is_in_flight(live_server, new_page):
    page = new_page(*PHONE)
    held: list[Route] = []
    # Hold the POST in the browser so the in-flight state can be looked at, then let it go.
    page.route("**/account/sign-up",
               lambda route: held.append(route) if route.request.method == "POST"
               else route.continue_())
    page.goto(f"{live_server.url}/account/sign-up")
    button = _submit_button(page)
    expect(button).to_be_enabled()

    _fill(page, {**PERSON, "Postcode": "NOT A CODE"})
    button.click()
    expect(button).to_be_disabled()
    expect(page.locator("#sign-up-form")).to_have_class("htmx-request")
    expect(button.locator(".htmx-indicator")).to_have_css("opacity", "1")
    assert len(held) == 1

    held[0].continue_()
    expect(page.locator("#postcode-error")).to_have_text("Enter a UK postcode, like SW1A 1AA.")
    expect(_submit_button(page)).to_be_enabled()
    expect(_submit_button(page).locator(".htmx-indicator")).to_have_css("opacity", "0")
    assert page.console_errors == []


def test_an_existing_customer_signs_in_through_the_form(live_server, new_page):
    customer = factories.make_user("customer", full_name="Sam Driver")
    page = new_page(*PHONE)
    with pytest.raises(AssertionError, match="That email and password do not match"):
        browser_sign_in(page, live_server.url, customer.email, password="not-the-password-1")

    browser_sign_in(page, live_server.url, customer.email)
    assert page.url == f"{live_server.url}/account/profile"
    expect(page.get_by_text(customer.email)).to_be_visible()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    _assert_fits_width(page, PHONE[0])
    assert page.console_errors == []


def _password_fields(page: Page):
    form = page.locator("#sign-up-form")
    return form.get_by_label("Password", exact=True), form.get_by_label("Repeat password", exact=True)


def test_from_the_home_page_a_mistake_elsewhere_keeps_the_typed_passwords(live_server, new_page):
    """Issue 14 §6: an error in another field no longer empties both password fields."""
    page = new_page(*PHONE)
    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()

    _fill(page, {**PERSON, "Postcode": "NOT A CODE"})
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        _submit_button(page).click()
    assert answer.value.status == 422
    assert answer.value.headers["cache-control"] == "no-store"  # it carries the passwords
    expect(page.locator("#postcode-error")).to_have_text("Enter a UK postcode, like SW1A 1AA.")
    password, repeat = _password_fields(page)
    expect(password).to_have_value(PERSON["Password"])
    expect(repeat).to_have_value(PERSON["Repeat password"])
    expect(page.locator("#sign-up-form .error")).to_have_count(1)

    page.locator("#sign-up-form").get_by_label("Postcode").fill(PERSON["Postcode"])
    _submit_button(page).click()  # nothing typed again
    page.wait_for_url(f"{live_server.url}/account/profile")
    expect(page.get_by_text("Welcome, Jane Customer.")).to_be_visible()
    assert page.console_errors == []


def test_a_refused_password_empties_both_fields_and_says_why(live_server, new_page):
    page = new_page(*PHONE)
    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="Create an account").click()
    _fill(page, {**PERSON, "Repeat password": PERSON["Password"] + "x"})
    _submit_button(page).click()

    expect(page.locator("#confirm_password-error")).to_have_text("The passwords do not match.")
    note = page.locator("#password-error")
    expect(note).to_have_text("Both password fields were emptied because the password was not "
                              "accepted: type it again in both.")
    password, repeat = _password_fields(page)
    expect(password).to_have_value("")
    expect(repeat).to_have_value("")
    expect(password).to_have_attribute("aria-describedby", "password-error")
    expect(page.locator("#sign-up-form").get_by_label("Full name")).to_have_value("Jane Customer")

    _fill(page, {"Password": PERSON["Password"], "Repeat password": PERSON["Repeat password"]})
    _submit_button(page).click()
    page.wait_for_url(f"{live_server.url}/account/profile")
    assert page.console_errors == []
