from tests.conftest import post_form

SIGN_UP = {
    "full_name": "Jane Customer", "email": "jane@example.com", "date_of_birth": "1990-07-15",
    "phone": "07911 123456", "address_line1": "1 High Street", "address_line2": "", "town": "London",
    "postcode": "sw1a1aa", "licence_number": "CUSTO907150J99AB", "licence_expires_on": "2032-07-14",
    "password": "correct-Horse-battery-42", "confirm_password": "correct-Horse-battery-42",
}


def test_home_and_health(client):
    assert client.get("/").status_code == 200
    r = client.get("/healthz")
    assert r.status_code == 200, r.json
    assert r.json["checks"]["database"] == "ok"


def test_sign_up(client):
    r = post_form(client, "/account/sign-up", SIGN_UP)
    assert r.status_code == 303, r.get_data(as_text=True)
    assert "Jane Customer" in client.get("/account/profile").get_data(as_text=True)
