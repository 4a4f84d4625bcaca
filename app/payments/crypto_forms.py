"""Forms of the crypto payment pages. Single-field rules here; the rules of money in crypto.py."""

from __future__ import annotations

from wtforms import BooleanField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, Regexp

from ..form_fields import Form, WholeNumberField

TX_HASH_RE = r"^0x[0-9a-fA-F]{64}$"
ADDRESS_RE = r"^0x[0-9a-fA-F]{40}$"


def _clean(value):
    return value.strip() if isinstance(value, str) else value


class ActionForm(Form):
    """A button that changes something: only the CSRF token."""


class WalletTxForm(Form):
    """What wallet.js reports after the wallet sent the transaction."""

    quote_id = WholeNumberField("Quote", validators=[InputRequired()])
    tx_hash = StringField("Transaction", filters=[_clean], validators=[
        DataRequired(), Regexp(TX_HASH_RE, message="Not a transaction hash.")])


class RefundAddressForm(Form):
    address = StringField("Your Ethereum address", filters=[_clean], validators=[
        DataRequired("Enter the address to send the refund to."), Length(max=42),
        Regexp(ADDRESS_RE, message="Enter an Ethereum address: 0x followed by 40 hexadecimal characters.")])
    confirm = BooleanField("This address is mine and can receive ETH on this network", validators=[
        DataRequired("Tick the box to confirm the address is yours.")])
