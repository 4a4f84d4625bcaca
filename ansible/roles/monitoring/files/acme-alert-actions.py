#!/usr/bin/python3
# Installed by Ansible (roles/monitoring): changes here are overwritten.
"""The alert that acts: Alertmanager's webhook receiver on the monitoring host.

  acme-alert-actions serve CONFIG.json   answer Alertmanager on 127.0.0.1 (acme-alert-actions.service)
  acme-alert-actions status              armed or disarmed, and what it last did
  acme-alert-actions rearm               a person has looked: allow the next automatic rollback

When an alert labelled action="rollback" (AcmeHigh5xxRatio) fires, and the live release went
live less than `window_seconds` ago, it does what rollback.yml does on this host: switch to the
release that was live before (acme-release previous / activate), restart Gunicorn and the
workers, check /healthz, mark the failed release so nothing rolls back to it, and tells the
admin (journal and email). Then it disarms itself: never two automatic rollbacks in a row
without a person (deploy.yml, rollback.yml and `rearm` arm it again). An alert outside the
window, or while disarmed, is only told. Alertmanager repeats notifications: each firing
(fingerprint + start) is handled once.
"""

import datetime
import email.message
import hmac
import http.server
import json
import os
import smtplib
import subprocess
import sys
import threading
import time

SMTP_TIMEOUT_SECONDS = 10
SMTP_RETRY_PAUSES_SECONDS = (2, 5)
COMMAND_TIMEOUT_SECONDS = 120
HEALTH_TRIES, HEALTH_PAUSE_SECONDS = 15, 2
MAX_BODY_BYTES = 1024 * 1024
HANDLED_KEPT = 500
DEFAULT_CONFIG = "/etc/acme/alert-actions.json"

_lock = threading.Lock()  # one decision at a time


def log(message):
    print(message, flush=True)  # journald


def load(config_path):
    with open(config_path, encoding="utf-8") as f:
        return json.load(f)


# --- memory: armed or not, and which firings were handled ------------------------------------
def state_path(cfg, name):
    return os.path.join(cfg["state_dir"], name)


def disarmed(cfg):
    try:
        with open(state_path(cfg, "disarmed"), encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def write_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def handled(cfg):
    try:
        with open(state_path(cfg, "handled.json"), encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return []


def remember(cfg, key):
    keys = [k for k in handled(cfg) if k != key][-(HANDLED_KEPT - 1):] + [key]
    write_atomic(state_path(cfg, "handled.json"), json.dumps(keys))


def note_last(cfg, text):
    write_atomic(state_path(cfg, "last"), f"{now_iso()} {text}\n")


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the release tools (the same as rollback.yml uses) ----------------------------------------
def run(argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout.strip()


def live_since(cfg, release):
    """When `release` last went live (acme-release's history), as a UTC datetime, or None."""
    since = None
    try:
        with open(cfg["history_file"], encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] == "activate" and parts[2] == release:
                    since = parts[0]
    except FileNotFoundError:
        return None
    if since is None:
        return None
    return datetime.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def healthy(cfg):
    for _ in range(HEALTH_TRIES):
        result = subprocess.run(
            ["curl", "-fsS", "--max-time", "10", "--unix-socket", cfg["web_socket"],
             "http://localhost/healthz"], capture_output=True, text=True)
        if result.returncode == 0:
            return True
        time.sleep(HEALTH_PAUSE_SECONDS)
    return False


def roll_back(cfg, bad):
    """rollback.yml's switch on this host: returns the release now live."""
    tool = cfg["release_tool"]
    good = run([tool, "previous"])
    run([tool, "activate", good])
    if cfg["is_web"]:
        subprocess.run(["systemctl", "reset-failed", "acme-web.service", "acme-web.socket"],
                       capture_output=True, timeout=COMMAND_TIMEOUT_SECONDS)
        run(["systemctl", "restart", "acme-web.service"])
    if cfg["is_worker"]:
        run(["systemctl", "restart", "acme-workers.target"])
    run([tool, "mark-failed", bad])
    if cfg["is_web"] and not healthy(cfg):
        raise RuntimeError(f"rolled back to {good}, but /healthz does not answer 200")
    return good


# --- telling the admin -----------------------------------------------------------------------
def tell(cfg, key, subject, body):
    log(f"{subject}: {body}")
    if not cfg.get("admin_email"):
        return
    message = email.message.EmailMessage()
    message["From"], message["To"] = cfg["email_from"], cfg["admin_email"]
    message["Subject"] = f"[ACME {cfg['host']}] {subject}"
    # The idempotency key of this notice: a retried send carries the same Message-ID.
    message["Message-ID"] = f"<acme-alert-action-{key}@{cfg['host']}>"
    message.set_content(body)
    for pause in (*SMTP_RETRY_PAUSES_SECONDS, None):
        try:
            with smtplib.SMTP(cfg["smtp_host"], cfg["smtp_port"], timeout=SMTP_TIMEOUT_SECONDS) as smtp:
                if cfg.get("smtp_starttls"):
                    smtp.starttls()
                if cfg.get("smtp_username"):
                    smtp.login(cfg["smtp_username"], cfg["smtp_password"])
                smtp.send_message(message)
            return
        except (OSError, smtplib.SMTPException) as exc:
            if pause is None:
                log(f"could not email the admin: {type(exc).__name__}: {exc}")
                return
            time.sleep(pause)


# --- the decision -----------------------------------------------------------------------------
def decide(cfg, alert, now=None):
    """Handle one alert of Alertmanager's payload; returns what was done (for the log)."""
    if alert.get("status") != "firing" or alert.get("labels", {}).get("action") != "rollback":
        return "nothing to do"
    name = alert["labels"].get("alertname", "?")
    key = "".join(c for c in f"{alert.get('fingerprint', '')}-{alert.get('startsAt', '')}"
                  if c.isalnum() or c in "-")
    with _lock:
        if key in handled(cfg):
            return "already handled"
        remember(cfg, key)
        now = now or datetime.datetime.now(datetime.timezone.utc)
        tool = cfg["release_tool"]
        live = run([tool, "current"])
        since = live_since(cfg, live) if live else None
        age = (now - since).total_seconds() if since else None
        window = cfg["window_seconds"]
        if not cfg.get("enabled", True):
            action = f"automatic rollback is off; {live} stays live"
        elif age is None or age > window:
            action = (f"{live} went live {'at an unknown time' if age is None else f'{age:.0f} s ago'}, "
                      f"outside the {window} s after a deploy: no automatic rollback")
        elif disarmed(cfg):
            action = (f"no automatic rollback: the last one ({disarmed(cfg)}) has not been seen by a "
                      f"person yet (deploy, rollback.yml or `acme-alert-actions rearm` allows the next)")
        else:
            try:
                good = roll_back(cfg, live)
            except Exception as exc:  # noqa: BLE001 - whatever failed, a person must look now
                action = f"automatic rollback of {live} FAILED: {exc}"
                write_atomic(state_path(cfg, "disarmed"), f"{now_iso()} failed rollback of {live}")
            else:
                action = f"rolled back from {live} to {good} ({age:.0f} s after {live} went live)"
                if cfg.get("other_app_hosts"):
                    action += (f"; on this host only: run rollback.yml for "
                               f"{', '.join(cfg['other_app_hosts'])}")
                write_atomic(state_path(cfg, "disarmed"), f"{now_iso()} {live} -> {good}")
        note_last(cfg, action)
    summary = alert.get("annotations", {}).get("summary", "")
    tell(cfg, key, f"{name}: {action}", f"{name} fired at {alert.get('startsAt')}: {summary}\n\n{action}.\n")
    return action


class Handler(http.server.BaseHTTPRequestHandler):
    cfg: dict = {}
    token = ""

    def do_POST(self):  # noqa: N802 - http.server's name
        sent = self.headers.get("Authorization", "")
        if self.path != "/alerts" or not hmac.compare_digest(sent, f"Bearer {self.token}"):
            self.send_error(403)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY_BYTES:
            self.send_error(400)
            return
        try:
            payload = json.loads(self.rfile.read(length))
            alerts = payload["alerts"]
        except (ValueError, KeyError, TypeError):
            self.send_error(400)
            return
        for alert in alerts:
            try:
                outcome = decide(self.cfg, alert)
            except Exception as exc:  # noqa: BLE001 - answer Alertmanager; it retries on 5xx
                log(f"alert not handled: {type(exc).__name__}: {exc}")
                self.send_error(500)
                return
            if outcome not in ("nothing to do", "already handled"):
                log(f"{alert.get('labels', {}).get('alertname')}: {outcome}")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):  # requests are not news; decisions are logged
        pass


def serve(config_path):
    cfg = load(config_path)
    with open(cfg["token_file"], encoding="utf-8") as f:
        Handler.token = f.read().strip()
    Handler.cfg = cfg
    os.makedirs(cfg["state_dir"], mode=0o700, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", cfg["port"]), Handler)
    log(f"listening on 127.0.0.1:{cfg['port']}; automatic rollback "
        f"{'disarmed (' + disarmed(cfg) + ')' if disarmed(cfg) else 'armed'}")
    server.serve_forever()


def main(argv):
    if not argv or argv[0] not in ("serve", "status", "rearm"):
        sys.exit(__doc__)
    cfg_path = argv[1] if len(argv) > 1 else DEFAULT_CONFIG
    if argv[0] == "serve":
        serve(cfg_path)
        return
    cfg = load(cfg_path)
    if argv[0] == "rearm":
        try:
            os.unlink(state_path(cfg, "disarmed"))
        except FileNotFoundError:
            pass
    print(f"automatic rollback: {'disarmed since ' + disarmed(cfg) if disarmed(cfg) else 'armed'}")
    try:
        with open(state_path(cfg, "last"), encoding="utf-8") as f:
            print(f"last action: {f.read().strip()}")
    except FileNotFoundError:
        print("last action: none")


if __name__ == "__main__":
    main(sys.argv[1:])
