"""The alert receiver that rolls back (ansible/roles/monitoring/files/acme-alert-actions.py),
run here against the real release tool (acme-release, rendered into a temporary root) without
the services: when it rolls back, when it only tells, and that it never does so twice in a row.
The deploy test (tests/deploy/run.sh three) proves the same end to end on real hosts."""

from __future__ import annotations

import datetime
import importlib.util
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECEIVER = ROOT / "ansible/roles/monitoring/files/acme-alert-actions.py"
RELEASE_TOOL = ROOT / "ansible/roles/app/templates/acme-release.py.j2"

spec = importlib.util.spec_from_file_location("acme_alert_actions", RECEIVER)
receiver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(receiver)


@pytest.fixture
def host(tmp_path):
    """A release root with two releases, `good` then `bad` live, and the receiver's config."""
    root = tmp_path / "srv"
    (root / "releases").mkdir(parents=True)
    tool = tmp_path / "acme-release"
    tool.write_text(RELEASE_TOOL.read_text()
                    .replace("{{ ansible_managed }}", "test")
                    .replace("{{ acme_root }}", str(root))
                    .replace("{{ acme_releases_dir }}", str(root / "releases"))
                    .replace("{{ acme_current_dir }}", str(root / "current")))
    tool.chmod(0o755)
    for rid in ("good", "bad"):
        (root / "releases" / rid).mkdir()
        (root / "releases" / rid / ".complete").touch()
        subprocess.run([sys.executable, str(tool), "activate", rid], check=True, capture_output=True)
    (tmp_path / "token").write_text("s3cret\n")
    state = tmp_path / "state"
    state.mkdir()
    cfg = {"port": 0, "token_file": str(tmp_path / "token"), "state_dir": str(state),
           "enabled": True, "window_seconds": 1800, "release_tool": str(tool),
           "history_file": str(root / "history.log"), "web_socket": str(tmp_path / "none.sock"),
           "is_web": False, "is_worker": False, "host": "test-host", "other_app_hosts": [],
           "admin_email": "", "email_from": "", "smtp_host": "", "smtp_port": 25,
           "smtp_username": "", "smtp_password": "", "smtp_starttls": False}
    return cfg


def live(cfg) -> str:
    return subprocess.run([cfg["release_tool"], "current"], capture_output=True, text=True,
                          check=True).stdout.strip()


def alert(n: int = 1, status: str = "firing", action: str = "rollback") -> dict:
    return {"status": status, "labels": {"alertname": "AcmeHigh5xxRatio", "action": action},
            "fingerprint": "f00d", "startsAt": f"2026-12-05T00:0{n}:00Z",
            "annotations": {"summary": "too many 500s"}}


def test_fresh_release_is_rolled_back_then_never_twice_without_a_person(host):
    outcome = receiver.decide(host, alert(1))
    assert outcome.startswith("rolled back from bad to good")
    assert live(host) == "good"
    listing = subprocess.run([host["release_tool"], "list"], capture_output=True, text=True).stdout
    assert "bad\tfailed" in listing
    # Alertmanager repeats the same firing: handled once.
    assert receiver.decide(host, alert(1)) == "already handled"
    # `bad` made live again by hand (no deploy, no rollback.yml): the next firing is only told.
    subprocess.run([host["release_tool"], "activate", "bad"], check=True, capture_output=True)
    assert receiver.decide(host, alert(2)).startswith("no automatic rollback: the last one")
    assert live(host) == "bad"
    # A person re-arms it (as deploy.yml and rollback.yml do): the next one acts again.
    receiver.main(["rearm", _write_cfg(host)])
    assert receiver.decide(host, alert(3)).startswith("rolled back from bad to good")


def test_outside_the_window_after_a_deploy_it_only_tells(host):
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1801)
    outcome = receiver.decide(host, alert(1), now=later)
    assert "outside the 1800 s after a deploy" in outcome
    assert live(host) == "bad"


def test_resolved_alerts_and_other_alerts_change_nothing(host):
    assert receiver.decide(host, alert(1, status="resolved")) == "nothing to do"
    assert receiver.decide(host, alert(1, action="")) == "nothing to do"
    assert live(host) == "bad"


def _write_cfg(cfg) -> str:
    path = Path(cfg["state_dir"]).parent / "alert-actions.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def test_only_alertmanager_with_the_token_is_heard(host):
    receiver.Handler.cfg, receiver.Handler.token = host, "s3cret"
    server = receiver.http.server.ThreadingHTTPServer(("127.0.0.1", 0), receiver.Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    body = json.dumps({"alerts": [alert(1)]}).encode()
    try:
        for token in ("", "Bearer wrong"):
            request = urllib.request.Request(url, data=body, headers={"Authorization": token})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            refused.value.close()
            assert refused.value.code == 403
        assert live(host) == "bad"
        request = urllib.request.Request(url, data=b"{not json", headers={"Authorization": "Bearer s3cret"})
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(request, timeout=10)
        bad.value.close()
        assert bad.value.code == 400
        request = urllib.request.Request(url, data=body, headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        assert live(host) == "good"
    finally:
        server.shutdown()
        server.server_close()
