"""Gunicorn for the benchmarks, the soak and the metrics test: production's settings, on loopback.

The worker class, worker count, threads, timeouts and max-requests come from the deploy
config (ansible/roles/app/defaults/main.yml, rendered into deploy's gunicorn.conf.py) when it
is there; the fallbacks below are used only when it is not. The worker count is production's
formula evaluated for this machine. What differs from production, on purpose: a TCP bind on
127.0.0.1 instead of the systemd unix socket (the load generator connects directly, no Nginx),
and the Prometheus multi-process hooks, which deploy's config should carry too:

    on_starting  empties PROMETHEUS_MULTIPROC_DIR (old samples would be summed in forever);
    child_exit   marks a dead worker (its live gauges go; its counters are kept and summed).

Both use prometheus_client only: the master must not import the app (a HUP reload relies on
new workers importing the new release).

Environment: BENCH_BIND (default 127.0.0.1:8009), PROMETHEUS_MULTIPROC_DIR (required),
BENCH_WORKERS / BENCH_THREADS to override, BENCH_MAX_REQUESTS=N to recycle workers every N requests.
"""

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
DEPLOY_DEFAULTS = os.path.join(HERE, "..", "ansible", "roles", "app", "defaults", "main.yml")

FALLBACK = {"worker_class": "gthread", "threads": 4, "timeout": 30, "graceful_timeout": 30,
            "keepalive": 5, "max_requests": 0, "max_requests_jitter": 0, "backlog": 2048}


def _deploy_settings() -> dict:
    """app_gunicorn_* from the deploy role's defaults; {} when the role is not there."""
    try:
        with open(DEPLOY_DEFAULTS, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    found = {}
    for name, value in re.findall(r"^app_gunicorn_(\w+):\s*(.+?)\s*(?:#.*)?$", text, re.M):
        found[name] = value.strip().strip("\"'")
    return found


def _workers(expression: str | None) -> tuple[int, str]:
    """Production's worker-count formula ([vcpus * a + b, cap] | min) for this machine."""
    vcpus = os.cpu_count() or 1
    match = re.search(r"\*\s*(\d+)\s*\+\s*(\d+)\s*,\s*(\d+)\s*\]\s*\|\s*min", expression or "")
    if match:
        a, b, cap = (int(g) for g in match.groups())
        return min(vcpus * a + b, cap), f"deploy formula min({vcpus}*{a}+{b}, {cap})"
    if expression and expression.isdigit():
        return int(expression), "deploy value"
    return vcpus * 2 + 1, f"fallback 2*{vcpus}+1 (no deploy config found)"


_deploy = _deploy_settings()
SOURCE = "ansible/roles/app/defaults/main.yml" if _deploy else "bench fallback (no deploy config)"


def _setting(name: str):
    value = _deploy.get(name, FALLBACK[name])
    return value if name == "worker_class" else int(value)


bind = [os.environ.get("BENCH_BIND", "127.0.0.1:8009")]
wsgi_app = os.environ.get("BENCH_WSGI_APP", "wsgi:app")
chdir = os.path.join(HERE, "..")
worker_class = _setting("worker_class")
_count, WORKERS_SOURCE = _workers(_deploy.get("workers"))
workers = int(os.environ.get("BENCH_WORKERS", _count))
threads = int(os.environ.get("BENCH_THREADS", _setting("threads")))
timeout = _setting("timeout")
graceful_timeout = _setting("graceful_timeout")
keepalive = _setting("keepalive")
max_requests = int(os.environ.get("BENCH_MAX_REQUESTS", _setting("max_requests")))
max_requests_jitter = _setting("max_requests_jitter")
backlog = _setting("backlog")
proc_name = "acme-bench"
accesslog = None
errorlog = os.environ.get("BENCH_ERRORLOG", "-")
loglevel = "info"  # worker boots, exits and max-requests restarts: the soak reads them
# Gunicorn 27's control socket defaults to one path per user: parallel runs would share it.
control_socket_disable = True


def on_starting(server):
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        raise RuntimeError("set PROMETHEUS_MULTIPROC_DIR (the workers' metrics directory)")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    server.log.warning("gunicorn settings from %s: %s x %s, %s threads (%s)", SOURCE,
                       workers, worker_class, threads, WORKERS_SOURCE)


def post_worker_init(worker):
    # As production: the client's address from the proxy's header (a no-op without one).
    from werkzeug.middleware.proxy_fix import ProxyFix
    worker.wsgi = ProxyFix(worker.wsgi, x_for=1, x_proto=1)


def child_exit(server, worker):
    from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics
    GunicornPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
