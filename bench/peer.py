"""Benchmark (issue 19): our signed-in search page beside a peer's shop front page, in one run.

    .venv/bin/python bench/peer.py [--seconds 15] [--rounds 3] [--reuse-peer]

The peer is pretix (PyPI `pretix`, the ticket shop whose booking and payment design this project
learns from), installed into a virtualenv of its own (PEER_VENV, default
~/.cache/acme-peer/venv: `pretix==2026.8.0 gunicorn==27.0.1`, never the project's), with its
data directory beside it (`migrate` and `rebuild`, its static files, take a few minutes the
first time). Its database is PostgreSQL on the same server as ours (BENCH_PEER_DATABASE_URL,
default bench_peer, created afresh unless --reuse-peer finds it filled). It gets an organizer
and a live event with 20 products, each with a quota (bench/peer/pretix_seed.py); its shop front
page (`/acme/cars/`: the event and its 20 products with prices and availability) is measured.

Both run under the same Gunicorn settings (bench/gunicorn.conf.py's: the deploy role's worker
class, worker count for this machine, threads, timeouts, keep-alive, backlog), one after the
other on the same port range, both rendered every time: pretix has no cache configured (its
default, Django's dummy cache, when neither Redis nor memcached is set), and our search page is
asked for by a signed-in customer (the public page cache never answers a request with a
session). wrk, 50 connections, interleaved rounds (median kept), then 50 users with think
time for the p95. Prints both and the ratio (ours / peer's).
"""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, pages  # noqa: E402

PRETIX = "pretix==2026.8.0"
GUNICORN = "gunicorn==27.0.1"  # ours (requirements.txt)
PEER_HOME = Path(os.environ.get("PEER_HOME", Path.home() / ".cache" / "acme-peer"))
PEER_VENV = Path(os.environ.get("PEER_VENV", PEER_HOME / "venv"))
DEFAULT_PEER_DB = "postgresql://postgres@127.0.0.1:5432/bench_peer"
CLIENTS = 50
THINK_MS = (500, 1500)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def gunicorn_settings() -> dict:
    """The numbers bench/gunicorn.conf.py gives our app on this machine."""
    conf = runpy.run_path(str(common.BENCH / "gunicorn.conf.py"))
    return {k: conf[k] for k in ("worker_class", "workers", "threads", "timeout",
                                 "graceful_timeout", "keepalive", "max_requests", "backlog")}


def ensure_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {PEER_VENV} and installing {PRETIX} {GUNICORN} (a few minutes)")
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    ok = subprocess.run([str(python), "-c", "import pretix, gunicorn; print(gunicorn.__version__)"],
                        capture_output=True, text=True)
    if ok.returncode != 0 or ok.stdout.strip() != GUNICORN.split("==")[1]:
        subprocess.run([str(python), "-m", "pip", "install", "-q", PRETIX, GUNICORN], check=True)
    return python


def pretix_config(db_url: str, port: int) -> Path:
    from sqlalchemy.engine import make_url
    url = make_url(db_url)
    data = PEER_HOME / "data"
    data.mkdir(parents=True, exist_ok=True)
    cfg = PEER_HOME / "pretix.cfg"
    cfg.write_text(
        "[pretix]\ninstance_name=peer-bench\n"
        f"url=http://127.0.0.1:{port}\ncurrency=GBP\ndatadir={data}\n"
        "trust_x_forwarded_for=on\ntrust_x_forwarded_proto=on\n\n"
        f"[database]\nbackend=postgresql\nname={url.database}\nuser={url.username or 'postgres'}\n"
        f"host={url.host or '127.0.0.1'}\nport={url.port or 5432}\n\n"
        "[django]\ndebug=off\n\n[mail]\nfrom=peer@example.com\nhost=127.0.0.1\nport=1\n")
    return cfg


def prepare_pretix(python: Path, cfg: Path, db_url: str, reuse: bool) -> str:
    env = {**os.environ, "PRETIX_CONFIG_FILE": str(cfg)}
    env.pop("PYTHONPATH", None)
    if not reuse:
        common.recreate_database(db_url)
    log("pretix: migrate")
    subprocess.run([str(python), "-m", "pretix", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, cwd=PEER_HOME)
    if not (PEER_HOME / "data" / "static.done").exists():
        log("pretix: rebuild (static files, once)")
        subprocess.run([str(python), "-m", "pretix", "rebuild"], env=env, check=True,
                       stdout=subprocess.DEVNULL, cwd=PEER_HOME)
        (PEER_HOME / "data" / "static.done").write_text("ok\n")
    out = subprocess.run([str(python), str(common.BENCH / "peer" / "pretix_seed.py")], env=env,
                         check=True, capture_output=True, text=True, cwd=PEER_HOME).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("PEER_PATH "))
    log(f"pretix: {line}")
    return line.split()[1]


def start_pretix(python: Path, cfg: Path, port: int, settings: dict):
    env = {**os.environ, "PRETIX_CONFIG_FILE": str(cfg)}
    env.pop("PYTHONPATH", None)
    cmd = [str(python), "-m", "gunicorn", "pretix.wsgi", "--bind", f"127.0.0.1:{port}",
           "--worker-class", settings["worker_class"], "--workers", str(settings["workers"]),
           "--threads", str(settings["threads"]), "--timeout", str(settings["timeout"]),
           "--graceful-timeout", str(settings["graceful_timeout"]),
           "--keep-alive", str(settings["keepalive"]), "--max-requests",
           str(settings["max_requests"]), "--backlog", str(settings["backlog"])]
    log_file = (PEER_HOME / "gunicorn.log").open("wb")
    return subprocess.Popen(cmd, env=env, cwd=PEER_HOME, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for(url: str, proc, timeout: float = 300) -> None:
    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("pretix's gunicorn exited:\n"
                             + (PEER_HOME / "gunicorn.log").read_text()[-3000:])
        try:
            if requests.get(url, timeout=30).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise SystemExit(f"pretix did not answer {url}")


def stop(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="per saturation run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-seconds", type=int, default=30)
    parser.add_argument("--reuse-peer", action="store_true", help="keep pretix's database")
    options = parser.parse_args()
    print(f"machine: {common.machine()}")
    settings = gunicorn_settings()
    print(f"gunicorn for both: {settings}")

    python = ensure_venv()
    peer_db = os.environ.get("BENCH_PEER_DATABASE_URL", DEFAULT_PEER_DB)
    peer_port = common.free_port()
    cfg = pretix_config(peer_db, peer_port)
    peer_path = prepare_pretix(python, cfg, peer_db, options.reuse_peer)

    db_url = os.environ.get("BENCH_DATABASE_URL", common.DEFAULT_DB)
    env = common.app_env(db_url, os.environ.get("BENCH_REDIS_URL", common.DEFAULT_REDIS),
                         FLASK_PUBLIC_PAGE_CACHE_SECONDS="0")
    common.recreate_database(db_url)
    app = common.build_app(env)
    customer_ids = common.migrate_and_seed(app, customers=1)
    with app.app_context():
        pages.add_cars()
        common.db_dispose()
    session = common.signed_in_sessions(app, customer_ids)[0]
    ours_headers = {"Cookie": session.cookie, "X-Forwarded-Proto": "https"}
    search_path = "/book/?" + urlencode(pages.search_args(app))

    peer = start_pretix(python, cfg, peer_port, settings)
    runs: dict[str, list] = {"ours": [], "peer": []}
    think = {}
    try:
        peer_url = f"http://127.0.0.1:{peer_port}{peer_path}"
        wait_for(peer_url, peer)
        with common.running_stack(env) as stack:
            import requests
            page = requests.get(stack.base_url + search_path, headers=ours_headers, timeout=60)
            assert page.status_code == 200 and "Sign out" in page.text, page.status_code
            peer_page = requests.get(peer_url, timeout=60)
            assert peer_page.status_code == 200 and "Car 20: 3 days" in peer_page.text
            priced = page.text.count('class="total"')
            print(f"ours: {stack.base_url + search_path} ({len(page.content):,} B, "
                  f"{priced} cars priced); peer: {peer_url} ({len(peer_page.content):,} B)")
            targets = {"ours": (stack.base_url + search_path, ours_headers), "peer": (peer_url, {})}
            for name, (url, headers) in targets.items():  # warm both
                common.wrk(url, connections=CLIENTS, seconds=3, headers=headers)
            for _ in range(options.rounds):
                for name, (url, headers) in targets.items():
                    common.drain(stack)
                    runs[name].append(common.wrk(url, connections=CLIENTS, seconds=options.seconds,
                                                 headers=headers))
            for name, (url, headers) in targets.items():
                common.drain(stack)
                think[name] = common.wrk(url, connections=CLIENTS, seconds=options.latency_seconds,
                                         script="think.lua", headers=headers,
                                         env={"THINK_MIN_MS": str(THINK_MS[0]),
                                              "THINK_MAX_MS": str(THINK_MS[1])})
    finally:
        stop(peer)

    best = {n: sorted(rs, key=lambda r: r.rps)[len(rs) // 2] for n, rs in runs.items()}
    ratio = best["ours"].rps / best["peer"].rps if best["peer"].rps else float("inf")
    rows = []
    labels = {"ours": "ACME search page, signed in (24 cars priced)",
              "peer": "pretix shop front page (20 products, quotas)"}
    for name in ("ours", "peer"):
        r, t = best[name], think[name]
        every = ", ".join(f"{x.rps:.1f}" for x in runs[name])
        rows.append((labels[name], f"{r.rps:.1f} (median of {every})",
                     f"{ratio:.2f}" if name == "ours" else "1", f"{t.p50_ms:.0f}", f"{t.p95_ms:.0f}",
                     r.non_2xx_3xx + t.non_2xx_3xx))
    print()
    print(common.table(rows, ("page (rendered every time)", "req/s, 50 connections",
                              "ratio to pretix", "p50 ms (50 users, think)",
                              "p95 ms (50 users, think)", "non-2xx/3xx")))
    print(f"\nours / pretix throughput: {ratio:.2f}; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
