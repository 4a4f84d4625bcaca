#!/usr/bin/env bash
# The deploy test: real throw-away Debian 12 hosts on this machine, provisioned and operated
# with the playbooks in ansible/ exactly as an admin would (see README, "Deploying").
#
#   tests/deploy/run.sh [one|two|three|ci|all]   (make test-deploy runs "all"; needs root)
#
#   one  one host in every group (web, worker, db):
#        lint; site.yml; HTTPS/health/worker/redirect checks; site.yml again (changed=0);
#        deploy a second release (requests keep flowing), rollback.yml, a broken release rolled
#        back by deploy.yml; SIGKILL Gunicorn's master, a Gunicorn worker and an RQ worker;
#        backup, drop a table, restore.yml, compare; power off and boot again; all checks again.
#   two  web+worker on one host, db on another: the same, with a given TLS certificate and a
#        chain configured (so the chain watcher service runs on the worker host).
#   three  web+worker (and monitoring) on one host, db on another, the backup target on a third:
#        site.yml; every check; then
#        the alert that acts: a release that fails on one route is deployed (its /healthz is
#        fine), the 5xx-ratio alert fires, the receiver rolls it back and emails the admin, the
#        alert resolves; the same release made live again without a person: only told.
#        Backups copied off the host (restic over SFTP, encrypted); the restore drill: the db
#        host replaced by a fresh one, site.yml, restore.yml -e backup=offsite, all compared,
#        the recovery time printed. The hot standby (a fourth host, sb3): a row written on the
#        primary is read on the standby within seconds; failover.yml under a steady stream of
#        bookings loses no confirmed one; site.yml rebuilds the old primary as the new standby.
# drill   (on its own: not in "ci" or "all") the restore drill at scale: web+worker, db and the
#        backup target (three's first three hosts, inventories/test/drill-hosts.yml); the demo
#        data plus ACME_DRILL_HIRES hires (2,000,000 unless set) backed up off the host; the db
#        host replaced by a fresh one, site.yml, restore.yml -e backup=offsite, compared; the
#        recovery time printed.
# "ci" runs one and two side by side (what .ci/run runs: with three the whole of CI would pass
# the 60 minutes issue 21 allows; three is run on its own, see the README).
# "all" runs the three scenarios at the same time (their hosts have their own names and addresses);
# DEPLOY_PARALLEL=0 runs them one after the other. The hosts use only the test network
# (10.77.0.0/24 on a bridge of their own) and their own PostgreSQL and Redis: nothing listens
# on this machine's loopback, so the app's test suite can run meanwhile.
# Everything is torn down on exit (also on failure, Ctrl-C or SIGTERM): boxes, namespaces,
# veths, the bridge, the NAT and FORWARD rules, ip_forward, mounts, cgroups. Exits non-zero on
# any failure. Phase times: $ACME_CACHE/times.txt (printed at the end); logs: $ACME_CACHE/run.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
MODE="${1:-all}"
case "$MODE" in one | two | three | ci | all | drill) ;; *) echo "usage: $0 [one|two|three|ci|all|drill]" >&2; exit 2 ;; esac
if [ "$(id -u)" != 0 ]; then
  echo "the deploy test boots containers and changes the network: run it as root" >&2
  exit 2
fi

source tests/deploy/lib.sh
ANSIBLE_VENV="${ACME_ANSIBLE_VENV:-$ACME_CACHE/venv}"
PYTHON="$REPO/.venv/bin/python"
STARTED=$SECONDS
ALL_BOXES=(box1 app1 db1 web3 db3 bak3 sb3)   # every box a scenario may boot (the teardown removes them all)
SCENARIO_PIDS=() SCENARIO_LABELS=() SCENARIO_PGIDS=()

mkdir -p "$ACME_CACHE"
# One run at a time (they share the test network and the boxes' names).
if [ -f "$ACME_CACHE/running.pid" ] && kill -0 "$(cat "$ACME_CACHE/running.pid")" 2>/dev/null; then
  echo "another deploy test is running (process $(cat "$ACME_CACHE/running.pid"))" >&2
  exit 2
fi
echo $$ >"$ACME_CACHE/running.pid"

# --- timing and teardown --------------------------------------------------------------------------
: >"${TIMES:=$ACME_CACHE/times.txt}"
timed() {  # timed LABEL command...: run it, record how long it took
  local label="$1" t0=$SECONDS rc=0
  shift
  "$@" || rc=$?
  printf '%-48s %4d s%s\n' "$label" $((SECONDS - t0)) "$([ $rc = 0 ] || echo "  (FAILED, exit $rc)")" | tee -a "$TIMES" >&2
  return $rc
}

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  log "teardown"
  # Scenarios still running (a failure elsewhere, Ctrl-C), or whatever a finished one left
  # behind: stop each process group with all it started (playbooks, checks, the hammer).
  local pgid
  for pgid in "${SCENARIO_PGIDS[@]}"; do
    kill -TERM -- "-$pgid" 2>/dev/null
  done
  if [ -n "${LINT_PID:-}" ] && kill -0 "$LINT_PID" 2>/dev/null; then
    pkill -TERM -P "$LINT_PID" 2>/dev/null
    kill -TERM "$LINT_PID" 2>/dev/null
  fi
  for pgid in "${SCENARIO_PGIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pgid" 2>/dev/null
  done
  for name in "${ALL_BOXES[@]}"; do
    box_destroy "$name"
  done
  net_down
  boxes_down
  printf '%-48s %4d s\n' "whole deploy test" $((SECONDS - STARTED)) >>"$TIMES"
  echo >&2
  # Setup first, then each scenario's phases together (they ran side by side), then the whole.
  { grep -v -e '^\[' -e '^whole' "$TIMES"; grep '^\[one\]' "$TIMES"; grep '^\[two\]' "$TIMES"; grep '^\[three\]' "$TIMES"; grep '^\[drill\]' "$TIMES"
    grep '^whole' "$TIMES"; } >&2
  if [ "$rc" = 0 ]; then
    echo "DEPLOY TEST PASSED" >&2
  else
    echo "DEPLOY TEST FAILED (exit $rc); logs in $ACME_RUN" >&2
  fi
  rm -f "$ACME_CACHE/running.pid"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- setup -------------------------------------------------------------------------------------------
log "preparing this machine"
host_prereqs
# Leftovers of a run that could not clean up (a killed shell): remove them first.
for name in "${ALL_BOXES[@]}"; do box_destroy "$name" 2>/dev/null || true; done
net_down
boxes_down
rm -rf "$ACME_RUN"
mkdir -p "$ACME_RUN" "$(dirname "$ACME_SSH_KEY")"
[ -f "$ACME_SSH_KEY" ] || ssh-keygen -q -t ed25519 -N '' -C acme-deploy-test -f "$ACME_SSH_KEY"

# Debian's own Python: the same version as on the boxes (the wheelhouse below relies on it).
venv_stamp() { cat requirements-deploy.txt; /usr/bin/python3 -VV; }
if [ ! -x "$ANSIBLE_VENV/bin/ansible-playbook" ] || ! venv_stamp | cmp -s - "$ANSIBLE_VENV/.stamp"; then
  log "installing Ansible and ansible-lint (requirements-deploy.txt) into $ANSIBLE_VENV"
  rm -rf "$ANSIBLE_VENV"
  /usr/bin/python3 -m venv "$ANSIBLE_VENV"
  "$ANSIBLE_VENV/bin/pip" install -q -r requirements-deploy.txt
  venv_stamp >"$ANSIBLE_VENV/.stamp"
fi
if [ ! -x "$PYTHON" ]; then
  source scripts/venv.sh requirements-dev.txt
fi
timed "clean Debian root (cached after the first run)" build_base
net_up
boxes_up

export PATH="$ANSIBLE_VENV/bin:$PATH"
export ANSIBLE_HOST_KEY_CHECKING=False
export ANSIBLE_PRIVATE_KEY_FILE="$ACME_SSH_KEY"
export ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR"
export ANSIBLE_FORCE_COLOR=0
export ANSIBLE_NOCOLOR=1
export ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks   # task times in the logs

playbook() {  # playbook LOGNAME args...: run ansible-playbook from ansible/, log to $ACME_RUN
  local logname="$1"
  shift
  (cd ansible && ansible-playbook "$@") >"$ACME_RUN/$logname.log" 2>&1
  local rc=$?
  sed -n '/PLAY RECAP/,$p' "$ACME_RUN/$logname.log" >&2
  if [ $rc != 0 ]; then
    echo "--- ansible-playbook $* failed; the end of $ACME_RUN/$logname.log:" >&2
    grep -E -B2 -A12 'fatal:|FAILED!|ERROR!' "$ACME_RUN/$logname.log" | tail -60 >&2
  fi
  return $rc
}

assert_nothing_changed() {  # every host's recap says changed=0 (and nothing failed)
  local log="$ACME_RUN/$1.log"
  if grep -E '^\S+\s+: ok=' "$log" | grep -Ev 'changed=0 .*failed=0' ; then
    echo "--- the second run changed something:" >&2
    grep -E '^changed:' "$log" >&2 || true
    return 1
  fi
  echo "second run: changed=0 on every host" >&2
}

# --- releases: artifacts of the working tree ----------------------------------------------------------
# r1: the working tree; r2: the same plus a marker on every page; broken: the same but every
# request fails (the app still boots, so only the health check can catch it).
STAMP=$(date -u +%m%d%H%M%S)
R1="t1-$STAMP" R2="t2-$STAMP" RB="t3-broken-$STAMP" RH="t4-broken-home-$STAMP"
make_artifacts() {
  local dir="$ACME_RUN/artifacts"
  mkdir -p "$dir"
  deploy/build-release.sh --worktree "$dir/$R1.tar.gz"
  local tmp="$ACME_RUN/artifact-src"
  rm -rf "$tmp" && mkdir -p "$tmp"
  tar -C "$tmp" -xzf "$dir/$R1.tar.gz"
  printf '\n<!-- acme-deploy-test release: %s -->\n' "$R2" >>"$tmp/templates/base.html"
  tar -C "$tmp" -czf "$dir/$R2.tar.gz" .
  cat >>"$tmp/wsgi.py" <<'PY'


def _broken(environ, start_response):  # the deploy test's deliberately broken release
    start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
    return [b"broken on purpose"]


app.wsgi_app = _broken
PY
  tar -C "$tmp" -czf "$dir/$RB.tar.gz" .
  # The home page fails (a 500 the app counts), everything else works: deploy.yml's checks
  # (/healthz, a worker) pass, only the 5xx-ratio alert can catch it.
  tar -C "$tmp" -xzf "$dir/$R1.tar.gz" wsgi.py
  cat >>"$tmp/wsgi.py" <<'PY'


def _home_fails():  # the deploy test's release that fails on one route
    raise RuntimeError("broken on purpose: the home page")


_home_fails.allowed_audience = app.view_functions["main.home"].allowed_audience  # app/security.py
app.view_functions["main.home"] = _home_fails
PY
  tar -C "$tmp" -czf "$dir/$RH.tar.gz" .
  # Test speed only: a wheelhouse of exactly these requirements, built here once and reused,
  # so that the boxes need not fetch every package from PyPI on each deploy.
  # Built with Debian's Python (the ansible venv's), as on the boxes: markers such as
  # python_full_version < "3.11.3" must resolve the same way.
  # Offline first (a warm wheelhouse has them all: seconds); PyPI for what is missing.
  local wheel=("$ANSIBLE_VENV/bin/python" -m pip wheel -q --disable-pip-version-check
    --find-links "$ACME_CACHE/wheels" -w "$ACME_CACHE/wheels" -r "$tmp/requirements.txt" -c "$tmp/constraints.txt")
  if ! "${wheel[@]}" --no-index >/dev/null 2>&1; then
    "${wheel[@]}" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
  fi
  rm -rf "$tmp"
}
# Installs from that wheelhouse only (the role's app_pip_find_links / app_pip_no_index).
WHEELHOUSE=(-e app_pip_find_links=/var/cache/acme/wheels -e app_pip_no_index=true)

# --- the checks (pytest, from this machine) --------------------------------------------------------
checks() {  # checks PHASE [pytest args...]: run the box checks whose names contain PHASE
  local phase="$1"
  shift
  (
    unset TEST_DATABASE_URL TEST_REDIS_URL
    "$PYTHON" -m pytest -q -p no:cacheprovider --noconftest -o addopts="" -k "$phase" "$@" tests/deploy/box_checks.py
  )
}

# After a release switch only what a release changes is checked again (pages, health, which
# release every Gunicorn worker and the RQ worker run); the rest was checked after site.yml.
RELEASE_CHECKS="live and (home_page or healthz or release_is_live or worker_processes)"

hammer_start() {  # keep requesting /healthz through Nginx until hammer_stop; count failures
  "$PYTHON" tests/deploy/hammer.py "$ACME_BOX_URL/healthz" "$ACME_BOX_CA" "$ACME_RUN/hammer-$1.json" &
  HAMMER_PID=$!
}
hammer_stop() {
  kill -TERM "$HAMMER_PID" 2>/dev/null || true
  wait "$HAMMER_PID" || true
  HAMMER_PID=""
  "$PYTHON" - "$ACME_RUN/hammer-$1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"requests during {sys.argv[1].split('hammer-')[1][:-5]}: {r['requests']}, failed: {r['failed']} {r['errors'][:5]}", file=sys.stderr)
sys.exit(1 if r["failed"] or r["requests"] == 0 else 0)
PY
}

# --- backups off the host and the restore drill (three, drill) ---------------------------------------
offsite_and_drill() {  # offsite_and_drill LABEL DB_BOX BACKUP_TARGET_BOX (ACME_DRILL_HIRES: how many hires)
  local label="$1" db="$2" target="$3" db_ip t0
  log "[$label] backups off the host (restic over SFTP to the backup target)"
  export ACME_BACKUP_TARGET_IP=$(cat "$ACME_RUN/$target.ip") ACME_DRILL_SNAPSHOT="$ACME_RUN/$label-drill-before.txt"
  timed "[$label] backups copied off the host" checks offsite -s

  log "[$label] restore drill: the db host replaced by a fresh one, the data from off the host"
  db_ip=$(cat "$ACME_RUN/$db.ip")
  box_destroy "$db"
  box_create "$db" "$db_ip"
  t0=$SECONDS
  box_boot "$db"
  timed "[$label] drill: fresh db host converged (site.yml)" playbook "$label-drill-site" -i "$ACME_INVENTORY" site.yml "${WHEELHOUSE[@]}"
  timed "[$label] drill: restore.yml from off the host" playbook "$label-drill-restore" -i "$ACME_INVENTORY" restore.yml -e backup=offsite -e uploads_backup=offsite -e restore_safety_backup=false
  printf '%-48s %4d s\n' "[$label] drill: recovery time (boot to restored)" $((SECONDS - t0)) | tee -a "$TIMES" >&2
  timed "[$label] drill: data compared with before" checks drill
}

boot_fresh_boxes() {  # boot_fresh_boxes LABEL "name=ip ...": make these throw-away hosts and boot them
  local label="$1" boxes="$2" spec name ip
  local pids=()
  log "[$label] booting $boxes"
  for spec in $boxes; do
    name=${spec%%=*} ip=${spec#*=}
    box_create "$name" "$ip"
  done
  for spec in $boxes; do box_boot "${spec%%=*}" & pids+=($!); done
  wait_all "booting" "${pids[@]}"
}

# --- the restore drill at scale (drill: on its own) ---------------------------------------------------
drill_scenario() {  # drill_scenario LABEL INVENTORY "name=ip ..." WEB_BOX DB_BOX BACKUP_TARGET_BOX
  local label="$1" inventory="$2" boxes="$3" web="$4" db="$5" target="$6" name ip
  boot_fresh_boxes "$label" "$boxes"

  export ACME_INVENTORY="inventories/test/$inventory" ACME_ANSIBLE_DIR="$REPO/ansible"
  export ACME_WEB_IP=$(cat "$ACME_RUN/$web.ip") ACME_DB_IP=$(cat "$ACME_RUN/$db.ip")
  export ACME_BOX_URL="https://$ACME_WEB_IP" ACME_SSH_KEY ACME_WORKER_HOST="$web" ACME_WORKER_IP="$ACME_WEB_IP"
  export ACME_GIVEN_CA="" ACME_EXPECT_CHAIN_WATCH=0 ACME_DRILL_HIRES

  log "[$label] site.yml on fresh hosts"
  timed "[$label] fresh converge (site.yml)" playbook "$label-site-1" -i "$ACME_INVENTORY" site.yml -e "version=$ACME_RUN/artifacts/$R1.tar.gz" "${WHEELHOUSE[@]}"
  box_ssh "$ACME_WEB_IP" sudo cat /etc/nginx/tls/acme.crt >"$ACME_RUN/$label-ca.crt"
  export ACME_BOX_CA="$ACME_RUN/$label-ca.crt" ACME_EXPECT_RELEASE="$R1" ACME_EXPECT_MARKER=""
  log "[$label] the demo data and $ACME_DRILL_HIRES hires"
  offsite_and_drill "$label" "$db" "$target"

  log "[$label] done: tearing its hosts down"
  for spec in $boxes; do box_destroy "${spec%%=*}"; done
}

# --- the alert scenario ------------------------------------------------------------------------------
alert_scenario() {  # alert_scenario LABEL INVENTORY "name=ip ..." WEB_BOX DB_BOX BACKUP_TARGET_BOX STANDBY_BOX STANDBY_HOST
  local label="$1" inventory="$2" boxes="$3" web="$4" db="$5" target="$6" standby="$7" standby_host="$8" name ip
  boot_fresh_boxes "$label" "$boxes"

  export ACME_INVENTORY="inventories/test/$inventory" ACME_ANSIBLE_DIR="$REPO/ansible"
  export ACME_WEB_IP=$(cat "$ACME_RUN/$web.ip") ACME_DB_IP=$(cat "$ACME_RUN/$db.ip")
  export ACME_BOX_URL="https://$ACME_WEB_IP" ACME_SSH_KEY ACME_WORKER_HOST="$web" ACME_WORKER_IP="$ACME_WEB_IP"
  export ACME_GIVEN_CA="" ACME_EXPECT_CHAIN_WATCH=0

  log "[$label] site.yml on fresh hosts"
  timed "[$label] fresh converge (site.yml)" playbook "$label-site-1" -i "$ACME_INVENTORY" site.yml -e "version=$ACME_RUN/artifacts/$R1.tar.gz" "${WHEELHOUSE[@]}"
  box_ssh "$ACME_WEB_IP" sudo cat /etc/nginx/tls/acme.crt >"$ACME_RUN/$label-ca.crt"
  export ACME_BOX_CA="$ACME_RUN/$label-ca.crt" ACME_EXPECT_RELEASE="$R1" ACME_EXPECT_MARKER=""
  timed "[$label] checks after converge (with monitoring)" checks live

  log "[$label] deploy a release that fails on one route: deploy.yml's checks cannot see it"
  timed "[$label] deploy (deploy.yml, home page fails)" playbook "$label-deploy-broken-home" -i "$ACME_INVENTORY" deploy.yml -e "version=$ACME_RUN/artifacts/$RH.tar.gz" "${WHEELHOUSE[@]}"
  export ACME_BROKEN_HOME_RELEASE="$RH"
  log "[$label] users get 500s: the alert fires, the receiver rolls back, the alert resolves"
  timed "[$label] alert -> rollback -> resolved; once only" checks "alerts" -s

  offsite_and_drill "$label" "$db" "$target"

  # (After the drill: its fresh primary made site.yml rebuild the standby from it.)
  log "[$label] the hot standby: in sync; failover.yml under a stream of bookings; the old primary rebuilt"
  export ACME_STANDBY_IP=$(cat "$ACME_RUN/$standby.ip") ACME_STANDBY_HOST="$standby_host"
  timed "[$label] standby: a row from the primary within seconds" checks replica -s
  timed "[$label] failover.yml under bookings (none lost)" checks failover -s
  timed "[$label] site.yml: the old primary rebuilt as standby" playbook "$label-reversed-site" -i "$ACME_INVENTORY" site.yml -e "acme_db_primary=$standby_host" "${WHEELHOUSE[@]}"
  timed "[$label] the rebuilt standby streams from the new primary" checks reversed -s

  log "[$label] done: tearing its hosts down"
  for spec in $boxes; do box_destroy "${spec%%=*}"; done
}

# --- one scenario ------------------------------------------------------------------------------------
scenario() {  # scenario LABEL INVENTORY "name=ip ..." WEB_BOX DB_BOX PYPI [extra ansible args...]
  # PYPI=pypi: the first release's packages come from PyPI (as in production); later ones, and
  # all of them otherwise, from the wheelhouse.
  local label="$1" inventory="$2" boxes="$3" web="$4" db="$5" pypi="$6"
  shift 6
  local first_pip=("${WHEELHOUSE[@]}")
  [ "$pypi" = pypi ] && first_pip=()
  local extra=("$@") name ip
  boot_fresh_boxes "$label" "$boxes"

  export ACME_INVENTORY="inventories/test/$inventory" ACME_ANSIBLE_DIR="$REPO/ansible"
  export ACME_WEB_IP=$(cat "$ACME_RUN/$web.ip") ACME_DB_IP=$(cat "$ACME_RUN/$db.ip")
  export ACME_BOX_URL="https://$ACME_WEB_IP" ACME_SSH_KEY ACME_WORKER_HOST="$web" ACME_WORKER_IP="$ACME_WEB_IP"
  export ACME_GIVEN_CA="${ACME_GIVEN_CA:-}" ACME_EXPECT_CHAIN_WATCH="${ACME_EXPECT_CHAIN_WATCH:-0}"
  export ACME_EXTRA_ARGS="${extra[*]}"

  log "[$label] site.yml on fresh hosts"
  timed "[$label] fresh converge (site.yml)" playbook "$label-site-1" -i "$ACME_INVENTORY" site.yml -e "version=$ACME_RUN/artifacts/$R1.tar.gz" "${first_pip[@]}" "${extra[@]}"
  if [ -z "${ACME_GIVEN_CA:-}" ]; then
    box_ssh "$ACME_WEB_IP" sudo cat /etc/nginx/tls/acme.crt >"$ACME_RUN/$label-ca.crt"
    export ACME_BOX_CA="$ACME_RUN/$label-ca.crt"
  else
    export ACME_BOX_CA="$ACME_GIVEN_CA"
  fi
  export ACME_EXPECT_RELEASE="$R1" ACME_EXPECT_MARKER=""
  timed "[$label] checks after converge" checks live

  log "[$label] site.yml again: nothing may change"
  timed "[$label] idempotent re-run (site.yml)" playbook "$label-site-2" -i "$ACME_INVENTORY" site.yml -e "version=$ACME_RUN/artifacts/$R1.tar.gz" "${extra[@]}"
  assert_nothing_changed "$label-site-2"

  log "[$label] deploy a second release while requests keep coming"
  hammer_start "$label-deploy"
  timed "[$label] deploy (deploy.yml, new release)" playbook "$label-deploy-2" -i "$ACME_INVENTORY" deploy.yml -e "version=$ACME_RUN/artifacts/$R2.tar.gz" "${WHEELHOUSE[@]}"
  hammer_stop "$label-deploy"
  export ACME_EXPECT_RELEASE="$R2" ACME_EXPECT_MARKER="$R2"
  timed "[$label] checks of the second release" checks "$RELEASE_CHECKS"

  log "[$label] roll back to the first release"
  hammer_start "$label-rollback"
  timed "[$label] rollback (rollback.yml)" playbook "$label-rollback" -i "$ACME_INVENTORY" rollback.yml
  hammer_stop "$label-rollback"
  export ACME_EXPECT_RELEASE="$R1" ACME_EXPECT_MARKER=""
  timed "[$label] checks after the rollback" checks "$RELEASE_CHECKS"

  log "[$label] a broken release must be rolled back by deploy.yml itself"
  t0=$SECONDS
  if playbook "$label-deploy-broken" -i "$ACME_INVENTORY" deploy.yml -e "version=$ACME_RUN/artifacts/$RB.tar.gz" "${WHEELHOUSE[@]}"; then
    echo "deploy.yml accepted a broken release" >&2
    return 1
  fi
  printf '%-48s %4d s\n' "[$label] deploy of a broken release (rolled back)" $((SECONDS - t0)) | tee -a "$TIMES" >&2
  tr -s ' \n' ' ' <"$ACME_RUN/$label-deploy-broken.log" | grep -q "Release $RB failed .*Rolled back to $R1" \
    || { echo "deploy.yml failed without rolling back to $R1" >&2; return 1; }
  echo "deploy.yml refused $RB and rolled back to $R1, as it should" >&2
  timed "[$label] checks after the automatic rollback" checks "$RELEASE_CHECKS"

  log "[$label] SIGKILL Gunicorn's master, a Gunicorn worker and an RQ worker"
  timed "[$label] systemd restarts killed processes" checks restart

  log "[$label] back up, drop a table, restore"
  timed "[$label] backup + drop + restore.yml" checks backup

  log "[$label] power the hosts off and boot them again"
  pids=()
  for spec in $boxes; do box_poweroff "${spec%%=*}" & pids+=($!); done
  wait_all "powering off" "${pids[@]}"
  t0=$SECONDS
  pids=()
  for spec in $boxes; do box_boot "${spec%%=*}" & pids+=($!); done
  wait_all "booting again" "${pids[@]}"
  timed "[$label] everything back after a reboot" checks live
  printf '%-48s %4d s\n' "[$label] reboot to all checks green" $((SECONDS - t0)) | tee -a "$TIMES" >&2

  log "[$label] done: tearing its hosts down"
  for spec in $boxes; do box_destroy "${spec%%=*}"; done
}

wait_all() {  # wait_all WHAT PID...: wait for these background jobs; fail if any failed
  local what="$1" rc=0 pid
  shift
  for pid in "$@"; do
    wait "$pid" || rc=1
  done
  [ $rc = 0 ] || { echo "$what failed" >&2; return 1; }
}

# --- run ------------------------------------------------------------------------------------------------
# Lint in the background (it takes half a minute or more) while the artifacts are built.
log "ansible-lint --profile production (in the background)"
(cd ansible && timed "ansible-lint --profile production" ansible-lint --profile production --nocolor -q) \
  >"$ACME_RUN/ansible-lint.log" 2>&1 </dev/null &
LINT_PID=$!
lint_result() {
  local rc=0
  wait "$LINT_PID" || rc=$?
  LINT_PID=""
  cat "$ACME_RUN/ansible-lint.log" >&2
  [ $rc = 0 ] || { echo "ansible-lint --profile production failed" >&2; return 1; }
}
timed "release artifacts of the working tree" make_artifacts
lint_result

# The scenarios' hosts have their own addresses, names and inventories, so both run at the same
# time (DEPLOY_PARALLEL=0: one after the other). Each runs in its own process group (set -m),
# so that the teardown can stop it with everything it started; its output goes to
# $ACME_RUN/<label>.out and, prefixed with its label, here.
run_scenario() {  # run_scenario LABEL scenario-args...: start it in the background
  run_scenario_with scenario "$@"
}
run_scenario_with() {  # run_scenario_with FUNCTION LABEL args...
  local fn="$1" label="$2"
  shift 2
  # (A scenario that fails stops its hammer on the way out.)
  ( trap '[ -z "${HAMMER_PID:-}" ] || kill -TERM "$HAMMER_PID" 2>/dev/null' EXIT
    "$fn" "$label" "$@" ) </dev/null > >(tee "$ACME_RUN/$label.out" | sed -u "s/^/$label| /" >&2) 2>&1 &
  SCENARIO_PIDS+=($!)
  SCENARIO_PGIDS+=($!)   # set -m: a job's process group is its first process
  SCENARIO_LABELS+=("$label")
  if [ "${DEPLOY_PARALLEL:-1}" = 0 ]; then wait_scenarios; fi
}
FAILED_SCENARIOS=()
wait_scenarios() {
  local i rc
  for i in "${!SCENARIO_PIDS[@]}"; do
    rc=0
    wait "${SCENARIO_PIDS[$i]}" || rc=$?
    [ "$rc" = 0 ] || FAILED_SCENARIOS+=("${SCENARIO_LABELS[$i]} (exit $rc)")
  done
  SCENARIO_PIDS=() SCENARIO_LABELS=() SCENARIO_PGIDS=()
}
set -m

if [ "$MODE" = one ] || [ "$MODE" = ci ] || [ "$MODE" = all ]; then
  ACME_GIVEN_CA="" ACME_EXPECT_CHAIN_WATCH=0 \
    run_scenario one single.yml "box1=$ACME_NET_PREFIX.2" box1 box1 pypi
fi

if [ "$MODE" = two ] || [ "$MODE" = ci ] || [ "$MODE" = all ]; then
  # A certificate "given" by the admin: made here by a throw-away CA the checks trust.
  tls="$ACME_RUN/tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj "/CN=ACME deploy-test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=acme.test" \
    -keyout "$tls/acme.key" -out "$tls/acme.csr" 2>/dev/null
  openssl x509 -req -in "$tls/acme.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
    -extfile <(printf 'subjectAltName=DNS:acme.test,IP:%s.3\n' "$ACME_NET_PREFIX") -out "$tls/acme.crt" 2>/dev/null
  "$PYTHON" - "$tls" <<'PY'
import json, sys
d = sys.argv[1]
json.dump({"nginx_tls_certificate": open(f"{d}/acme.crt").read(),
           "nginx_tls_certificate_key": open(f"{d}/acme.key").read()}, open(f"{d}/given.json", "w"))
PY
  # The two-host inventory configures a chain: the chain watcher must run on its worker host.
  ACME_GIVEN_CA="$tls/ca.crt" ACME_EXPECT_CHAIN_WATCH=1 \
    run_scenario two two-hosts.yml "app1=$ACME_NET_PREFIX.3 db1=$ACME_NET_PREFIX.4" app1 db1 wheelhouse -e "@$tls/given.json"
fi
if [ "$MODE" = drill ]; then
  ACME_DRILL_HIRES="${ACME_DRILL_HIRES:-2000000}" \
    run_scenario_with drill_scenario drill drill-hosts.yml \
    "web3=$ACME_NET_PREFIX.5 db3=$ACME_NET_PREFIX.6 bak3=$ACME_NET_PREFIX.7" web3 db3 bak3
fi
if [ "$MODE" = three ] || [ "$MODE" = all ]; then
  run_scenario_with alert_scenario three three-hosts.yml \
    "web3=$ACME_NET_PREFIX.5 db3=$ACME_NET_PREFIX.6 bak3=$ACME_NET_PREFIX.7 sb3=$ACME_NET_PREFIX.8" web3 db3 bak3 sb3 acme-sb3
fi
wait_scenarios
if [ "${#FAILED_SCENARIOS[@]}" -gt 0 ]; then
  echo "failed: ${FAILED_SCENARIOS[*]}" >&2
  exit 1
fi
