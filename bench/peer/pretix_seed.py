"""Run by bench/peer.py with pretix's own Python (its venv): an organizer and a live event
with 20 products, each with its quota, on sale now. Idempotent."""

import os
from datetime import timedelta
from decimal import Decimal

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pretix.settings")
django.setup()

from django.utils.timezone import now  # noqa: E402
from django_scopes import scopes_disabled  # noqa: E402
from pretix.base.models import Event, Item, Organizer, Quota  # noqa: E402

PRODUCTS = 20

with scopes_disabled():
    organizer, _ = Organizer.objects.get_or_create(slug="acme", defaults={"name": "ACME Rentals"})
    event = Event.objects.filter(organizer=organizer, slug="cars").first()
    if event is None:
        event = Event.objects.create(
            organizer=organizer, name="Car hire", slug="cars", currency="GBP",
            date_from=now() + timedelta(days=30), presale_start=now() - timedelta(days=1),
            presale_end=now() + timedelta(days=29), live=True)
        event.set_defaults()
        for i in range(1, PRODUCTS + 1):
            item = Item.objects.create(event=event, name=f"Car {i}: 3 days",
                                       default_price=Decimal(100 + 7 * i), active=True,
                                       description=f"A car of class {i % 4} for three days.")
            quota = Quota.objects.create(event=event, name=f"Car {i}", size=10 + i)
            quota.items.add(item)
    print(f"PEER_PATH /{organizer.slug}/{event.slug}/ items={event.items.count()} "
          f"quotas={event.quotas.count()} live={event.live}")
