# Throw-away Debian 12 hosts for the deploy test: a cached clean root, booted with
# systemd-nspawn in its own network namespace, reachable from this machine over SSH.
# Sourced by tests/deploy/run.sh. Needs root, debootstrap, systemd-container, iptables.
# Only the test network (ACME_NET, 10.77.0.0/24 by default) is ever touched; every change
# to the host (bridge, namespaces, NAT rule, ip_forward) is undone by net_down.

ACME_CACHE="${ACME_DEPLOY_CACHE:-/var/cache/acme-deploy-test}"
ACME_NET_PREFIX="${ACME_NET_PREFIX:-10.77.0}"
ACME_BRIDGE="acmetestbr0"
ACME_NAT_COMMENT="acme-deploy-test"
ACME_SUITE="bookworm"
ACME_MIRROR="${ACME_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Packages a cloud image would have; bump ACME_BASE_VERSION when this list changes.
ACME_BASE_PACKAGES="systemd systemd-sysv dbus openssh-server sudo iproute2 curl procps python3-packaging python3-apt less"
ACME_BASE_VERSION="1"
ACME_BASE_TAR="$ACME_CACHE/debian-$ACME_SUITE-base-v$ACME_BASE_VERSION.tar"
ACME_RUN="$ACME_CACHE/run"
ACME_SSH_KEY="$ACME_CACHE/ssh/id_ed25519"

log() { printf '\n\033[1m== %s ==\033[0m\n' "$*" >&2; }

host_prereqs() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v ssh >/dev/null || missing+=(openssh-client)
  /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} on this machine"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# A clean Debian root with what a cloud image has (systemd, sshd, sudo, python3), tarred once
# and reused: unpacking the tarball takes about a second, building it about two minutes.
build_base() {
  if [ -s "$ACME_BASE_TAR" ]; then
    return 0
  fi
  log "building the clean Debian $ACME_SUITE root (cached in $ACME_BASE_TAR)"
  mkdir -p "$ACME_CACHE"
  local root="$ACME_CACHE/base-build.$$"
  rm -rf "$root"
  debootstrap --variant=minbase --include=python3,ca-certificates "$ACME_SUITE" "$root" "$ACME_MIRROR" >"$ACME_CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$ACME_CACHE/debootstrap.log" >&2; rm -rf "$root"; return 1; }
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $ACME_MIRROR $ACME_SUITE main
deb $ACME_MIRROR $ACME_SUITE-updates main
deb http://deb.debian.org/debian-security $ACME_SUITE-security main
SOURCES
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  systemd-nspawn --register=no --keep-unit -q -D "$root" --pipe sh -ec "
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $ACME_BASE_PACKAGES >/dev/null
    apt-get clean
    rm -rf /var/lib/apt/lists/*
  " || { rm -rf "$root"; return 1; }
  # Per-box identity is made when a box is created.
  rm -f "$root"/etc/ssh/ssh_host_* "$root/etc/hostname"
  : >"$root/etc/machine-id"
  tar -C "$root" -cf "$ACME_BASE_TAR.tmp" . && mv "$ACME_BASE_TAR.tmp" "$ACME_BASE_TAR"
  rm -rf "$root"
}

# --- the test network --------------------------------------------------------------------------
# A bridge on this machine (.1) with one veth per box; each box lives in its own network
# namespace. NAT lets the boxes reach the Debian mirror and PyPI.
net_up() {
  mkdir -p "$ACME_RUN"
  if [ ! -f "$ACME_RUN/ip_forward.orig" ]; then
    sysctl -n net.ipv4.ip_forward >"$ACME_RUN/ip_forward.orig"
  fi
  if ! ip link show "$ACME_BRIDGE" >/dev/null 2>&1; then
    ip link add "$ACME_BRIDGE" type bridge
    ip addr add "$ACME_NET_PREFIX.1/24" dev "$ACME_BRIDGE"
    ip link set "$ACME_BRIDGE" up
  fi
  sysctl -qw net.ipv4.ip_forward=1
  if ! iptables -t nat -C POSTROUTING -s "$ACME_NET_PREFIX.0/24" ! -d "$ACME_NET_PREFIX.0/24" \
      -m comment --comment "$ACME_NAT_COMMENT" -j MASQUERADE 2>/dev/null; then
    iptables -t nat -A POSTROUTING -s "$ACME_NET_PREFIX.0/24" ! -d "$ACME_NET_PREFIX.0/24" \
      -m comment --comment "$ACME_NAT_COMMENT" -j MASQUERADE
  fi
  # Let the boxes' traffic through even if this machine's FORWARD policy drops by default.
  for dir in -i -o; do
    if ! iptables -C FORWARD "$dir" "$ACME_BRIDGE" -m comment --comment "$ACME_NAT_COMMENT" -j ACCEPT 2>/dev/null; then
      iptables -I FORWARD "$dir" "$ACME_BRIDGE" -m comment --comment "$ACME_NAT_COMMENT" -j ACCEPT
    fi
  done
}

net_down() {
  while iptables -t nat -D POSTROUTING -s "$ACME_NET_PREFIX.0/24" ! -d "$ACME_NET_PREFIX.0/24" \
      -m comment --comment "$ACME_NAT_COMMENT" -j MASQUERADE 2>/dev/null; do :; done
  for dir in -i -o; do
    while iptables -D FORWARD "$dir" "$ACME_BRIDGE" -m comment --comment "$ACME_NAT_COMMENT" -j ACCEPT 2>/dev/null; do :; done
  done
  if ip link show "$ACME_BRIDGE" >/dev/null 2>&1; then
    ip link del "$ACME_BRIDGE"
  fi
  if [ -f "$ACME_RUN/ip_forward.orig" ]; then
    sysctl -qw "net.ipv4.ip_forward=$(cat "$ACME_RUN/ip_forward.orig")"
    rm -f "$ACME_RUN/ip_forward.orig"
  fi
}

# --- boxes ------------------------------------------------------------------------------------------
# The boxes' roots live on a tmpfs: unpacking, installing and deleting them is much faster.
ACME_BOXES="$ACME_CACHE/boxes"
boxes_up() {
  mkdir -p "$ACME_BOXES"
  mountpoint -q "$ACME_BOXES" || mount -t tmpfs -o "size=${ACME_BOXES_TMPFS_SIZE:-8g},mode=0755" acme-deploy-test "$ACME_BOXES"
}
boxes_down() {
  if mountpoint -q "$ACME_BOXES"; then umount "$ACME_BOXES" || umount -l "$ACME_BOXES"; fi
}
box_root() { echo "$ACME_BOXES/$1"; }
box_ns() { echo "acmet-$1"; }

# box_create NAME IP: unpack the clean root, give it an identity, a sudoer with our key, this
# machine's CA certificates (its HTTPS may be re-signed by a local CA), and a network.
box_create() {
  local name="$1" ip="$2" root ns
  root=$(box_root "$name")
  ns=$(box_ns "$name")
  rm -rf "$root"
  mkdir -p "$root"
  tar -C "$root" -xf "$ACME_BASE_TAR"
  echo "$name" >"$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$name" >"$root/etc/hosts"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  tr -d '-' </proc/sys/kernel/random/uuid >"$root/etc/machine-id"
  # Like a cloud image a while after it was made: the apt lists are stale, so Ansible refreshes them.
  rm -f "$root/var/lib/apt/periodic/update-success-stamp"
  touch -d '2 days ago' "$root/var/lib/apt/lists"
  chroot "$root" ssh-keygen -A >/dev/null
  chroot "$root" useradd --create-home --shell /bin/bash debian
  install -d -m 0700 -o "$(chroot "$root" id -u debian)" -g "$(chroot "$root" id -g debian)" "$root/home/debian/.ssh"
  install -m 0600 -o "$(chroot "$root" id -u debian)" -g "$(chroot "$root" id -g debian)" \
    "$ACME_SSH_KEY.pub" "$root/home/debian/.ssh/authorized_keys"
  echo "debian ALL=(ALL) NOPASSWD:ALL" >"$root/etc/sudoers.d/debian"
  chmod 0440 "$root/etc/sudoers.d/debian"
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  # Test speed only: an apt cache per box name and a wheelhouse, kept between runs (bind-mounted;
  # apt locks its cache, so boxes that run at the same time cannot share one).
  mkdir -p "$ACME_CACHE/apt-archives/$name/partial" "$ACME_CACHE/wheels"

  ip netns add "$ns"
  ip link add "acmet-$name" type veth peer name eth0 netns "$ns"
  ip link set "acmet-$name" master "$ACME_BRIDGE" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$ACME_NET_PREFIX.1"
  echo "$ip" >"$ACME_RUN/$name.ip"
}

# --- each box's own cgroup ------------------------------------------------------------------------
# With --keep-unit and no systemd on this machine, nspawn puts the box's systemd under the
# cgroup nspawn itself runs in (".../payload"). Two boxes started from the same cgroup would
# share one tree: one box's systemd then removes or kills the other's service cgroups
# (seen: nftables.service "Failed at step CGROUP" on db1 after app1's nftables ran). So each
# box is started from a cgroup of its own, in every hierarchy that tracks processes
# (cgroup v1's name=systemd and the cgroup2 mount), and those are removed with the box.
ACME_CGROUP="acme-deploy-test"
box_cgroup_dirs() {  # the box's cgroup directories (they need not exist)
  local name="$1" mnt
  awk '($3 == "cgroup2") || ($3 == "cgroup" && $4 ~ /(^|,)name=systemd(,|$)/) {print $2}' /proc/mounts |
    while read -r mnt; do
      echo "$mnt/$ACME_CGROUP/$name"
    done
}
box_cgroup_enter() {  # box_cgroup_enter NAME: move this (sub)shell into the box's own cgroups
  local dir
  for dir in $(box_cgroup_dirs "$1"); do
    mkdir -p "$dir"
    echo "$BASHPID" >"$dir/cgroup.procs"
  done
}
box_cgroup_kill() {  # box_cgroup_kill NAME: SIGKILL whatever still runs in the box's cgroups
  # (nspawn killed with SIGKILL leaves its container running: seen here.)
  local dir pids _
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pids=""
    for dir in $(box_cgroup_dirs "$1"); do
      [ -d "$dir" ] && pids+=" $(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')"
    done
    [ -n "${pids// /}" ] || return 0
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  done
}
box_cgroup_remove() {  # box_cgroup_remove NAME: remove the box's (empty by now) cgroups
  local dir
  for dir in $(box_cgroup_dirs "$1"); do
    [ -d "$dir" ] || continue
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    rmdir "$(dirname "$dir")" 2>/dev/null || true   # the common parent, once no box is left
  done
}

# box_boot NAME: boot it with systemd (in the background) and wait for SSH.
box_boot() {
  local name="$1" root ip
  root=$(box_root "$name")
  ip=$(cat "$ACME_RUN/$name.ip")
  # CAP_NET_ADMIN: the box manages its own firewall (in its own network namespace only).
  (
    box_cgroup_enter "$name"
    exec systemd-nspawn --register=no --keep-unit --quiet -b -D "$root" -M "$name" --capability=CAP_NET_ADMIN \
      --network-namespace-path="/run/netns/$(box_ns "$name")" \
      --bind="$ACME_CACHE/apt-archives/$name:/var/cache/apt/archives" \
      --bind-ro="$ACME_CACHE/wheels:/var/cache/acme/wheels"
  ) >>"$ACME_RUN/$name.console" 2>&1 </dev/null &
  echo $! >"$ACME_RUN/$name.pid"
  wait_for_ssh "$name" "$ip"
}

wait_for_ssh() {
  local name="$1" ip="$2" deadline=$((SECONDS + 120))
  until box_ssh "$ip" true 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "box $name ($ip) did not answer SSH within 120 s; console:" >&2
      tail -30 "$ACME_RUN/$name.console" >&2
      return 1
    fi
    if ! kill -0 "$(cat "$ACME_RUN/$name.pid")" 2>/dev/null; then
      echo "box $name stopped while booting; console:" >&2
      tail -30 "$ACME_RUN/$name.console" >&2
      return 1
    fi
    sleep 1
  done
}

box_ssh() {
  local ip="$1"
  shift
  ssh -i "$ACME_SSH_KEY" -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "debian@$ip" "$@"
}

# box_poweroff NAME: a clean shutdown from inside, as an admin would do; wait for it to end.
box_poweroff() {
  local name="$1" pid ip
  pid=$(cat "$ACME_RUN/$name.pid" 2>/dev/null || true)
  ip=$(cat "$ACME_RUN/$name.ip")
  box_ssh "$ip" sudo systemctl poweroff >/dev/null 2>&1 || true
  box_wait_gone "$name" "$pid" 90
}

box_wait_gone() {
  local name="$1" pid="$2" limit="$3" deadline
  [ -n "$pid" ] || return 0
  deadline=$((SECONDS + limit))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "box $name did not stop within ${limit}s" >&2
      return 1
    fi
    sleep 0.5
  done
  wait "$pid" 2>/dev/null || true
  rm -f "$ACME_RUN/$name.pid"
}

# box_destroy NAME: stop it (politely, then not), remove its namespace, veth and files.
box_destroy() {
  local name="$1" pid root
  root=$(box_root "$name")
  pid=$(cat "$ACME_RUN/$name.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true   # nspawn asks the box's systemd to shut down
    if ! box_wait_gone "$name" "$pid" 30 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      box_wait_gone "$name" "$pid" 10 || true
    fi
  fi
  rm -f "$ACME_RUN/$name.pid"
  box_cgroup_kill "$name"
  # nspawn unmounts on exit; make sure nothing under the root is left mounted regardless.
  awk -v r="$root" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  box_cgroup_remove "$name"
  ip link del "acmet-$name" 2>/dev/null || true
  ip netns del "$(box_ns "$name")" 2>/dev/null || true
  rm -rf "$root"
}
