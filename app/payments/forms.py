"""Card payment forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField
from wtforms.validators import InputRequired, NumberRange
from wtforms.widgets import HiddenInput


class CardPaymentForm(FlaskForm):
    """The confirm step before money moves: the amount the customer was shown, sent back.

    If the amount due changed in between (a booking change, another payment), the service
    refuses and the page shows the new amount to confirm.
    """

    amount_pence = IntegerField(widget=HiddenInput(), validators=[
        InputRequired("Please confirm the amount again."), NumberRange(min=1)])
