"""Request a URL over and over until SIGTERM; write how many requests failed (as JSON).

The deploy test runs it during a deploy and a rollback: Gunicorn must reload without a single
request failing. Usage: hammer.py URL CA_FILE OUT.json
"""

from __future__ import annotations

import json
import signal
import sys
import time

import requests

PAUSE_SECONDS = 0.05
TIMEOUT_SECONDS = 60  # Nginx's proxy_read_timeout: a request may wait while Gunicorn restarts


def main(url: str, ca: str, out: str) -> None:
    stop = False

    def request_stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    done, failed, errors = 0, 0, []
    session = requests.Session()
    while not stop:
        try:
            r = session.get(url, verify=ca, timeout=TIMEOUT_SECONDS)
            ok = r.status_code == 200
            error = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            ok, error = False, type(exc).__name__
        done += 1
        if not ok:
            failed += 1
            errors.append(f"{time.strftime('%H:%M:%S')} {error}")
        time.sleep(PAUSE_SECONDS)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"requests": done, "failed": failed, "errors": errors}, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
