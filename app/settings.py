"""The portal's settings, typed, one frozen dataclass per domain (issue 16).

    from app.settings import settings
    settings().money.late_fee_per_hour_pence

`app/config.py` keeps the defaults, the comments and the names: the environment (and Ansible's
templates) set the same keys as before. Each field here is the lowercase of its config key
(`money.vat_percent` is VAT_PERCENT), so the mapping needs no table. The domains:

- `money`     prices, VAT, cancellation and no-show fees, deposits, the return charges;
- `booking`   holds, notice, hire lengths, buffers, reminders;
- `counter`   pickups and returns: inspection panels, photo and signature limits;
- `payments`  Stripe (keys, timeouts, Checkout), the payment timers, crypto (chain, quotes);
- `security`  password rules and hashing, two-factor, staff passwords and invitations,
              signed-in devices, rate limits;
- `licence`   the licence check service and the rental rules applied to a licence.

Settings are built once from `app.config` by `create_app` and kept in `app.extensions`. The
app's config is a `WatchedConfig`: a change after create_app (tests do `app.config[...] = x`)
marks the settings stale and the next `settings()` builds them again. The rest of the config
(environment, storage, jobs, mail, reports, fleet photos, metrics...) is read as before.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from flask import Config, Flask, current_app

EXTENSION_KEY = "acme_settings"


@dataclass(frozen=True)
class MoneySettings:
    default_currency: str
    vat_percent: int
    weekend_days: tuple[str, ...]
    weekend_surcharge_percent: int
    young_driver_daily_pence: int
    young_driver_cap_pence: int
    one_way_default_fee_pence: int
    free_cancel_hours: int
    cancel_fee_pence: int
    cancel_fee_percent: int
    no_show_fee_pence: int
    deposit_hold_lead_days: int
    deposit_hold_fallback_hours: int
    # The return charges (app/counter/charges.py, `Rates`).
    late_grace_minutes: int
    late_fee_per_hour_pence: int
    fuel_price_per_eighth_pence: int
    refuelling_fee_pence: int
    excess_mileage_pence_per_mile: int
    cleaning_fee_pence: int
    max_damage_charge_pence: int
    unused_day_refund_percent: int


@dataclass(frozen=True)
class BookingSettings:
    hold_minutes: int
    cleaning_buffer_minutes: int
    max_hire_days: int
    booking_min_notice_minutes: int
    booking_max_advance_days: int
    max_holds_per_customer: int
    search_results_limit: int
    no_show_grace_minutes: int
    pickup_reminder_hours: int
    return_reminder_hours: int
    dev_tick_seconds: int


@dataclass(frozen=True)
class CounterSettings:
    condition_panels: tuple[str, ...]
    photo_max_bytes: int
    signature_max_bytes: int
    signature_max_pixels: int
    signature_max_side: int
    offline_step_max_age_hours: int
    offline_step_keep_days: int


@dataclass(frozen=True)
class PaymentSettings:
    # Card: Stripe.
    stripe_secret_key: str
    stripe_webhook_secret: str
    stripe_api_base: str
    stripe_dev_standin: bool
    stripe_dev_standin_port: int
    stripe_connect_timeout_seconds: float
    stripe_read_timeout_seconds: float
    stripe_webhook_tolerance_seconds: int
    stripe_checkout_min_expiry_minutes: int
    stripe_checkout_max_expiry_minutes: int
    payment_status_poll_seconds: int
    payment_checkout_slack_minutes: int
    payment_hold_grace_minutes: int
    payment_max_checkout_attempts: int
    payment_recheck_seconds: int
    payment_start_give_up_seconds: int
    # Crypto: the chain, quotes, refunds.
    chain_rpc_url: str
    chain_id: int
    chain_name: str
    chain_contract_address: str
    chain_start_block: int
    chain_rpc_timeout_seconds: float
    chain_rpc_attempts: int
    chain_rpc_backoff_seconds: float
    chain_scan_max_blocks: int
    chain_reorg_depth: int
    chain_scan_interval_seconds: float
    confirmations: int
    chain_hot_wallet_key: str
    chain_refund_max_gas: int
    quote_minutes: int
    crypto_in_flight_grace_minutes: int
    crypto_review_hold_hours: int
    crypto_fixed_rate_pence_per_eth: int
    crypto_rate_source: str
    crypto_underpaid_tolerance_bps: int
    crypto_min_refund_wei: int
    crypto_status_poll_seconds: int
    crypto_demo_wallet: bool
    crypto_demo_wallet_address: str


@dataclass(frozen=True)
class SecuritySettings:
    password_min_length: int
    password_min_zxcvbn_score: int
    password_reset_max_age_seconds: int
    password_hash_time_cost: int
    password_hash_memory_kib: int
    password_hash_parallelism: int
    signin_rate_limit: str
    signin_account_rate_limit: str
    password_reset_rate_limit: str
    user_sessions_max: int
    staff_password_max_age_days: int
    staff_invite_max_age_seconds: int
    two_factor_issuer: str
    two_factor_pending_max_age_seconds: int
    two_factor_max_attempts: int
    two_factor_rate_limit: str
    two_factor_recovery_codes: int


@dataclass(frozen=True)
class LicenceSettings:
    licence_api_url: str
    licence_api_key: str
    licence_dev_standin: bool
    licence_connect_timeout_seconds: float
    licence_read_timeout_seconds: float
    licence_max_retries: int
    licence_retry_backoff_seconds: float
    licence_check_give_up_seconds: int
    licence_status_poll_seconds: int
    legal_driving_age: int
    min_years_licence_held: int
    max_penalty_points: int
    required_licence_category: str
    young_driver_max_age: int


@dataclass(frozen=True)
class Settings:
    money: MoneySettings
    booking: BookingSettings
    counter: CounterSettings
    payments: PaymentSettings
    security: SecuritySettings
    licence: LicenceSettings


def _domain(cls: type, config: Mapping[str, Any]):
    """One domain's settings: each field from the config key of the same name in capitals.
    Values are taken as they are (the environment's FLASK_ values are already parsed)."""
    return cls(**{f.name: config[f.name.upper()] for f in fields(cls)})


_DOMAINS = {"money": MoneySettings, "booking": BookingSettings, "counter": CounterSettings,
            "payments": PaymentSettings, "security": SecuritySettings,
            "licence": LicenceSettings}


def build(config: Mapping[str, Any]) -> Settings:
    return Settings(**{name: _domain(cls, config) for name, cls in _DOMAINS.items()})


def domain_of(key: str) -> str | None:
    """Which domain holds the config key `key` (None: read from app.config)."""
    for name, cls in _DOMAINS.items():
        if any(f.name == key.lower() for f in fields(cls)):
            return name
    return None


_UNSET = object()


class WatchedConfig(Config):
    """`app.config`, counting its changes so that settings built from it can tell they are stale.

    Writing a key the value it already has is not a change: Talisman sets
    `SESSION_COOKIE_SECURE = True` on every request of a production app, which would otherwise
    have every request build the settings again (issue 19)."""

    version = 0

    def _changed(self) -> None:
        self.version += 1

    def __setitem__(self, key, value) -> None:
        before = self.get(key, _UNSET)
        super().__setitem__(key, value)
        if before is not value and (type(before) is not type(value) or before != value):
            self._changed()

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self._changed()

    def update(self, *args, **kwargs) -> None:
        super().update(*args, **kwargs)
        self._changed()

    def setdefault(self, key, default=None):
        try:
            return super().setdefault(key, default)
        finally:
            self._changed()

    def pop(self, *args):
        try:
            return super().pop(*args)
        finally:
            self._changed()

    def popitem(self):
        try:
            return super().popitem()
        finally:
            self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def __ior__(self, other):
        result = super().__ior__(other)
        self._changed()
        return result


class Portal(Flask):
    """The portal's Flask: its config is a `WatchedConfig`, and what `ensure_sync` finds of a
    hook or view is kept: Flask asks again, with `inspect`, for each of the twenty-odd hooks
    of every request (about 4% of a request's own work, issue 19)."""

    config_class = WatchedConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._synced: dict[Any, Any] = {}

    def ensure_sync(self, func):
        try:
            return self._synced[func]
        except KeyError:
            synced = self._synced[func] = super().ensure_sync(func)
            return synced
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)


def init_settings(app: Flask) -> Settings:
    """Build the settings from the finished config (create_app) and keep them on the app."""
    built = build(app.config)
    app.extensions[EXTENSION_KEY] = (getattr(app.config, "version", 0), built)
    return built


def settings_of(app: Flask) -> Settings:
    kept = app.extensions.get(EXTENSION_KEY)
    if kept is None or kept[0] != getattr(app.config, "version", 0):
        return init_settings(app)
    return kept[1]


def settings() -> Settings:
    """The current app's settings (built again if its config changed since)."""
    return settings_of(current_app._get_current_object())  # type: ignore[attr-defined]
