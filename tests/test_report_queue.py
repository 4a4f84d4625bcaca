"""A report refresh is checked before it is queued, goes to the reports' own low-priority
queue with a time limit of its own, and never delays a customer's job: the production
worker takes the customer queue's jobs first."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import jinja2
import pytest
from rq import Queue
from rq.job import Job
from sqlalchemy import func, select

from app.config import Config
from app.extensions import db
from app.jobs import enqueue, redis_connection
from app.models import ReportFact, ReportRefresh
from app.ops import ping_job
from tests.conftest import AuthActions, TEST_REDIS_URL, post_form
from tests.rq_process import worker_env

ROOT = Path(__file__).resolve().parent.parent
WORKERS_ROLE = ROOT / "ansible" / "roles" / "workers"
TOO_LONG = "date_from=2020-01-01&date_to=2031-01-01"


def _refreshes() -> int:
    db.session.expire_all()
    return (db.session.scalar(select(func.count()).select_from(ReportRefresh))
            + db.session.scalar(select(func.count()).select_from(ReportFact)))


def test_a_range_too_long_answers_422_and_no_refresh_runs(client, auth, app):
    """In-process jobs (the embedded default): a refused range rolls nothing up."""
    auth.sign_in_as("admin")
    response = client.get(f"/admin/reports?{TOO_LONG}")
    assert response.status_code == 422
    assert "Choose a shorter range: at most 732 days" in response.get_data(as_text=True)
    assert client.get(f"/admin/reports/utilisation.csv?{TOO_LONG}").status_code == 422
    response = post_form(client, f"/admin/reports/refresh?{TOO_LONG}", {},
                         token_from=f"/admin/reports?{TOO_LONG}")
    assert response.status_code == 422
    assert _refreshes() == 0
    # A range a report may cover is rolled up (inline in tests) when first shown.
    assert client.get("/admin/reports?date_from=2031-01-06&date_to=2031-01-12").status_code == 200
    assert _refreshes() > 0


@pytest.mark.parametrize("query", [
    "date_from=9999-12-27&date_to=9999-12-31",
    "date_from=9999-12-01&date_to=9999-12-31&period=month",
    "date_from=0001-01-01&date_to=9999-12-31",
])
def test_dates_at_the_calendars_ends_are_refused_with_a_message(client, auth, query):
    auth.sign_in_as("admin")
    response = client.get(f"/admin/reports?{query}")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Enter a date from 01/01/2000 to 31/12/2099." in page  # beside the field
    assert _refreshes() == 0


@pytest.fixture
def rq_reports(make_app, app):
    """An app on the real Redis queue, with queues of its own for this test."""
    tag = uuid.uuid4().hex[:8]
    rq_app = make_app(JOBS_MODE="rq", JOBS_QUEUE_NAME=f"test-customer-{tag}",
                      REPORTS_QUEUE_NAME=f"test-reports-{tag}")
    with rq_app.app_context():
        client = rq_app.test_client()
        AuthActions(client).sign_in_as("admin")
        rq_app.client = client
        yield rq_app
        for q in _queues(rq_app):
            q.delete(delete_jobs=True)


def _queues(rq_app) -> tuple[Queue, Queue]:
    """The customer-facing queue and the reports' queue, straight from Redis."""
    return tuple(Queue(rq_app.config[name], connection=redis_connection())  # type: ignore[return-value]
                 for name in ("JOBS_QUEUE_NAME", "REPORTS_QUEUE_NAME"))


@pytest.mark.postgres  # the real RQ queue on Redis
def test_a_range_too_long_queues_nothing_on_the_real_queue(rq_reports):
    client = rq_reports.client
    assert client.get(f"/admin/reports?{TOO_LONG}").status_code == 422
    assert client.get(f"/admin/reports/outcomes.csv?{TOO_LONG}").status_code == 422
    response = post_form(client, f"/admin/reports/refresh?{TOO_LONG}", {}, token_from=f"/admin/reports?{TOO_LONG}")
    assert response.status_code == 422
    customer, reports_q = _queues(rq_reports)
    assert (customer.count, reports_q.count) == (0, 0)
    assert client.get("/admin/reports?date_from=9999-12-27&date_to=9999-12-31").status_code == 422
    assert (customer.count, reports_q.count) == (0, 0)


@pytest.mark.postgres
def test_a_refresh_goes_to_the_reports_queue_with_its_time_limit(rq_reports):
    client = rq_reports.client
    query = "date_from=2031-01-06&date_to=2031-01-19"
    response = post_form(client, f"/admin/reports/refresh?{query}", {}, token_from=f"/admin/reports?{TOO_LONG}")
    assert response.status_code == 303
    customer, reports_q = _queues(rq_reports)
    assert customer.count == 0
    [job] = reports_q.jobs
    assert job.func_name == "app.admin.reports.refresh_task"
    assert job.args == ("2031-01-06", "2031-01-19")
    assert job.timeout == rq_reports.config["REPORT_JOB_TIMEOUT_SECONDS"]
    assert job.timeout != rq_reports.config["JOB_TIMEOUT_SECONDS"]
    # The page's own refresh of figures it has never seen goes there too.
    assert client.get("/admin/reports?date_from=2030-01-07&date_to=2030-01-13").status_code == 200
    assert customer.count == 0 and reports_q.count == 2


def production_worker_command(queue_names: list[str]) -> list[str]:
    """The workers' systemd unit's ExecStart, rendered from the role with its defaults
    (here with the test's queue names, in the role's order, and this checkout's Python)."""
    defaults = (WORKERS_ROLE / "defaults" / "main.yml").read_text()
    listed = re.search(r"^workers_queues:\n((?:  - .*\n)+)", defaults, re.M)
    assert listed, "workers_queues not found in the workers role's defaults"
    role_queues = [line.strip()[2:].strip() for line in listed.group(1).splitlines()]
    # The role lists the app's queues, customer-facing first.
    assert role_queues == [Config.JOBS_QUEUE_NAME, Config.REPORTS_QUEUE_NAME]
    with_scheduler = re.search(r"^workers_with_scheduler: (\w+)", defaults, re.M).group(1) == "true"
    unit = jinja2.Template((WORKERS_ROLE / "templates" / "acme-worker@.service.j2").read_text()).render(
        ansible_managed="", acme_current_dir=str(ROOT), workers_with_scheduler=with_scheduler,
        workers_queues=queue_names, acme_user="acme", acme_group="acme", acme_env_file="/dev/null",
        acme_shared_dir="/tmp", workers_job_timeout_grace=180)
    [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start[len("ExecStart="):])
    assert argv[0] == f"{ROOT}/venv/bin/python"
    return [sys.executable, *argv[1:]]


@pytest.mark.postgres
def test_the_production_worker_takes_the_customer_queues_job_first(rq_reports, _schema):
    client = rq_reports.client
    query = "date_from=2031-01-06&date_to=2031-01-19"
    assert post_form(client, f"/admin/reports/refresh?{query}", {},
                     token_from=f"/admin/reports?{TOO_LONG}").status_code == 303
    token = uuid.uuid4().hex
    enqueue(ping_job, token, job_id=f"ops-ping-{token}")  # queued after the report's refresh
    customer, reports_q = _queues(rq_reports)
    [report_job_id], [customer_job_id] = reports_q.job_ids, customer.job_ids
    names = [rq_reports.config["JOBS_QUEUE_NAME"], rq_reports.config["REPORTS_QUEUE_NAME"]]
    command = production_worker_command(names)
    assert command[-2:] == names
    env = worker_env(_schema, names[0], FLASK_REPORTS_QUEUE_NAME=names[1], RQ_REDIS_URL=TEST_REDIS_URL)
    done = subprocess.run([*command, "--burst"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    connection = customer.connection
    report_job = Job.fetch(report_job_id, connection=connection)
    customer_job = Job.fetch(customer_job_id, connection=connection)
    assert (customer_job.get_status(), report_job.get_status()) == ("finished", "finished"), done.stderr[-3000:]
    assert customer_job.ended_at <= report_job.started_at
    assert db.session.scalar(select(func.count()).select_from(ReportRefresh).where(
        ReportRefresh.date_from == date(2031, 1, 6), ReportRefresh.finished_at.is_not(None))) == 1
    assert report_job.ended_at - report_job.started_at < timedelta(
        seconds=rq_reports.config["REPORT_JOB_TIMEOUT_SECONDS"])
