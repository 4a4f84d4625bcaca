"""The stand-in's hosted Checkout page: a plain HTML card form, as Stripe's would be."""

from __future__ import annotations

from html import escape

STYLE = """
body{font:16px/1.5 system-ui,sans-serif;background:#f6f9fc;color:#1a1f36;margin:0}
main{max-width:440px;margin:0 auto;padding:1.5rem 1rem}
.banner{background:#ffde92;color:#5a3c00;padding:.4rem .8rem;border-radius:6px;font-size:.85rem}
h1{font-size:1.3rem;margin:.8rem 0 .2rem} .total{font-size:2rem;font-weight:700;margin:0 0 1rem}
ul{padding:0;list-style:none;margin:0 0 1rem} li{display:flex;justify-content:space-between;padding:.3rem 0;border-bottom:1px solid #e3e8ee}
label{display:block;font-weight:600;margin:.7rem 0 .2rem}
input{width:100%;box-sizing:border-box;font:inherit;padding:.6rem;min-height:44px;border:1px solid #a3acb9;border-radius:6px}
.row{display:flex;gap:.6rem} .row>div{flex:1}
button{width:100%;margin-top:1.2rem;min-height:48px;border:0;border-radius:6px;background:#635bff;color:#fff;font:inherit;font-weight:700}
.error{background:#fdecea;color:#b3261e;padding:.6rem .8rem;border-radius:6px;margin:1rem 0;font-weight:600}
.hint{color:#697386;font-size:.85rem} a{color:#635bff}
"""


def money(amount: int, currency: str) -> str:
    symbol = {"gbp": "£", "eur": "€", "usd": "$"}.get(currency, currency.upper() + " ")
    return f"{symbol}{amount // 100:,}.{amount % 100:02d}"


def _shell(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
            f"<p class='banner'>TEST MODE · Stripe stand-in for development</p>{body}</main></body></html>")


def checkout_page(session: dict, *, error: str = "", email: str = "", card: str = "") -> str:
    currency = session["currency"]
    items = "".join(
        f"<li><span>{escape(item['price_data']['product_data']['name'])}</span>"
        f"<span>{money(int(item['price_data']['unit_amount']) * int(item.get('quantity', 1)), currency)}</span></li>"
        for item in session["_line_items"])
    error_html = f"<p class='error' role='alert' id='card-errors'>{escape(error)}</p>" if error else ""
    cancel = (f"<p><a href='{escape(session['cancel_url'])}'>&larr; Back to the merchant</a></p>"
              if session.get("cancel_url") else "")
    total = money(session["amount_total"], currency)
    body = f"""{cancel}
<h1>Pay ACME Rentals</h1>
<p class="total" id="total">{total}</p>
<ul>{items}</ul>
{error_html}
<form method="post" action="/checkout/pay/{escape(session['id'])}" id="payment-form">
  <label for="email">Email</label>
  <input id="email" name="email" type="email" autocomplete="email" value="{escape(email or session.get('customer_email') or '')}">
  <label for="cardnumber">Card number</label>
  <input id="cardnumber" name="cardnumber" inputmode="numeric" autocomplete="cc-number" value="{escape(card)}" placeholder="1234 1234 1234 1234" required>
  <div class="row">
    <div><label for="exp">Expiry (MM / YY)</label><input id="exp" name="exp" autocomplete="cc-exp" placeholder="MM / YY" required></div>
    <div><label for="cvc">CVC</label><input id="cvc" name="cvc" autocomplete="cc-csc" placeholder="123" required></div>
  </div>
  <label for="cardholder">Name on card</label>
  <input id="cardholder" name="cardholder" autocomplete="cc-name">
  <button type="submit">Pay {total}</button>
</form>
<p class="hint">Test cards: 4242 4242 4242 4242 succeeds; 4000 0000 0000 0002 is declined;
4000 0000 0000 9995 has insufficient funds. Any future expiry and any CVC.</p>"""
    return _shell("Checkout", body)


def message_page(title: str, message: str, link: str | None = None) -> str:
    back = f"<p><a href='{escape(link)}'>Return to the merchant</a></p>" if link else ""
    return _shell(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>{back}")
