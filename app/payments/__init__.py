"""Card payments (Stripe), crypto payments, webhooks, refunds. Routes arrive with the payments issue."""

from flask import Blueprint

bp = Blueprint("payments", __name__)
