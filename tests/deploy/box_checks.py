"""What an admin and a user would notice on the hosts the deploy test provisioned.

Run by tests/deploy/run.sh from this machine against the booted Debian hosts (not part of the
ordinary suite: the file name does not match test_*.py). Phases, picked with -k:
  live      HTTPS pages, /healthz, a worker processing a job, redirect, headers, firewall,
            the scheduler's minutely tick, the chain watcher (where a chain is configured) ...
  restart   SIGKILL Gunicorn's master, a Gunicorn worker, an RQ worker (and the chain
            watcher where it runs): systemd brings them back
  backup    back up, drop a table, restore.yml, compare row counts and the hires checksum
  offsite   (three) back up: copies go, encrypted, to the backup target; SFTP only there
  drill     (three) after the db host was replaced by a fresh one and restored from off the
            host: the same rows, hires checksum and uploads as before
  alerts    (the three-host scenario) a live release that fails on one route: the 5xx alert
            fires, the receiver rolls it back and tells the admin by email, the alert resolves;
            a second time without a person in between, it only tells
  replica   (three) a row written on the primary is read on the hot standby within seconds
  failover  (three) failover.yml under a stream of bookings: every confirmed one on the new primary
  reversed  (three) after site.yml -e acme_db_primary=<the new primary>: the old primary streams
            from it as its standby
(The offsite and drill phases seed ACME_DRILL_HIRES hires, 40 unless set: run.sh drill, 2,000,000.)
The driver exports where the hosts are (ACME_* variables below).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import threading
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

URL = os.environ.get("ACME_BOX_URL", "https://10.77.0.2")
CA = os.environ.get("ACME_BOX_CA", "")
WEB_IP = os.environ.get("ACME_WEB_IP", "10.77.0.2")
DB_IP = os.environ.get("ACME_DB_IP", WEB_IP)
SSH_KEY = os.environ.get("ACME_SSH_KEY", "")
WORKER_HOST = os.environ.get("ACME_WORKER_HOST", "")
WORKER_IP = os.environ.get("ACME_WORKER_IP", WEB_IP)
# The two-host inventory configures a chain (no node behind it): the watcher must run there.
EXPECT_CHAIN_WATCH = os.environ.get("ACME_EXPECT_CHAIN_WATCH", "") == "1"
EXPECT_RELEASE = os.environ.get("ACME_EXPECT_RELEASE", "")
EXPECT_MARKER = os.environ.get("ACME_EXPECT_MARKER", "")
# The throw-away certificate of the two-host scenario lives 2 days: its expiry alert must fire.
SHORT_LIVED_CERT = bool(os.environ.get("ACME_GIVEN_CA", ""))
# The alert scenario: the release that fails on the home page, and the one before it.
BROKEN_HOME_RELEASE = os.environ.get("ACME_BROKEN_HOME_RELEASE", "")
INVENTORY = os.environ.get("ACME_INVENTORY", "")
ANSIBLE_DIR = os.environ.get("ACME_ANSIBLE_DIR", "")

REPO = Path(__file__).resolve().parents[2]
MARKER_PREFIX = "acme-deploy-test release:"
READY_TIMEOUT_SECONDS = 180
HTTP_TIMEOUT_SECONDS = 30
RESTART_TIMEOUT_SECONDS = 60
TICK_TIMEOUT_SECONDS = 75  # the scheduler's timer fires at every minute's :00
UPLOAD_NAME = "deploy-test-photo.jpg"


# --- helpers ---------------------------------------------------------------------------------
def ssh(ip: str, command: str, *, input: str | None = None, check: bool = True,
        timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a shell command on a host as the admin user (sudo inside the command as needed)."""
    result = subprocess.run(
        ["ssh", "-i", SSH_KEY, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", f"debian@{ip}", command],
        input=input, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"on {ip}: {command!r} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def sql(query: str, timeout: int = 300) -> str:
    """Run SQL in the app's database as the postgres superuser; return psql's unaligned output."""
    return ssh(DB_IP, "sudo -u postgres psql -d acme -qAt -v ON_ERROR_STOP=1 -f -", input=query,
               timeout=timeout).stdout.strip()


def get(path: str, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", HTTP_TIMEOUT_SECONDS)
    return requests.get(URL + path, verify=CA, **kwargs)


def wait_until(what: str, check, timeout: float = RESTART_TIMEOUT_SECONDS, pause: float = 0.5):
    """Poll `check()` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, AssertionError) as exc:
            last = exc
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def healthy() -> bool:
    r = get("/healthz")
    return r.status_code == 200 and r.json()["status"] == "ok"


def ping_worker() -> dict:
    out = ssh(WEB_IP, "sudo acme-flask acme ping-worker --timeout 90").stdout
    return json.loads(out.strip().splitlines()[-1])


def port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=2):
            return True
    except OSError:
        return False


def main_pid(ip: str, unit: str) -> int:
    return int(ssh(ip, f"systemctl show -p MainPID --value {unit}").stdout.strip())


def gunicorn_workers(master: int) -> set[int]:
    out = ssh(WEB_IP, f"pgrep -P {master} || true").stdout.split()
    return {int(p) for p in out}


def expected_gunicorn_workers() -> int:
    conf = ssh(WEB_IP, "cat /etc/acme/gunicorn.conf.py").stdout
    return int(re.search(r"^workers = (\d+)$", conf, re.M).group(1))


@pytest.fixture(scope="module", autouse=True)
def ready():
    """The hosts may have just booted: wait until the portal says it is healthy."""
    assert CA and SSH_KEY, "run through tests/deploy/run.sh (ACME_BOX_CA, ACME_SSH_KEY unset)"
    wait_until(f"{URL}/healthz to answer 200", healthy, timeout=READY_TIMEOUT_SECONDS, pause=1)


# --- live: the portal as users and admins see it ---------------------------------------------------
def test_live_home_page_over_https_from_the_expected_release():
    r = get("/")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "ACME" in r.text
    if EXPECT_MARKER:
        assert f"{MARKER_PREFIX} {EXPECT_MARKER}" in r.text
    else:
        assert MARKER_PREFIX not in r.text


def test_live_sign_in_page_has_a_form():
    r = get("/account/sign-in")
    assert r.status_code == 200
    assert 'name="csrf_token"' in r.text


def test_live_healthz_reports_database_and_redis_up():
    r = get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"app": "ok", "database": "ok", "redis": "ok"}}


def test_live_release_is_live_and_loaded_by_every_gunicorn_worker():
    assert ssh(WEB_IP, "cat /srv/acme/current/REVISION").stdout.strip() == EXPECT_RELEASE
    real = ssh(WEB_IP, "readlink -f /srv/acme/current").stdout.strip()
    assert real == f"/srv/acme/releases/{EXPECT_RELEASE}"
    master = main_pid(WEB_IP, "acme-web.service")
    workers = gunicorn_workers(master)
    assert len(workers) == expected_gunicorn_workers()
    loaded = ssh(WEB_IP, "sudo sh -c 'cd /run/acme-web/booted && for p in " + " ".join(map(str, workers))
                 + "; do echo \"$p $(cat $p)\"; done'").stdout.split("\n")
    assert all(line.endswith(real) for line in loaded if line), loaded


def test_live_worker_processes_a_job_enqueued_by_the_app():
    answer = ping_worker()
    assert answer["host"] == WORKER_HOST
    assert answer["release"] == f"/srv/acme/releases/{EXPECT_RELEASE}"


def test_live_http_redirects_to_https():
    r = requests.get(f"http://{WEB_IP}/account/sign-in?next=%2Fbook", allow_redirects=False,
                     timeout=HTTP_TIMEOUT_SECONDS)
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://{WEB_IP}/account/sign-in?next=%2Fbook"


def test_live_security_headers_once_each():
    r = get("/account/sign-in")
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert "Server" not in r.headers or "/" not in r.headers["Server"]  # no version shown


def test_live_request_id_passes_through_nginx_to_the_app():
    mine = f"deploytest{int(time.time() * 1000)}"
    r = get("/healthz", headers={"X-Request-ID": mine})
    assert r.headers["X-Request-ID"] == mine
    theirs = get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", theirs)
    # The same ids are in Nginx's access log: one id from the browser to the app's logs.
    log = ssh(WEB_IP, "sudo tail -n 200 /var/log/nginx/acme.access.log").stdout
    assert f"rid={mine}" in log and f"rid={theirs}" in log


def test_live_request_size_is_limited():
    r = requests.post(URL + "/account/sign-in", data=b"x" * (17 * 1024 * 1024), verify=CA,
                      timeout=HTTP_TIMEOUT_SECONDS)
    assert r.status_code == 413


def test_live_static_files_come_from_nginx_with_caching():
    r = get("/static/css/app.css")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "max-age=3600"


def test_live_firewall_lets_in_only_ssh_and_web():
    assert port_open(WEB_IP, 22) and port_open(WEB_IP, 80) and port_open(WEB_IP, 443)
    for port in (5432, 6379):
        assert not port_open(WEB_IP, port), f"{WEB_IP}:{port} is reachable from outside"
    if DB_IP != WEB_IP:
        assert port_open(DB_IP, 22)
        for port in (80, 443, 5432, 6379):
            assert not port_open(DB_IP, port), f"{DB_IP}:{port} is reachable from outside"
        # ... but the web host reaches PostgreSQL and Redis on the db host.
        for port in (5432, 6379):
            ssh(WEB_IP, f"timeout 3 bash -c '</dev/tcp/{DB_IP}/{port}'")


def test_live_redis_and_postgresql_listen_privately():
    for port in (5432, 6379):
        out = ssh(DB_IP, f"ss -Hltn 'sport = :{port}'").stdout
        addresses = {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines()}
        allowed = {"127.0.0.1", "[::1]"} | ({DB_IP} if DB_IP != WEB_IP else set())
        assert addresses and addresses <= allowed, (port, addresses)


def test_live_services_enabled_and_running():
    web_units = ["nginx", "acme-web.socket", "acme-web.service", "acme-workers.target",
                 "acme-worker@1.service", "acme-worker@2.service", "acme-tick.timer",
                 "acme-backup-uploads.timer", "nftables"]
    if EXPECT_CHAIN_WATCH:
        web_units.append("acme-chain-watch.service")
    db_units = ["postgresql", "redis-server", "acme-backup-db.timer", "nftables"]
    for ip, units in ((WEB_IP, web_units), (DB_IP, db_units)):
        out = ssh(ip, "systemctl is-enabled " + " ".join(units) + "; systemctl is-active "
                  + " ".join(units), check=False).stdout.split()
        enabled, active = out[:len(units)], out[len(units):]
        assert all(e in ("enabled", "static", "indirect") for e in enabled), dict(zip(units, enabled))
        assert active == ["active"] * len(units), dict(zip(units, active))


def test_live_app_role_reads_and_writes_but_cannot_change_the_schema():
    flags = sql("SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                "WHERE rolname IN ('acme', 'acme_owner', 'acme_backup') ORDER BY 1")
    assert flags.splitlines() == ["acme|f|f|f", "acme_backup|f|f|f", "acme_owner|f|f|f"]
    assert sql("SET ROLE acme; SELECT count(*) >= 0 FROM users;") == "t"
    denied = ssh(DB_IP, "sudo -u postgres psql -d acme -At -c 'SET ROLE acme; CREATE TABLE intruder (i int)'",
                 check=False)
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    nobody = ssh(DB_IP, "sudo -u postgres psql -d acme -At -c "
                 "\"SELECT has_database_privilege('public', 'acme', 'CONNECT')\"").stdout.strip()
    assert nobody == "f"


def test_live_secrets_and_code_are_out_of_the_apps_reach():
    assert ssh(WEB_IP, "stat -c %a:%U /etc/acme/acme.env").stdout.strip() == "600:root"
    assert ssh(WEB_IP, "stat -c %U /srv/acme/current/app").stdout.strip() == "root"
    cannot_write = ssh(WEB_IP, "sudo -u acme test -w /srv/acme/current/app", check=False)
    assert cannot_write.returncode != 0


def test_live_chain_watcher_runs_only_where_a_chain_is_configured():
    unit = ssh(WORKER_IP, "systemctl cat acme-chain-watch.service").stdout
    assert "payments chain-watch" in unit and "Restart=on-failure" in unit
    state = ssh(WORKER_IP, "systemctl is-enabled acme-chain-watch.service; "
                "systemctl is-active acme-chain-watch.service", check=False).stdout.split()
    if not EXPECT_CHAIN_WATCH:
        assert state == ["disabled", "inactive"]
        return
    assert state == ["enabled", "active"]
    pid = main_pid(WORKER_IP, "acme-chain-watch.service")
    user, args = ssh(WORKER_IP, f"ps -o user=,args= -p {pid}").stdout.strip().split(None, 1)
    assert user == "acme" and "payments chain-watch" in args
    # No node answers in the test: the watcher logs the failed scans and keeps going.
    wait_until("the chain watcher to log a failed scan", lambda: "chain scan failed" in ssh(
        WORKER_IP, "sudo journalctl -b -u acme-chain-watch.service -o cat").stdout)
    assert main_pid(WORKER_IP, "acme-chain-watch.service") == pid


# --- live: monitoring (Prometheus, exporters, Alertmanager on the monitoring host = WEB_IP) -------
def prometheus(query: str) -> list:
    """The result of an instant query, asked on the monitoring host (Prometheus is on loopback)."""
    out = ssh(WEB_IP, "curl -fsS --max-time 10 -G http://127.0.0.1:9090/api/v1/query "
              f"--data-urlencode {shlex.quote('query=' + query)}").stdout
    answer = json.loads(out)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def firing(alertname: str) -> list:
    return prometheus(f'ALERTS{{alertname="{alertname}", alertstate="firing"}}')


def test_live_monitoring_rules_and_configs_pass_promtool_and_amtool():
    out = ssh(WEB_IP, "promtool check rules /etc/prometheus/rules/acme.yml").stdout
    assert "SUCCESS: 11 rules found" in out, out
    ssh(WEB_IP, "promtool check config /etc/prometheus/prometheus.yml")
    ssh(WEB_IP, "sudo amtool check-config /etc/prometheus/alertmanager.yml")
    rules = json.loads(ssh(WEB_IP, "curl -fsS http://127.0.0.1:9090/api/v1/rules").stdout)
    loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
    assert {"AcmeHigh5xxRatio", "AcmeHealthzFailing", "AcmeQueueBacklog", "AcmeFailedJobsRising",
            "AcmePaymentPendingTooLong", "AcmeChainWatcherBehind", "AcmeDiskAlmostFull",
            "AcmeBackupTooOld", "AcmeCertificateExpiring"} <= loaded, loaded


def test_live_monitoring_scrapes_every_target():
    """The app's /metrics, node, PostgreSQL, Redis and Nginx exporters, /healthz over HTTPS."""
    def all_up():
        targets = json.loads(ssh(WEB_IP, "curl -fsS http://127.0.0.1:9090/api/v1/targets").stdout)
        health = {(t["labels"]["job"], t["labels"].get("host", "")): t["health"]
                  for t in targets["data"]["activeTargets"]}
        jobs = {job for job, _ in health}
        assert {"acme-app", "node", "postgres", "redis", "nginx", "healthz"} <= jobs, health
        return health if set(health.values()) == {"up"} else None
    wait_until("every Prometheus target to be up", all_up, timeout=90, pause=2)
    assert prometheus('probe_success{job="healthz"}')[0]["value"][1] == "1"
    states = {r["metric"]["state"] for r in prometheus("acme_payments_oldest_age_seconds")}
    assert states == {"pending", "processing"}
    queues = {r["metric"]["queue"] for r in prometheus("acme_queue_jobs")}
    assert queues == {"acme", "acme-reports"}
    assert prometheus("pg_up")[0]["value"][1] == "1"
    assert prometheus("redis_up")[0]["value"][1] == "1"
    assert prometheus("nginx_up")[0]["value"][1] == "1"


def test_live_monitoring_listens_on_nothing_reachable_from_outside():
    for ip in {WEB_IP, DB_IP}:
        for port in (9090, 9093, 9094, 9095, 9100, 9113, 9115, 9121, 9187, 8001, 8080):
            assert not port_open(ip, port), f"{ip}:{port} is reachable from outside"


if SHORT_LIVED_CERT:  # the two-host scenario's certificate expires in 2 days
    def test_live_monitoring_a_certificate_about_to_expire_raises_its_alert():
        wait_until("AcmeCertificateExpiring to fire", lambda: firing("AcmeCertificateExpiring"),
                   timeout=90, pause=3)


def test_live_scheduler_ticks_every_minute():
    """Last of the live checks: it may wait for the next minute's tick after a (re)boot."""
    timer = ssh(WORKER_IP, "systemctl show -p TimersCalendar --value acme-tick.timer").stdout
    assert "OnCalendar=*-*-* *:*:00" in timer, timer

    def ticked_since_boot():
        props = dict(line.split("=", 1) for line in ssh(
            WORKER_IP, "systemctl show -p Result -p ExecMainStatus -p ExecMainStartTimestampMonotonic "
            "acme-tick.service").stdout.split())
        if props["ExecMainStartTimestampMonotonic"] in ("", "0"):
            return None  # not run yet since boot (or skipped: no release was live yet)
        assert props["Result"] == "success" and props["ExecMainStatus"] == "0", props
        out = ssh(WORKER_IP, "sudo journalctl -b -u acme-tick.service -o cat").stdout
        return re.search(r"Expired \d+ holds; \d+ no-shows; \d+ reminders due\.", out)

    wait_until("`flask acme tick` to run from acme-tick.timer", ticked_since_boot,
               timeout=TICK_TIMEOUT_SECONDS, pause=2)


# --- restart: systemd brings killed processes back ------------------------------------------------
def test_restart_of_gunicorn_master_after_sigkill():
    master = main_pid(WEB_IP, "acme-web.service")
    assert master > 0
    ssh(WEB_IP, f"sudo kill -KILL {master}")
    new = wait_until("a new Gunicorn master",
                     lambda: (lambda p: p if p not in (0, master) else None)(main_pid(WEB_IP, "acme-web.service")))
    wait_until("the portal to answer again", healthy)
    assert len(gunicorn_workers(new)) == expected_gunicorn_workers()


def test_restart_of_a_gunicorn_worker_after_sigkill():
    master = main_pid(WEB_IP, "acme-web.service")
    victim = min(gunicorn_workers(master))
    ssh(WEB_IP, f"sudo kill -KILL {victim}")
    wait_until("Gunicorn to replace the killed worker",
               lambda: (lambda w: victim not in w and len(w) == expected_gunicorn_workers())(
                   gunicorn_workers(master)))
    assert main_pid(WEB_IP, "acme-web.service") == master  # the master itself lived on
    assert healthy()


def test_restart_of_an_rq_worker_after_sigkill():
    before = main_pid(WEB_IP, "acme-worker@1.service")
    assert before > 0
    ssh(WEB_IP, f"sudo kill -KILL {before}")
    wait_until("systemd to restart acme-worker@1",
               lambda: main_pid(WEB_IP, "acme-worker@1.service") not in (0, before))
    ssh(WEB_IP, "sudo systemctl stop acme-worker@2.service")  # only the restarted one may answer
    try:
        assert ping_worker()["host"] == WORKER_HOST
    finally:
        ssh(WEB_IP, "sudo systemctl start acme-worker@2.service")


if EXPECT_CHAIN_WATCH:  # defined only where the watcher runs (nothing is skipped)
    def test_restart_of_the_chain_watcher_after_sigkill():
        before = main_pid(WORKER_IP, "acme-chain-watch.service")
        assert before > 0
        ssh(WORKER_IP, f"sudo kill -KILL {before}")
        wait_until("systemd to restart acme-chain-watch",
                   lambda: main_pid(WORKER_IP, "acme-chain-watch.service") not in (0, before))
        assert ssh(WORKER_IP, "systemctl is-active acme-chain-watch.service").stdout.strip() == "active"


# --- backup: the nightly backup restores what was there ---------------------------------------------
# Hires written straight into the database (the demo data has none): 40 in every scenario, or
# ACME_DRILL_HIRES for the restore drill at scale (run.sh drill: 2,000,000).
SEED_HIRES_COUNT = int(os.environ.get("ACME_DRILL_HIRES") or 40)
SEED_HIRES = f"""
INSERT INTO hires (reference, customer_id, car_id, pickup_branch_id, return_branch_id, start_at,
                   end_at, state, price_lines, total_pence, deposit_pence, currency,
                   idempotency_key, created_at, updated_at, version)
SELECT 'DT' || lpad(g::text, 7, '0'), u.id, c.id, c.home_branch_id, c.home_branch_id,
       timestamptz '2026-03-01 09:00Z' + (g % 200) * interval '1 day',
       timestamptz '2026-03-04 09:00Z' + (g % 200) * interval '1 day',
       'closed', '[]', 10000 + g, 20000, 'GBP', 'deploy-test-' || g,
       timestamptz '2026-02-01 09:00Z', timestamptz '2026-02-01 09:00Z', 1
FROM generate_series(1, {SEED_HIRES_COUNT}) AS g
CROSS JOIN LATERAL (SELECT id FROM users WHERE email = 'customer@demo.acme') AS u
CROSS JOIN LATERAL (SELECT id, home_branch_id FROM cars ORDER BY id OFFSET g % 20 LIMIT 1) AS c
ON CONFLICT DO NOTHING;
"""
# Long enough for SEED_HIRES_COUNT rows (seeding, dumping, uploading 2,000,000 hires takes minutes).
SEED_TIMEOUT_SECONDS = 300 + SEED_HIRES_COUNT // 1000
# Every table's row count and a checksum of the hires (an md5 of each row's md5: a string_agg of
# the rows themselves would pass PostgreSQL's 1 GB limit at 2,000,000 hires).
SNAPSHOT = """
SELECT table_name || '=' || (xpath('/row/c/text()', query_to_xml(
         format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text
FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name;
SELECT 'hires_md5=' || md5(string_agg(md5(h::text), '' ORDER BY h.id)) FROM hires AS h;
"""


def newest_backup(ip: str, kind: str) -> str:
    return ssh(ip, f"sudo ls -1t /var/backups/acme/{kind}/ | head -1").stdout.strip()


def playbook(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["ansible-playbook", "-i", INVENTORY, *args], cwd=ANSIBLE_DIR,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result


def test_backup_then_restore_after_a_table_is_dropped():
    ssh(WEB_IP, "sudo acme-flask acme demo")
    sql(SEED_HIRES)
    ssh(WEB_IP, f"sudo -u acme sh -c 'echo car-photo > /srv/acme/shared/uploads/{UPLOAD_NAME}'")
    before = sql(SNAPSHOT)
    assert "hires=40" in before.splitlines(), before

    # The nightly services, started now, as an admin would to test them.
    ssh(DB_IP, "sudo systemctl start acme-backup-db.service")
    ssh(WEB_IP, "sudo systemctl start acme-backup-uploads.service")
    dump, archive = newest_backup(DB_IP, "db"), newest_backup(WEB_IP, "uploads")
    # Each told the node exporter when it succeeded (the "backup older than 26 h" alert).
    for ip, kind in ((DB_IP, "db"), (WEB_IP, "uploads")):
        metrics = ssh(WEB_IP, f"curl -fsS http://{ip}:9100/metrics").stdout
        stamp = re.search(rf'^acme_backup_last_success_timestamp_seconds{{kind="{kind}"}} (\S+)$', metrics, re.M)
        assert stamp and time.time() - float(stamp.group(1)) < 300, (kind, stamp)  # 1.79e+09
    assert re.fullmatch(r"acme-\d{8}T\d{6}Z\.dump", dump)
    assert ssh(DB_IP, f"sudo stat -c %U:%a /var/backups/acme/db/{dump}").stdout.strip() == "acme_backup:640"

    sql("DROP TABLE hires CASCADE;")
    ssh(WEB_IP, f"sudo rm /srv/acme/shared/uploads/{UPLOAD_NAME}")
    assert "hires=" not in sql(SNAPSHOT.split(";")[0] + ";")

    playbook("restore.yml", "-e", f"backup={dump}", "-e", f"uploads_backup={archive}")

    assert sql(SNAPSHOT) == before
    assert ssh(WEB_IP, f"sudo cat /srv/acme/shared/uploads/{UPLOAD_NAME}").stdout.strip() == "car-photo"
    assert healthy()
    assert ping_worker()["host"] == WORKER_HOST


def test_backup_rotation_keeps_the_newest_and_drops_the_old():
    old = [f"acme-20200101T0{n}0000Z.dump" for n in range(3)]
    for name in old:
        ssh(DB_IP, f"sudo -u acme_backup cp /var/backups/acme/db/{newest_backup(DB_IP, 'db')} "
                   f"/var/backups/acme/db/{name} && sudo touch -d '40 days ago' /var/backups/acme/db/{name}")
    ssh(DB_IP, "sudo systemctl start acme-backup-db.service")
    left = ssh(DB_IP, "sudo ls -1 /var/backups/acme/db/").stdout.split()
    assert not set(old) & set(left), left
    assert len(left) >= 2  # this run's dumps stay


# --- alerts: the alert that acts (the three-host scenario) ------------------------------------------
SMTP_SINK = "acme-test-smtp"


def start_smtp_sink() -> None:
    """A throw-away SMTP server on the monitoring host (the test inventory's smarthost):
    every message it receives goes to its journal."""
    ssh(WEB_IP, f"sudo systemctl stop {SMTP_SINK} 2>/dev/null; sudo systemd-run --unit {SMTP_SINK} "
        "--collect -p Environment=PYTHONWARNINGS=ignore "
        "python3 -u -m smtpd -n -c DebuggingServer 127.0.0.1:2525")
    wait_until("the SMTP sink to listen", lambda: ssh(
        WEB_IP, "ss -Hltn 'sport = :2525'").stdout.strip(), timeout=20)


def mails() -> str:
    return ssh(WEB_IP, f"sudo journalctl -u {SMTP_SINK} -o cat").stdout


def live_release() -> str:
    return ssh(WEB_IP, "cat /srv/acme/current/REVISION").stdout.strip()


def receiver_log() -> str:
    return ssh(WEB_IP, "sudo journalctl -u acme-alert-actions -o cat").stdout


class HomePageLoad:
    """Users asking for the home page, several a second, until stopped; counts the answers."""

    def __init__(self):
        self.stop, self.codes = threading.Event(), []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        session = requests.Session()
        while not self.stop.is_set():
            try:
                self.codes.append(session.get(URL + "/", verify=CA, timeout=HTTP_TIMEOUT_SECONDS).status_code)
            except requests.RequestException:
                self.codes.append(0)
            time.sleep(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def test_alerts_a_release_failing_on_one_route_is_rolled_back_by_its_alert_once():
    assert BROKEN_HOME_RELEASE and EXPECT_RELEASE, "run through tests/deploy/run.sh three"
    start_smtp_sink()
    assert live_release() == BROKEN_HOME_RELEASE  # deploy.yml took it: /healthz is fine
    assert get("/").status_code == 500
    t0 = time.monotonic()
    with HomePageLoad() as load:
        wait_until("AcmeHigh5xxRatio to fire", lambda: firing("AcmeHigh5xxRatio"), timeout=120, pause=2)
        fired = time.monotonic() - t0
        wait_until(f"the receiver to roll back to {EXPECT_RELEASE}",
                   lambda: live_release() == EXPECT_RELEASE, timeout=120, pause=1)
        rolled_back = time.monotonic() - t0
        wait_until("the home page to answer 200 again", lambda: get("/").status_code == 200)
    assert 500 in load.codes and load.codes[-1] == 200, load.codes[-20:]
    # (It logs once the workers have restarted and /healthz answered: after the switch.)
    wait_until("the receiver to log its rollback", lambda: f"rolled back from {BROKEN_HOME_RELEASE} "
               f"to {EXPECT_RELEASE}" in receiver_log(), timeout=240, pause=2)
    releases = ssh(WEB_IP, "sudo /usr/local/libexec/acme/acme-release list").stdout
    assert f"{BROKEN_HOME_RELEASE}\tfailed" in releases, releases
    assert ping_worker()["release"] == f"/srv/acme/releases/{EXPECT_RELEASE}"
    # The admin is told: by the receiver (what it did) and by Alertmanager (the alert).
    wait_until("the admin's emails", lambda: "AcmeHigh5xxRatio: rolled back from" in mails()
               and "[FIRING:1] AcmeHigh5xxRatio" in mails(), timeout=90, pause=2)
    wait_until("AcmeHigh5xxRatio to resolve", lambda: not firing("AcmeHigh5xxRatio"),
               timeout=180, pause=3)
    resolved = time.monotonic() - t0
    print(f"\nalert fired after {fired:.0f} s, rolled back after {rolled_back:.0f} s, "
          f"resolved after {resolved:.0f} s (from the first failing request)")
    status = ssh(WEB_IP, "sudo acme-alert-actions status").stdout
    assert "disarmed" in status, status

    # The same release live again without a person deploying it: the receiver only tells.
    ssh(WEB_IP, f"sudo /usr/local/libexec/acme/acme-release activate {BROKEN_HOME_RELEASE} && "
        "sudo systemctl restart acme-web.service")
    wait_until("the broken home page", lambda: get("/").status_code == 500)
    with HomePageLoad():
        wait_until("AcmeHigh5xxRatio to fire again", lambda: firing("AcmeHigh5xxRatio"),
                   timeout=150, pause=2)
        wait_until("the receiver to decline", lambda: "no automatic rollback: the last one"
                   in receiver_log(), timeout=90, pause=2)
    assert live_release() == BROKEN_HOME_RELEASE
    wait_until("the admin to be told it did nothing", lambda: "no automatic rollback" in mails(),
               timeout=90, pause=2)
    # A person rolls back (rollback.yml): that arms it again.
    playbook("rollback.yml", "-e", f"to={EXPECT_RELEASE}")
    assert live_release() == EXPECT_RELEASE
    assert ssh(WEB_IP, "sudo acme-alert-actions status").stdout.splitlines()[0] == "automatic rollback: armed"


# --- offsite / drill: backups off the host, and a fresh db host restored from there -----------------
TARGET_IP = os.environ.get("ACME_BACKUP_TARGET_IP", "")
DRILL_FILE = os.environ.get("ACME_DRILL_SNAPSHOT", "")  # the data as it was, for the drill


def restic(ip: str, args: str, *, password: str = "", check: bool = True) -> subprocess.CompletedProcess:
    """restic as the backup user with the host's repository settings (roles/offsite)."""
    override = f"RESTIC_PASSWORD={shlex.quote(password)} " if password else ""
    script = (f'set -a; . /etc/acme/restic.env; set +a; {override}'
              f'restic -o sftp.command="$RESTIC_SFTP_COMMAND" {args}')
    return ssh(ip, "sudo -u acme_backup bash -c " + shlex.quote(script), check=check)


def test_offsite_copies_go_encrypted_to_the_target():  # ("backup" would put it in -k backup)
    assert TARGET_IP and DRILL_FILE, "run through tests/deploy/run.sh three"
    ssh(WEB_IP, "sudo acme-flask acme demo")
    sql(SEED_HIRES, timeout=SEED_TIMEOUT_SECONDS)
    ssh(WEB_IP, f"sudo -u acme sh -c 'echo car-photo > /srv/acme/shared/uploads/{UPLOAD_NAME}'")
    before = sql(SNAPSHOT, timeout=SEED_TIMEOUT_SECONDS)
    assert f"hires={SEED_HIRES_COUNT}" in before.splitlines(), before
    t0 = time.monotonic()
    ssh(DB_IP, "sudo systemctl start acme-backup-db.service", timeout=SEED_TIMEOUT_SECONDS)
    print(f"\nthe nightly backup of {SEED_HIRES_COUNT} hires (dump and upload off the host) "
          f"took {time.monotonic() - t0:.0f} s")
    ssh(WEB_IP, "sudo systemctl start acme-backup-uploads.service")
    journal = ssh(DB_IP, "sudo journalctl -u acme-backup-db.service -o cat | tail -20").stdout
    assert "copied" in journal and "off the host" in journal, journal
    snapshots = json.loads(restic(DB_IP, "snapshots --json").stdout)
    assert {"db", "uploads"} <= {t for s in snapshots for t in s.get("tags", [])}, snapshots
    hostnames = {s["hostname"] for s in snapshots}
    assert len(hostnames) == 2 and WORKER_HOST in hostnames, snapshots  # the db and web hosts
    # Encrypted: without the password the repository says nothing; its files are not readable.
    assert restic(DB_IP, "snapshots", password="not-the-password", check=False).returncode != 0
    config = ssh(TARGET_IP, "sudo cat /srv/restic/acme/config | base64 -w0").stdout
    assert b"chunker_polynomial" not in base64.b64decode(config)
    # The account on the target takes SFTP only (no shell for whoever holds a host's key).
    shell = ssh(DB_IP, "sudo -u acme_backup ssh -i /var/backups/acme/.ssh/id_ed25519 -o BatchMode=yes "
                f"-o UserKnownHostsFile=/var/backups/acme/.ssh/known_hosts acme-restic@{TARGET_IP} "
                "echo a-shell </dev/null", check=False, timeout=60)
    assert "a-shell" not in shell.stdout
    Path(DRILL_FILE).write_text(before)
    ssh(WEB_IP, f"sudo rm /srv/acme/shared/uploads/{UPLOAD_NAME}")  # the drill brings it back


def test_drill_a_fresh_db_host_has_everything_back_from_off_the_host():
    """After run.sh replaced the db host by a fresh one, site.yml and restore.yml -e backup=offsite."""
    before = Path(DRILL_FILE).read_text()
    assert sql(SNAPSHOT, timeout=SEED_TIMEOUT_SECONDS) == before
    assert ssh(WEB_IP, f"sudo cat /srv/acme/shared/uploads/{UPLOAD_NAME}").stdout.strip() == "car-photo"
    assert healthy()
    assert ping_worker()["host"] == WORKER_HOST


# --- replica / failover / reversed: the hot standby (the three-host scenario) -----------------------
STANDBY_IP = os.environ.get("ACME_STANDBY_IP", "")
STANDBY_HOST = os.environ.get("ACME_STANDBY_HOST", "")
REPLICATION_TIMEOUT_SECONDS = 10  # "a row written on the primary is read on the standby within seconds"


def sql_on(ip: str, query: str) -> str:
    return ssh(ip, "sudo -u postgres psql -d acme -qAt -v ON_ERROR_STOP=1 -f -", input=query).stdout.strip()


def read_on_standby_soon(ip: str, reference: str) -> float:
    """Seconds until the hire `reference` can be read on the standby at `ip`."""
    t0 = time.monotonic()
    wait_until(f"hire {reference} on the standby {ip}", lambda: sql_on(
        ip, f"SELECT count(*) FROM hires WHERE reference = '{reference}'") == "1",
        timeout=REPLICATION_TIMEOUT_SECONDS, pause=0.2)
    return time.monotonic() - t0


def booking_sql(reference: str, n: int) -> str:
    return f"""
    INSERT INTO hires (reference, customer_id, car_id, pickup_branch_id, return_branch_id, start_at,
                       end_at, state, price_lines, total_pence, deposit_pence, currency,
                       idempotency_key, created_at, updated_at, version)
    SELECT '{reference}', u.id, c.id, c.home_branch_id, c.home_branch_id,
           timestamptz '2031-01-01 09:00Z' + {n} * interval '1 day',
           timestamptz '2031-01-04 09:00Z' + {n} * interval '1 day',
           'confirmed', '[]', 10000, 20000, 'GBP', 'deploy-test-{reference}', now(), now(), 1
    FROM users AS u
    CROSS JOIN LATERAL (SELECT id, home_branch_id FROM cars ORDER BY id OFFSET {n % 20} LIMIT 1) AS c
    WHERE u.email = 'customer@demo.acme'
    RETURNING reference"""


def test_replica_a_row_written_on_the_primary_is_read_on_the_standby_within_seconds():
    assert STANDBY_IP, "run through tests/deploy/run.sh three"
    assert sql_on(STANDBY_IP, "SELECT pg_is_in_recovery()") == "t"
    state = sql("SELECT application_name, state, sync_state FROM pg_stat_replication")
    assert state.split("|")[1:] == ["streaming", "async"], state
    reference = f"SB{int(time.time()) % 10**8:08d}"
    assert sql(booking_sql(reference, 500)) == reference
    took = read_on_standby_soon(STANDBY_IP, reference)
    print(f"\na row written on the primary was read on the standby after {took:.2f} s")
    # Read-only there: nothing can write to a standby.
    denied = ssh(STANDBY_IP, "sudo -u postgres psql -d acme -c \"DELETE FROM hires WHERE reference = "
                 f"'{reference}'\"", check=False)
    assert denied.returncode != 0 and "read-only" in denied.stderr, denied


# Bookings written by the app's database login from the web host, one after the other, each with a
# fresh connection to whatever DATABASE_URL /etc/acme/acme.env names at that moment (failover.yml
# rewrites it). "ok REF" is printed only after the commit returned: a confirmed booking.
BOOKING_STREAM = r'''
import os, sys, time, psycopg
seconds, sql_template = float(sys.argv[1]), sys.stdin.read()
STOP = "/tmp/acme-booking-stream.stop"   # the test creates it: finish the booking under way, exit
def url():
    for line in open("/etc/acme/acme.env"):
        if line.startswith("DATABASE_URL="):
            return line.split("=", 1)[1].strip().strip('"')
deadline, n = time.monotonic() + seconds, 0
while time.monotonic() < deadline and not os.path.exists(STOP):
    n += 1
    ref = f"FO{n:06d}"
    try:
        conn = psycopg.connect(url(), connect_timeout=3)
    except Exception as exc:
        print("refused", ref, type(exc).__name__, flush=True)
        time.sleep(0.2)
        continue
    try:
        with conn:
            got = conn.execute(sql_template.replace("@REF@", ref).replace("@N@", str(1000 + n))).fetchone()[0]
        print("ok", got, flush=True)
    except Exception as exc:
        print("unknown", ref, type(exc).__name__, str(exc).splitlines()[0][:80], flush=True)
        time.sleep(0.2)
    time.sleep(0.05)
'''


def test_failover_under_a_stream_of_bookings_loses_no_confirmed_booking():
    assert STANDBY_IP and STANDBY_HOST, "run through tests/deploy/run.sh three"
    template = booking_sql("@REF@", 0).replace("+ 0 * interval", "+ @N@ * interval").replace(
        "OFFSET 0 LIMIT", "OFFSET @N@ % 20 LIMIT")
    ssh(WEB_IP, "sudo rm -f /tmp/acme-booking-stream.stop && sudo tee /tmp/acme-booking-stream.py >/dev/null",
        input=BOOKING_STREAM)
    stream_seconds = 400
    stream = subprocess.Popen(
        ["ssh", "-i", SSH_KEY, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"debian@{WEB_IP}",
         f"sudo /srv/acme/current/venv/bin/python /tmp/acme-booking-stream.py {stream_seconds}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stream.stdin.write(template)
    stream.stdin.close()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stream.stdout.readline, "")), daemon=True)
    reader.start()
    wait_until("bookings to flow", lambda: sum(l.startswith("ok ") for l in lines) >= 20, timeout=60)
    t0 = time.monotonic()
    result = playbook("failover.yml")
    took = time.monotonic() - t0
    confirmed_at_switch = sum(l.startswith("ok ") for l in lines)
    # The app works on the new primary: more bookings are confirmed there.
    wait_until("bookings confirmed on the new primary", lambda: sum(
        l.startswith("ok ") for l in lines) >= confirmed_at_switch + 20, timeout=60)
    # Stopped between two bookings, so that every answer it had is read here.
    ssh(WEB_IP, "sudo touch /tmp/acme-booking-stream.stop")
    stream.wait(timeout=60)
    reader.join(timeout=10)
    stream.stdout.close()
    stream.stderr.close()
    confirmed = {l.split()[1] for l in lines if l.startswith("ok ")}
    unknown = {l.split()[1] for l in lines if l.startswith("unknown ")}
    present = set(sql_on(STANDBY_IP, "SELECT reference FROM hires WHERE reference LIKE 'FO%'").split())
    assert sql_on(STANDBY_IP, "SELECT pg_is_in_recovery()") == "f"  # promoted
    assert confirmed <= present, f"confirmed bookings lost: {sorted(confirmed - present)[:10]}"
    assert present - confirmed <= unknown  # only those whose commit's answer never came
    print(f"\nfailover.yml took {took:.0f} s; {len(confirmed)} bookings confirmed "
          f"({confirmed_at_switch} before it ended), {len(present)} in the new primary, "
          f"{len(unknown)} with no answer, "
          f"{sum(l.startswith('refused ') for l in lines)} connections refused meanwhile")
    assert "is the primary now" in result.stdout
    # The old primary is stopped and stays so across a reboot; the app and workers use the new one.
    assert ssh(DB_IP, "systemctl is-active postgresql; systemctl is-enabled postgresql",
               check=False).stdout.split() == ["inactive", "disabled"]
    assert f"@{STANDBY_IP}:" in ssh(WEB_IP, "sudo grep ^DATABASE_URL= /etc/acme/acme.env").stdout
    assert healthy()
    assert ping_worker()["host"] == WORKER_HOST   # Redis (on the old primary's host) kept its jobs


def test_reversed_the_old_primary_is_rebuilt_as_the_new_ones_standby():
    """After site.yml -e acme_db_primary=<the promoted standby>."""
    assert sql_on(DB_IP, "SELECT pg_is_in_recovery()") == "t"
    assert ssh(DB_IP, "systemctl is-enabled postgresql").stdout.strip() == "enabled"
    reference = f"RB{int(time.time()) % 10**8:08d}"
    assert sql_on(STANDBY_IP, booking_sql(reference, 700)) == reference
    took = read_on_standby_soon(DB_IP, reference)
    print(f"\nthe rebuilt standby read a new row after {took:.2f} s")
    assert healthy()
