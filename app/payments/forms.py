"""Card payment forms."""

from __future__ import annotations

from wtforms.validators import InputRequired, NumberRange
from wtforms.widgets import HiddenInput

from ..form_fields import Form, WholeNumberField


class CardPaymentForm(Form):
    """The confirm step before money moves: the amount the customer was shown, sent back.

    If the amount due changed in between (a booking change, another payment), the service
    refuses and the page shows the new amount to confirm.
    """

    amount_pence = WholeNumberField(widget=HiddenInput(), validators=[
        InputRequired("Please confirm the amount again."), NumberRange(min=1)])
