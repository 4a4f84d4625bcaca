"""Every tunable of the portal, as a named setting.

Defaults live here; `create_app` then applies `FLASK_`-prefixed environment variables
(`app.config.from_prefixed_env()`), e.g. ``FLASK_LEGAL_DRIVING_AGE=21`` or
``FLASK_SQLALCHEMY_DATABASE_URI=postgresql+psycopg://...``. A few well-known plain names
(``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY``) are honoured too because every host
and tool already speaks them.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# The only environments that may run with development shortcuts (the development secret key,
# cookies over plain HTTP); every other ACME_ENV value is treated as production-like.
LOCAL_ENVS = ("development", "test")


def _normalise_db_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgres URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


DEFAULT_PORT = 5000  # where `./scripts/run` serves unless PORT says otherwise

# The largest whole number an INTEGER column (every id, every count) holds on PostgreSQL.
# Larger ids in an address are a 404, in a form field or query a message beside the field
# (app/form_fields.py, app/web.py), on SQLite as on PostgreSQL.
DB_INT_MAX = 2**31 - 1
# HTML kept per worker and kind, rendered once from plain values (app/web.py: fragment_cache):
# a few KB each at most; a full cache is emptied and fills again (issue 19).
FRAGMENTS_PER_KIND = 4096
# Search answers kept per worker (app/booking/availability.py), each a page of priced cars and
# its rendered list (~25 KB): fewer than the small fragments above.
SEARCH_ANSWERS_KEPT = 256
# Dates a filter accepts (the audit log's From and To): beyond them nothing was recorded, and
# Python's calendar ends at 9999-12-31 (a day later overflows).
FILTER_DATE_MIN = date(2000, 1, 1)
FILTER_DATE_MAX = date(2099, 12, 31)


def _served_base_url() -> str:
    """The run command's own address (`scripts/serve` exports FLASK_RUN_HOST/FLASK_RUN_PORT
    from PORT), so every URL the app hands out points at the port it is served on."""
    host = os.environ.get("FLASK_RUN_HOST", "")
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: this machine answers too
        host = "127.0.0.1"
    port = os.environ.get("FLASK_RUN_PORT") or os.environ.get("PORT") or str(DEFAULT_PORT)
    return f"http://{host}:{port}"


class Config:
    # --- environment -------------------------------------------------------------
    # development | test | production (or staging...). Unset means production: fail closed, a
    # server that forgot to say what it is gets every production safeguard; a laptop opts in to
    # development (./scripts/run does).
    ENV_NAME = os.environ.get("ACME_ENV", "production")
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-secret")
    INSECURE_DEV_SECRET = "dev-only-not-secret"
    SECRET_KEY_MIN_LENGTH = 32

    # --- storage -----------------------------------------------------------------
    SQLALCHEMY_DATABASE_URI = _normalise_db_url(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'instance' / 'acme.sqlite3'}")
    )
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    # The embedded default (SQLite): a write waits this long for another connection's write
    # to commit before it gives up with "database is locked" (app/__init__.py).
    SQLITE_BUSY_TIMEOUT_SECONDS = 20
    REDIS_URL = os.environ.get("REDIS_URL", "")  # empty: jobs in-process, limiter in memory
    UPLOAD_DIR = os.environ.get("UPLOAD_DIR", str(BASE_DIR / "instance" / "uploads"))
    MAX_CONTENT_LENGTH = 16 * 1024 * 1024  # bytes; larger requests get 413

    # --- background jobs ---------------------------------------------------------
    # "rq" when REDIS_URL is set; otherwise "thread" (in-process, off the request) or
    # "sync" (in-process, inline; used by tests so results are deterministic).
    JOBS_MODE = os.environ.get("JOBS_MODE", "")
    JOBS_QUEUE_NAME = "acme"  # customer-facing jobs: workers take these first
    # Report refreshes: a queue of their own, taken only when the one above is empty, so a
    # long roll-up never holds up a customer's licence check, payment or email.
    REPORTS_QUEUE_NAME = "acme-reports"
    JOB_MAX_RETRIES = 3
    JOB_RETRY_INTERVALS_SECONDS = [5, 30, 120]
    JOB_TIMEOUT_SECONDS = 120
    # The tick queues again the job of work committed this long ago whose job RQ never got
    # (Redis down at the time): app/jobs/recovery.py. Longer than the commit-to-enqueue gap.
    JOB_RECOVERY_AFTER_SECONDS = 120
    # A job or request whose write met another's (StaleDataError) runs again on a fresh read
    # this many times before it fails (app/conflicts.py).
    DB_CONFLICT_RETRIES = 5

    # --- business rules ------------------------------------------------------------
    LEGAL_DRIVING_AGE = 18
    DEFAULT_TIMEZONE = "Europe/London"
    DEFAULT_CURRENCY = "GBP"

    # --- accounts and security -----------------------------------------------------
    PASSWORD_MIN_LENGTH = 12
    PASSWORD_MIN_ZXCVBN_SCORE = 3  # 0..4, zxcvbn's scale
    PASSWORD_RESET_MAX_AGE_SECONDS = 60 * 60
    SIGNIN_RATE_LIMIT = "5 per minute"  # per client address
    # argon2id costs (argon2-cffi's defaults, RFC 9106's low-memory choice). A stored hash
    # carries its own costs; one made with other costs is re-hashed at the next sign-in.
    PASSWORD_HASH_TIME_COST = 3
    PASSWORD_HASH_MEMORY_KIB = 64 * 1024
    PASSWORD_HASH_PARALLELISM = 4
    # Per account, whatever the address: password guessing spread over many addresses.
    SIGNIN_ACCOUNT_RATE_LIMIT = "20 per hour"
    PASSWORD_RESET_RATE_LIMIT = "5 per hour"
    RATELIMIT_HEADERS_ENABLED = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False  # set True outside development in create_app
    REMEMBER_COOKIE_HTTPONLY = True
    # Signed-in devices kept per account (app/accounts/sessions.py): a new sign-in beyond this
    # ends the oldest (someone who never signs out does not pile up rows).
    USER_SESSIONS_MAX = 20
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None  # token lives as long as the session
    FORCE_HTTPS = False  # Nginx terminates TLS; Talisman only sets headers
    # How many proxies (Nginx) sit in front of the app and set X-Forwarded-For/-Proto; the
    # client address the sign-in rate limit sees comes from them. 0: no proxy (development).
    TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))

    # --- accessibility statement (issue 17) ----------------------------------------------
    ACCESSIBILITY_CONTACT_EMAIL = "accessibility@acme-rentals.example"
    ACCESSIBILITY_REPLY_WORKING_DAYS = 5
    ACCESSIBILITY_REVIEWED_ON = "2026-12-05"  # when the statement was last checked against the tests

    # --- mail ----------------------------------------------------------------------
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "outbox")  # outbox (dev only) | smtp
    MAIL_SENDER = "ACME Rentals <no-reply@acme-rentals.example>"
    # Right-hand side of every Message-ID; the left is the email's business event (its key).
    MAIL_MESSAGE_ID_DOMAIN = "acme-rentals.example"
    SMTP_HOST = os.environ.get("SMTP_HOST", "127.0.0.1")
    SMTP_PORT = int(os.environ.get("SMTP_PORT", "25"))
    SMTP_USERNAME = os.environ.get("SMTP_USERNAME", "")
    SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
    SMTP_STARTTLS = False
    SMTP_TIMEOUT_SECONDS = 10
    # The portal's address in links it hands out (emails, the Stripe stand-in's webhooks);
    # set it on a server, where it differs from the address the app listens on.
    PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL") or _served_base_url()

    # --- logging -------------------------------------------------------------------
    LOG_LEVEL = "INFO"
    LOG_JSON = False

    # --- driving-licence check (issue 3) -------------------------------------------
    # The provider: base URL and API key from the environment (Ansible Vault on the server).
    LICENCE_API_URL = os.environ.get("LICENCE_API_URL", "")
    LICENCE_API_KEY = os.environ.get("LICENCE_API_KEY", "")
    # Development only: with no LICENCE_API_URL, start the local stand-in
    # (devtools/licence_standin) in a background thread on first use. Never in production.
    LICENCE_DEV_STANDIN = True
    LICENCE_CONNECT_TIMEOUT_SECONDS = 3.05
    LICENCE_READ_TIMEOUT_SECONDS = 10.0
    LICENCE_MAX_RETRIES = 2  # on timeouts, connection errors and 5xx; never on 4xx
    LICENCE_RETRY_BACKOFF_SECONDS = 0.5  # urllib3 doubles it per retry
    # A check still pending after this long is given up as "try again later" (worker down...).
    LICENCE_CHECK_GIVE_UP_SECONDS = 120
    LICENCE_STATUS_POLL_SECONDS = 1  # how often the "Checking..." fragment asks again
    # Rental rules applied to the licence record.
    MIN_YEARS_LICENCE_HELD = 1  # full category B entitlement held at least this long
    MAX_PENALTY_POINTS = 6  # more than this is refused
    REQUIRED_LICENCE_CATEGORY = "B"
    YOUNG_DRIVER_MAX_AGE = 24  # aged up to and including this: the young-driver surcharge band

    # --- fleet and administration (issue 8) ----------------------------------------
    # Staff and admins: second factor at sign-in, password age, invitations.
    STAFF_PASSWORD_MAX_AGE_DAYS = 90
    STAFF_INVITE_MAX_AGE_SECONDS = 72 * 60 * 60
    TWO_FACTOR_ISSUER = "ACME Rentals"  # the name authenticator apps show
    TWO_FACTOR_PENDING_MAX_AGE_SECONDS = 5 * 60  # password accepted, code still to come
    TWO_FACTOR_MAX_ATTEMPTS = 5  # wrong codes before the password must be given again
    TWO_FACTOR_RATE_LIMIT = "10 per minute"
    TWO_FACTOR_RECOVERY_CODES = 10
    # Car photos: checked with Pillow, re-encoded without metadata, named by content hash.
    CAR_PHOTO_MAX_BYTES = 8 * 1024 * 1024
    CAR_PHOTO_MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding
    CAR_PHOTO_MAX_SIDE = 2400  # larger photos are scaled down to this many pixels
    CAR_PHOTO_MAX_PER_CAR = 8
    CAR_PHOTO_CACHE_SECONDS = 365 * 24 * 60 * 60  # names are content hashes: never stale
    FAVICON_CACHE_SECONDS = 7 * 24 * 60 * 60  # /favicon.ico: browsers keep it this long
    # Narrower copies of each photo for `srcset` (pixels wide), made on first request.
    CAR_PHOTO_WIDTHS = (320, 640, 960)
    CAR_OLDEST_YEAR = 1990
    CAR_MAX_ODOMETER_MILES = 1_000_000
    CAR_MAX_DAILY_RATE_PENCE = 1_000_000
    FLEET_PAGE_SIZE = 50
    MAINTENANCE_MAX_DAYS = 180
    # Admin pages.
    AUDIT_PAGE_SIZE = 50
    REPORT_DEFAULT_WEEKS = 12
    REPORT_MAX_PERIODS = 106  # two years of weeks; "late return" uses LATE_GRACE_MINUTES
    # The longest range a report (and so a refresh the page asks for) may cover; longer ones
    # are refused before any work is queued. The nightly refresh covers all history.
    REPORT_MAX_RANGE_DAYS = 2 * 366
    REPORT_MAX_ROWS_SHOWN = 50  # per-car utilisation on the page (the CSV has every car)
    # Reports read figures rolled up per car and period: those of the periods around today
    # are refreshed when older than this (a job the reports page asks for); the whole
    # history nightly (`flask admin refresh-reports`).
    REPORT_REFRESH_MINUTES = 10
    REPORT_REFRESH_DAYS_BACK = 35
    REPORT_REFRESH_DAYS_AHEAD = 60  # later bookings' figures wait for the nightly refresh
    # An attempt of a refresh job (at most REPORT_MAX_RANGE_DAYS: ~10 chunks of 13 periods,
    # a few seconds each over 2,000,000 hires) is stopped after this long.
    REPORT_JOB_TIMEOUT_SECONDS = 300

    # --- booking (issue 4): search, prices, holds, cancellation, reminders -------------
    HOLD_MINUTES = 15  # an unpaid hold keeps the car this long, then expires
    CLEANING_BUFFER_MINUTES = 60  # kept free after every hire before the car's next one
    LATE_GRACE_MINUTES = 60  # this much past a whole 24-hour period costs nothing
    MAX_HIRE_DAYS = 28
    BOOKING_MIN_NOTICE_MINUTES = 60  # pickup at least this far in the future
    BOOKING_MAX_ADVANCE_DAYS = 365
    MAX_HOLDS_PER_CUSTOMER = 2  # unpaid holds at once, so one person cannot hold the fleet
    SEARCH_RESULTS_LIMIT = 24
    # When nothing is free: look this many days either way for the nearest dates with a car
    # (same times and length), at most two counts a day (app/booking/suggestions.py).
    SEARCH_NEAREST_DATES_DAYS = 14
    VAT_PERCENT = 20
    WEEKEND_DAYS = ("sat", "sun")
    WEEKEND_SURCHARGE_PERCENT = 10  # on the daily rate, per charged period starting on those days
    YOUNG_DRIVER_DAILY_PENCE = 1500  # the band is YOUNG_DRIVER_MAX_AGE (licence section)
    YOUNG_DRIVER_CAP_PENCE = 15000
    ONE_WAY_DEFAULT_FEE_PENCE = 7500  # when the one_way_fees table has no row for the pair
    # Cancellation policy: free until FREE_CANCEL_HOURS before pickup, then a fee: the
    # CANCEL_FEE_PERCENT of the total when it is above 0, else CANCEL_FEE_PENCE (never more
    # than the total).
    FREE_CANCEL_HOURS = 48
    CANCEL_FEE_PENCE = 5000
    CANCEL_FEE_PERCENT = 0
    # No-show: a confirmed hire not collected NO_SHOW_GRACE_MINUTES after its pickup time is
    # marked `no_show` by the scheduler (or earlier by staff, once the pickup time has passed);
    # the car is free again. NO_SHOW_FEE_PENCE of what was paid is kept (never more than was
    # paid), the rest refunded and the deposit released.
    NO_SHOW_GRACE_MINUTES = 120
    NO_SHOW_FEE_PENCE = 7500
    PICKUP_REMINDER_HOURS = 24
    RETURN_REMINDER_HOURS = 3
    # Development (JOBS_MODE "thread"): run `acme tick` from the in-process pool this often.
    # Production runs `flask acme tick` from a systemd timer instead. 0 turns it off.
    DEV_TICK_SECONDS = 60

    # --- crypto payments (issue 5, crypto half) ------------------------------------------
    # The chain: a JSON-RPC node, the deployed AcmePayments contract (contracts/) and the
    # block it was deployed in (the watcher starts there). All from the environment; with no
    # RPC URL or contract address, crypto payment is simply not offered.
    CHAIN_RPC_URL = os.environ.get("CHAIN_RPC_URL", "")
    CHAIN_ID = int(os.environ.get("CHAIN_ID", "1337"))
    CHAIN_NAME = os.environ.get("CHAIN_NAME", "Local development chain")
    CHAIN_CONTRACT_ADDRESS = os.environ.get("CHAIN_CONTRACT_ADDRESS", "")
    CHAIN_START_BLOCK = int(os.environ.get("CHAIN_START_BLOCK", "0"))
    CHAIN_RPC_TIMEOUT_SECONDS = 10
    CHAIN_RPC_ATTEMPTS = 3  # tries per idempotent RPC call on timeouts/connection errors (web3)
    CHAIN_RPC_BACKOFF_SECONDS = 0.5
    CHAIN_SCAN_MAX_BLOCKS = 2000  # blocks per eth_getLogs call (nodes cap the range)
    CHAIN_REORG_DEPTH = 12  # every scan looks this many blocks back again, to see reorgs
    CHAIN_SCAN_INTERVAL_SECONDS = 5  # a status poll starts a scan when the last is older
    CONFIRMATIONS = 12  # blocks (the payment's own included) before a payment is settled
    # The hot wallet that sends refunds: its key from the environment (Ansible Vault);
    # keep only a small balance on it.
    CHAIN_HOT_WALLET_KEY = os.environ.get("CHAIN_HOT_WALLET_KEY", "")
    CHAIN_REFUND_MAX_GAS = 100_000  # a refund to an address that needs more is not sent
    # Quotes: fiat stays the price of record; the ETH amount is locked for QUOTE_MINUTES.
    QUOTE_MINUTES = 15
    # A hold whose crypto payment is already on its way (seen on chain, or reported sent by the
    # wallet) is kept this much longer so that the confirmations can arrive.
    CRYPTO_IN_FLIGHT_GRACE_MINUTES = 30
    # A hold whose crypto payment staff are reviewing (short, late...) keeps its car while they
    # decide, at most this long after the hold would have ended; then it expires as usual.
    CRYPTO_REVIEW_HOLD_HOURS = 24
    # The rate: a configured fixed rate, named as such on every quote (no rate feed is
    # reachable offline). Pence per 1 ETH: 250_000 is GBP 2,500.00 per ETH.
    CRYPTO_FIXED_RATE_PENCE_PER_ETH = int(os.environ.get("CRYPTO_FIXED_RATE_PENCE_PER_ETH",
                                                         "250000"))
    CRYPTO_RATE_SOURCE = os.environ.get("CRYPTO_RATE_SOURCE",
                                        "Fixed demonstration rate (configured, not a market price)")
    # BTCPay-style rules. Underpaid by more than this (basis points of the quote) ->
    # partial, staff review; underpaid by less is accepted as paid in full.
    CRYPTO_UNDERPAID_TOLERANCE_BPS = 50
    # Overpaid: the excess is refunded, unless it is less than this (the network fee
    # would eat it). 10**14 wei = 0.0001 ETH.
    CRYPTO_MIN_REFUND_WEI = 10**14
    CRYPTO_STATUS_POLL_SECONDS = 2  # how often the payment status fragment asks again
    # Development only: a wallet for browsers without one, backed by the local node's
    # unlocked account (devtools/chain). Refused at start-up in production.
    CRYPTO_DEMO_WALLET = False
    CRYPTO_DEMO_WALLET_ADDRESS = ""


    # --- counter: pickups and returns (issue 7) --------------------------------------
    # Late return: per started hour past the hire's end, once LATE_GRACE_MINUTES (booking's
    # setting) have passed; each 24 hours of lateness costs at most the hire's day rate.
    LATE_FEE_PER_HOUR_PENCE = 1500
    FUEL_PRICE_PER_EIGHTH_PENCE = 1200  # a tank is eight eighths
    REFUELLING_FEE_PENCE = 2000  # once, when the car comes back short of fuel
    EXCESS_MILEAGE_PENCE_PER_MILE = 25
    CLEANING_FEE_PENCE = 4500
    MAX_DAMAGE_CHARGE_PENCE = 250_000  # one staff-entered damage line, at most
    UNUSED_DAY_REFUND_PERCENT = 50  # early return: this share of each whole unused day back
    CONDITION_PANELS = ("front", "rear", "left", "right", "roof", "windscreen", "wheels", "interior")
    PHOTO_MAX_BYTES = 8 * 1024 * 1024
    # The customer's signature: a PNG of the 600x200 signature box, checked and re-encoded as
    # photos are. Anything far bigger is not from the box (a decompression bomb, say).
    SIGNATURE_MAX_BYTES = 512 * 1024
    SIGNATURE_MAX_PIXELS = 1_000_000  # refused before decoding beyond this
    SIGNATURE_MAX_SIDE = 1200  # a wider one is scaled down to this many pixels
    # The offline counter (issue 20): the tablet syncs every OFFLINE_SYNC_SECONDS while
    # online and queues the offline-safe steps; they arrive later in batches of at most
    # OFFLINE_BATCH_MAX_STEPS. A step done longer ago than OFFLINE_STEP_MAX_AGE_HOURS is
    # refused (staff do it again). Photos are shrunk on the tablet before they are kept.
    OFFLINE_SYNC_SECONDS = 60
    OFFLINE_BATCH_MAX_STEPS = 20
    OFFLINE_REQUEST_TIMEOUT_SECONDS = 20  # the tablet gives up on a sync or a send after this
    OFFLINE_STEP_MAX_AGE_HOURS = 36
    # The server keeps the answer to each offline step's key (offline_steps) for this many
    # days, then the tick deletes it. Far longer than a tablet may hold a step
    # (OFFLINE_STEP_MAX_AGE_HOURS): a step old enough to have lost its kept answer is refused
    # for its age, so it can never be applied twice. Never pruned sooner than that age.
    OFFLINE_STEP_KEEP_DAYS = 30
    OFFLINE_PHOTO_MAX_SIDE = 1600
    OFFLINE_PHOTO_JPEG_QUALITY = 0.7
    # Names the service worker's cache: a new value makes tablets install the new worker and
    # drop the old cache (queued steps live in IndexedDB and stay). Empty: derived from the
    # offline files themselves, so each release that changes them gets a new one.
    OFFLINE_RELEASE = ""

    # --- online check-in, extensions, the customer's own data (issue 18) ------------------
    # The terms the customer accepts: docs/terms/<TERMS_VERSION>.md (app/terms.py). A new
    # version is a new file; the version accepted is kept with each check-in.
    TERMS_DIR = str(BASE_DIR / "docs" / "terms")
    TERMS_VERSION = "v1"
    # Online check-in opens this long before pickup and closes at pickup.
    CHECKIN_OPENS_HOURS = 48
    ADDITIONAL_DRIVERS_MAX = 3  # per hire, besides the hirer
    # The licence photo (front): checked and re-encoded as car photos are.
    LICENCE_PHOTO_MAX_BYTES = 8 * 1024 * 1024
    LICENCE_PHOTO_MAX_PIXELS = 40_000_000  # refused before decoding beyond this
    LICENCE_PHOTO_MAX_SIDE = 2000
    # "Download my data": the ZIP is kept this long after it is built, then deleted.
    DATA_EXPORT_HOURS = 48
    DATA_EXPORT_POLL_SECONDS = 2  # how often the "being prepared" fragment asks again
    # Retention: licence numbers, licence photos and signature images are deleted this many
    # days after the customer's last hire ended (the tick does it, audited).
    PERSONAL_DATA_RETENTION_DAYS = 90
    # A customer who never hired: their licence data is deleted this many days after they signed
    # up or last signed in, whichever is later (the same tick, audited).
    NEVER_HIRED_RETENTION_DAYS = 180
    RETENTION_LOOKAHEAD_DAYS = 30  # the admins' list also shows what falls due this soon

    # --- card payments: Stripe (issue 5, card half) ------------------------------------
    # Keys from the environment (Ansible Vault on the server). STRIPE_API_BASE empty means
    # Stripe itself; in development, empty starts the local stand-in (devtools/stripe_standin)
    # in a background thread on first use, with its own test key and webhook secret.
    # Never in production: there, no key means card payment is not offered.
    STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
    STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
    STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")
    STRIPE_DEV_STANDIN = True
    STRIPE_DEV_STANDIN_PORT = 12111  # 0: any free port
    STRIPE_CONNECT_TIMEOUT_SECONDS = 3.05
    STRIPE_READ_TIMEOUT_SECONDS = 20.0
    STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300  # Stripe's own default: older signatures are refused
    # Stripe accepts a Checkout Session that expires between 30 minutes and 24 hours away.
    STRIPE_CHECKOUT_MIN_EXPIRY_MINUTES = 30
    STRIPE_CHECKOUT_MAX_EXPIRY_MINUTES = 24 * 60
    # Deposit hold: on the saved card no earlier than this before pickup (card holds lapse
    # after about 7 days; Visa's merchant-initiated ones after about 4 days 18 hours).
    DEPOSIT_HOLD_LEAD_DAYS = 1
    # When Stripe does not say how long a hold lives: the shortest lifetime (Visa MIT).
    DEPOSIT_HOLD_FALLBACK_HOURS = 4 * 24 + 18
    PAYMENT_STATUS_POLL_SECONDS = 2  # how often the "processing" fragment asks again
    # Added to the 30 minutes so a session created by a job a moment later is still accepted.
    PAYMENT_CHECKOUT_SLACK_MINUTES = 5
    # The car stays held while Checkout can take the money, plus this for the webhook.
    PAYMENT_HOLD_GRACE_MINUTES = 5
    PAYMENT_MAX_CHECKOUT_ATTEMPTS = 5  # per hire; each may extend the hold by ~35 minutes
    # While a customer back from Checkout waits and no webhook has come, ask Stripe this often.
    PAYMENT_RECHECK_SECONDS = 10
    # A card payment still not started after this long (Stripe did not answer, or the worker
    # running its job died) is shown with a "try again" button that starts it again (same
    # idempotency key: Stripe gives back the same session if the first call reached it).
    PAYMENT_START_GIVE_UP_SECONDS = 30

    # --- metrics (issue 9): /metrics for Prometheus, app/metrics.py ----------------------
    # In RQ mode job outcomes are counted in this Redis hash (shared by web and workers).
    METRICS_JOB_OUTCOMES_KEY = "acme:metrics:job_runs"
    METRICS_REDIS_TIMEOUT_SECONDS = 1.0  # a scrape or a job never waits longer on it
    # In RQ mode the chain watcher's last scan (head, scanned block, when) is kept in this hash.
    METRICS_CHAIN_KEY = "acme:metrics:chain"

    # --- public page cache (issue 9, app/pagecache.py) -----------------------------
    # The search page and a car's price page, for visitors who are not signed in, are kept
    # this long in each worker's memory (0: off). An anonymous search may show a car up to
    # this long after someone held it; holding it always re-checks in the database.
    PUBLIC_PAGE_CACHE_SECONDS = 2.0
    PUBLIC_PAGE_CACHE_ENTRIES = 512  # per worker, least recently used dropped first
    PUBLIC_PAGE_CACHE_MAX_BYTES = 256 * 1024  # a larger answer is not kept

    # --- paperwork (issue 18): the rental agreement, VAT invoices, credit notes ----------
    # The seller printed on every agreement, invoice and credit note. Set them on a server
    # with the FLASK_ prefix, e.g. FLASK_COMPANY_VAT_NUMBER="GB123456789" and
    # FLASK_COMPANY_ADDRESS='["1 Long Road", "Reading", "RG1 1AA"]' (a JSON list of lines).
    # A document keeps the details it was issued with: changing them later changes only new ones.
    COMPANY_LEGAL_NAME = "ACME Rentals Ltd"
    COMPANY_ADDRESS = ["1 Airport Way", "Hounslow", "TW6 1AA", "United Kingdom"]
    COMPANY_VAT_NUMBER = "GB 000 0000 00"  # placeholder: set the real one on the server
    COMPANY_REGISTRATION = "Registered in England and Wales no. 00000000"
    COMPANY_EMAIL = "accounts@acme-rentals.example"
    # One numbering series per kind of document, each gapless from 1: INV-000001, CN-000001.
    INVOICE_NUMBER_PREFIX = "INV-"
    CREDIT_NOTE_NUMBER_PREFIX = "CN-"
    AGREEMENT_THUMBS_PER_PANEL = 2  # condition photos printed per panel in the agreement
    DOCUMENT_STATUS_POLL_SECONDS = 2  # how often "Preparing the agreement..." asks again
    # Staff are emailed when an agreement's job gives up: the active staff of the hire's pickup
    # branch, and this address too when set (e.g. the operations mailbox).
    STAFF_ALERT_EMAIL = os.environ.get("STAFF_ALERT_EMAIL", "")
    # The staff list of invoices and credit notes: at most this many days per page or CSV.
    INVOICE_LIST_MAX_DAYS = 400
    INVOICE_PAGE_SIZE = 100


class TestConfig(Config):
    ENV_NAME = "test"
    TESTING = True
    PUBLIC_PAGE_CACHE_SECONDS = 0  # tests change data and look again; tests/test_pagecache.py turns it on
    SECRET_KEY = "test-secret-key-not-for-production"
    JOBS_MODE = "sync"
    MAIL_BACKEND = "outbox"
    WTF_CSRF_ENABLED = True
    SIGNIN_RATE_LIMIT = "5 per minute"
    # The cheapest argon2id argon2-cffi allows: tests sign in thousands of times, and what
    # they check is the rules around the hash, not its cost (a production check refuses these).
    PASSWORD_HASH_TIME_COST = 1
    PASSWORD_HASH_MEMORY_KIB = 8
    PASSWORD_HASH_PARALLELISM = 1
