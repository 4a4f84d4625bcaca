"""What an admin and a user would notice on the hosts the deploy test provisioned.

Run by tests/deploy/run.sh from this machine against the booted Debian hosts (not part of the
ordinary suite: the file name does not match test_*.py). Phases, picked with -k:
  live      HTTPS pages, /healthz, a worker processing a job, redirect, headers, firewall,
            the scheduler's minutely tick, the chain watcher (where a chain is configured) ...
  restart   SIGKILL Gunicorn's master, a Gunicorn worker, an RQ worker (and the chain
            watcher where it runs): systemd brings them back
  backup    back up, drop a table, restore.yml, compare row counts and the hires checksum
The driver exports where the hosts are (ACME_* variables below).
"""

from __future__ import annotations

import json
import os
import re
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


def sql(query: str) -> str:
    """Run SQL in the app's database as the postgres superuser; return psql's unaligned output."""
    return ssh(DB_IP, "sudo -u postgres psql -d acme -qAt -v ON_ERROR_STOP=1 -f -", input=query).stdout.strip()


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
SEED_HIRES = """
INSERT INTO hires (reference, customer_id, car_id, pickup_branch_id, return_branch_id, start_at,
                   end_at, state, price_lines, total_pence, deposit_pence, currency,
                   idempotency_key, created_at, updated_at, version)
SELECT 'DT' || lpad(g::text, 6, '0'), u.id, c.id, c.home_branch_id, c.home_branch_id,
       timestamptz '2026-03-01 09:00Z' + g * interval '1 day',
       timestamptz '2026-03-04 09:00Z' + g * interval '1 day',
       'closed', '[]', 10000 + g, 20000, 'GBP', 'deploy-test-' || g,
       timestamptz '2026-02-01 09:00Z', timestamptz '2026-02-01 09:00Z', 1
FROM generate_series(1, 40) AS g
CROSS JOIN LATERAL (SELECT id FROM users WHERE email = 'customer@demo.acme') AS u
CROSS JOIN LATERAL (SELECT id, home_branch_id FROM cars ORDER BY id OFFSET g % 20 LIMIT 1) AS c
ON CONFLICT DO NOTHING;
"""
SNAPSHOT = """
SELECT table_name || '=' || (xpath('/row/c/text()', query_to_xml(
         format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text
FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name;
SELECT 'hires_md5=' || md5(string_agg(h::text, '|' ORDER BY h.id)) FROM hires AS h;
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
