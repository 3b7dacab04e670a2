#!/usr/bin/env bash
# ceph-rgw.sh — a throwaway single-node Ceph cluster (mon + osd [+ mgr] + radosgw)
# serving the S3 API on 127.0.0.1, for the tests of the S3 store (test/support/ceph-rgw.ts)
# and for trying the proxy against a real RADOS Gateway by hand.
#
#   ceph-rgw.sh up DIR     install missing Debian packages (apt-get), create the
#                          cluster under DIR, start it, create an S3 user; the
#                          last three lines printed are
#                            S3_ENDPOINT=http://127.0.0.1:PORT
#                            S3_ACCESS_KEY=...
#                            S3_SECRET_KEY=...
#                          (also written to DIR/s3.env). If the cluster under DIR
#                          is already up, prints them again and exits 0.
#   ceph-rgw.sh down DIR   stop the daemons that `up DIR` started (by their pid
#                          files under DIR/run, TERM then KILL) and delete the
#                          cluster files under DIR (CEPH_RGW_KEEP=1 keeps them).
#   ceph-rgw.sh status DIR print the daemons' pids and `ceph -s`.
#   ceph-rgw.sh gateway-stop DIR    stop only radosgw (the S3 endpoint goes away;
#                          the cluster and its objects stay): fault tests.
#   ceph-rgw.sh gateway-start DIR   start radosgw again on the same port.
#   ceph-rgw.sh user DIR UID        create (or show) another S3 user; prints
#                          S3_ACCESS_KEY=... and S3_SECRET_KEY=...
#
# Needs root (apt-get, and the daemons run as root). Everything — config, keys,
# data, logs, sockets, pid files — lives under DIR; nothing is written to
# /etc/ceph or /var/lib/ceph and no systemd unit is used. Every daemon binds to
# 127.0.0.1 only (mon and rgw on free ports picked at start; the osd and mgr take
# free ports from Ceph's own 6800-7300 range).
#
# Environment knobs:
#   CEPH_RGW_OBJECTSTORE  memstore (default: objects live in the osd's RAM, capped
#                         by CEPH_RGW_STORE_BYTES; fastest, nothing on disk while up)
#                         or bluestore (a sparse file DIR/osd/ceph-0/block of
#                         CEPH_RGW_STORE_BYTES; data on disk, RAM use bounded)
#   CEPH_RGW_STORE_BYTES  store size in bytes (default 2147483648 = 2 GiB)
#   CEPH_RGW_WITH_MGR     1 to also install and start a ceph-mgr (default 0:
#                         RGW does not need one; without it `ceph -s` shows
#                         "mgr: no daemons active" and no pool/usage figures)
#   CEPH_RGW_TIMEOUT      seconds allowed for each wait step (default 120)
#   CEPH_RGW_ACCESS_KEY / CEPH_RGW_SECRET_KEY   fixed S3 keys (default: random)
#   CEPH_RGW_KEEP         1: `down` leaves DIR's files in place
set -euo pipefail

PACKAGES=(ceph-mon ceph-osd radosgw curl)
OBJECTSTORE=${CEPH_RGW_OBJECTSTORE:-memstore}
STORE_BYTES=${CEPH_RGW_STORE_BYTES:-2147483648}
WITH_MGR=${CEPH_RGW_WITH_MGR:-0}
TIMEOUT=${CEPH_RGW_TIMEOUT:-120}
# Daemons in stop order (reverse of start order).
DAEMONS=(client.rgw.a mgr.a osd.0 mon.a)

log() { printf '[ceph-rgw %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -eq 2 || ($# -eq 3 && $1 == user) ]] || usage
CMD=$1
DIR=$(realpath -m -- "$2")
CONF=$DIR/ceph.conf

ceph_() { timeout 30 ceph -c "$CONF" --connect-timeout 20 "$@"; }
rgwadmin() { timeout 60 radosgw-admin -c "$CONF" "$@"; }

# pid of daemon NAME if its pid file exists and the process is alive and was
# started with our ceph.conf; nothing otherwise.
live_pid() {
  local f=$DIR/run/$1.pid pid
  [[ -s $f ]] || return 0
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [[ -r /proc/$pid/cmdline ]] || return 0
  [[ $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null) == *"$CONF "* ]] || return 0
  echo "$pid"
}

# True while PID exists and has not exited (an exited daemon stays a zombie
# until init reaps it, which can take a while in some containers).
running() {
  local state
  state=$(awk '{print $3}' /proc/"$1"/stat 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

free_port() {
  # Bind port 0 on 127.0.0.1 and report what the kernel chose.
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

rand_str() { # LEN CHARSET
  local out=""
  while [[ ${#out} -lt $1 ]]; do
    out+=$(head -c 256 /dev/urandom | LC_ALL=C tr -dc "$2")
  done
  printf '%s' "${out:0:$1}"
}

wait_for() { # DESCRIPTION COMMAND...
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${TIMEOUT}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

ensure_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}" $([[ $WITH_MGR == 1 ]] && echo ceph-mgr); do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == 'install ok installed' ]] || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for a dpkg lock held by another apt run rather than failing at once.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_conf() {
  local fsid=$1 mon_port=$2 rgw_port=$3
  cat >"$CONF" <<EOF
# Generated by ceph-rgw.sh: single-node test cluster, loopback only.
[global]
fsid = $fsid
mon initial members = a
mon host = [v2:127.0.0.1:$mon_port]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $DIR/keyring/\$name.keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = true
mon cluster log file = $DIR/log/cluster.log
crash dir = $DIR/crash
# One OSD: pools of size 1, CRUSH choosing OSDs rather than hosts.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1

[mon]
# Commit cluster-map changes (pool creation by rgw) sooner than the 1 s default.
paxos propose interval = 0.1
mon data = $DIR/mon/\$cluster-\$id
keyring = $DIR/mon/\$cluster-\$id/keyring

[mgr]
mgr data = $DIR/mgr/\$cluster-\$id
mgr initial modules = iostat

[osd]
osd data = $DIR/osd/\$cluster-\$id
osd objectstore = $OBJECTSTORE
memstore device bytes = $STORE_BYTES
bluestore block create = true
bluestore block size = $STORE_BYTES
bluestore block db create = false
bluestore block wal create = false
bluestore fsck on mkfs = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd memory target = 939524096
osd op num shards = 2
osd op num threads per shard = 2

[client.rgw.a]
rgw data = $DIR/rgw/\$cluster-\$id
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw thread pool size = 32
rgw enable usage log = false
# Deleted/overwritten objects' data goes to garbage collection, by default
# after 2 h; reclaim it within ~a minute so a capped test store doesn't fill up.
rgw gc obj min wait = 30
rgw gc processor period = 30
# Lifecycle (bucket expiration rules) workers: off, so that rgw stops in
# well under a second instead of ~5 s. Rules are still stored, never run.
rgw enable lc threads = false
EOF
}

print_env() {
  log "cluster under $DIR is up"
  cat "$DIR/s3.env"
}

cleanup_failed_up() {
  local rc=$?
  ((rc == 0)) && return 0
  log "up failed (exit $rc); last log lines:"
  local f
  for f in "$DIR"/log/*; do
    [[ -f $f ]] || continue
    echo "--- $f" >&2
    tail -n 15 "$f" >&2
  done
  stop_daemons
  log "stopped what had started; files left under $DIR for inspection"
}

stop_daemons() { # [NAME...]: default all, in stop order
  local name pid deadline
  (($# > 0)) || set -- "${DAEMONS[@]}"
  for name in "$@"; do
    pid=$(live_pid "$name")
    [[ -n $pid ]] || continue
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    while running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if running "$pid"; then
      log "$name (pid $pid) still running after 30s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

cmd_up() {
  [[ $(id -u) == 0 ]] || die "must run as root"
  case $OBJECTSTORE in memstore | bluestore) ;; *) die "CEPH_RGW_OBJECTSTORE must be memstore or bluestore" ;; esac

  if [[ -n $(live_pid client.rgw.a) && -s $DIR/s3.env ]]; then
    print_env
    return 0
  fi
  if [[ -e $DIR && -n $(ls -A "$DIR" 2>/dev/null) && ! -e $CONF ]]; then
    die "$DIR is not empty and holds no cluster of this script; give an empty or new folder"
  fi
  local t0=$SECONDS
  ensure_packages
  local t_pkg=$((SECONDS - t0))

  # A stale cluster of ours (not running): stop leftovers and start afresh.
  if [[ -e $CONF ]]; then
    stop_daemons
    remove_files
  fi
  mkdir -p "$DIR"/{keyring,run,log,crash,mon,osd,rgw}
  [[ $WITH_MGR == 1 ]] && mkdir -p "$DIR/mgr"
  trap cleanup_failed_up EXIT

  local fsid mon_port rgw_port
  fsid=$(</proc/sys/kernel/random/uuid)
  mon_port=$(free_port)
  rgw_port=$(free_port)
  while [[ $rgw_port == "$mon_port" ]]; do rgw_port=$(free_port); done
  write_conf "$fsid" "$mon_port" "$rgw_port"

  # --- mon ---
  log "creating mon.a on 127.0.0.1:$mon_port"
  ceph-authtool --create-keyring "$DIR/keyring/mon-bootstrap.keyring" --gen-key -n mon. \
    --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$DIR/keyring/client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring/mon-bootstrap.keyring" \
    --import-keyring "$DIR/keyring/client.admin.keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" \
    "$DIR/run/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/run/monmap" \
    --keyring "$DIR/keyring/mon-bootstrap.keyring"
  ceph-mon -c "$CONF" -i a </dev/null >>"$DIR/log/mon.a.out" 2>&1
  wait_for "mon.a to answer" ceph_ mon stat

  # --- mgr (optional) ---
  if [[ $WITH_MGR == 1 ]]; then
    log "creating mgr.a"
    mkdir -p "$DIR/mgr/ceph-a"
    ceph_ auth get-or-create mgr.a mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
      -o "$DIR/keyring/mgr.a.keyring"
    ceph-mgr -c "$CONF" -i a </dev/null >>"$DIR/log/mgr.a.out" 2>&1
  fi

  # --- osd ---
  log "creating osd.0 ($OBJECTSTORE, $STORE_BYTES bytes)"
  local osd_uuid osd_key osd_id
  osd_uuid=$(</proc/sys/kernel/random/uuid)
  osd_key=$(ceph-authtool --gen-print-key)
  printf '{"cephx_secret": "%s"}\n' "$osd_key" >"$DIR/run/osd-new.json"
  osd_id=$(ceph_ osd new "$osd_uuid" -i "$DIR/run/osd-new.json")
  rm -f "$DIR/run/osd-new.json"
  [[ $osd_id == 0 ]] || die "expected osd id 0, got '$osd_id'"
  mkdir -p "$DIR/osd/ceph-0"
  ceph-authtool --create-keyring "$DIR/keyring/osd.0.keyring" --name osd.0 \
    --add-key "$osd_key" >/dev/null
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/osd.0-mkfs.out" 2>&1 ||
    { cat "$DIR/log/osd.0-mkfs.out" >&2; die "ceph-osd --mkfs failed"; }
  ceph-osd -c "$CONF" -i 0 </dev/null >>"$DIR/log/osd.0.out" 2>&1
  wait_for "osd.0 to be up" osd_up

  # --- rgw ---
  log "starting radosgw on 127.0.0.1:$rgw_port"
  mkdir -p "$DIR/rgw/ceph-rgw.a"
  ceph_ auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
    -o "$DIR/keyring/client.rgw.a.keyring"
  start_gateway "$rgw_port"

  # --- S3 user ---
  local ak sk
  ak=${CEPH_RGW_ACCESS_KEY:-$(rand_str 20 'A-Z0-9')}
  sk=${CEPH_RGW_SECRET_KEY:-$(rand_str 40 'A-Za-z0-9')}
  rgwadmin user create --uid=s3test --display-name="S3 test user" \
    --access-key="$ak" --secret-key="$sk" >/dev/null
  umask 077
  {
    echo "S3_ENDPOINT=http://127.0.0.1:$rgw_port"
    echo "S3_ACCESS_KEY=$ak"
    echo "S3_SECRET_KEY=$sk"
  } >"$DIR/s3.env"
  trap - EXIT
  log "packages ${t_pkg}s, cluster $((SECONDS - t0 - t_pkg))s"
  print_env
}

start_gateway() { # PORT
  radosgw -c "$CONF" -n client.rgw.a </dev/null >>"$DIR/log/client.rgw.a.out" 2>&1
  wait_for "radosgw to answer HTTP" curl -fsS -o /dev/null "http://127.0.0.1:$1/"
}

gateway_port() {
  sed -n 's/^rgw frontends = .*endpoint=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$CONF"
}

cmd_gateway_stop() {
  [[ -e $CONF ]] || die "no cluster under $DIR"
  stop_daemons client.rgw.a
}

cmd_gateway_start() {
  [[ -e $CONF ]] || die "no cluster under $DIR"
  [[ -n $(live_pid client.rgw.a) ]] && return 0
  start_gateway "$(gateway_port)"
  log "radosgw is up again"
}

cmd_user() { # UID
  [[ -e $CONF ]] || die "no cluster under $DIR"
  [[ $1 =~ ^[a-z0-9-]+$ ]] || die "user id must be lowercase letters, digits and -"
  local info
  info=$(rgwadmin user info --uid="$1" 2>/dev/null) ||
    info=$(rgwadmin user create --uid="$1" --display-name="$1" --gen-access-key --gen-secret)
  python3 -c 'import json,sys; k=json.load(sys.stdin)["keys"][0]; print("S3_ACCESS_KEY="+k["access_key"]); print("S3_SECRET_KEY="+k["secret_key"])' <<<"$info"
}

osd_up() {
  local dump
  dump=$(ceph_ osd dump 2>/dev/null) || return 1
  [[ $dump == *$'\nosd.0 up '* ]]
}

remove_files() {
  # Only what this script creates.
  rm -rf "$DIR"/{keyring,run,log,crash,mon,osd,mgr,rgw} "$DIR/ceph.conf" "$DIR/s3.env"
  rmdir "$DIR" 2>/dev/null || true
}

cmd_down() {
  [[ -e $CONF ]] || { log "no cluster under $DIR"; return 0; }
  stop_daemons
  if [[ ${CEPH_RGW_KEEP:-0} == 1 ]]; then
    log "stopped; files kept under $DIR"
  else
    remove_files
    log "stopped; files removed"
  fi
}

cmd_status() {
  [[ -e $CONF ]] || die "no cluster under $DIR"
  local name
  for name in "${DAEMONS[@]}"; do
    printf '%-14s %s\n' "$name" "$(live_pid "$name" || true)"
  done
  ceph_ -s || true
}

case $CMD in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  gateway-stop) cmd_gateway_stop ;;
  gateway-start) cmd_gateway_start ;;
  user) cmd_user "$3" ;;
  *) usage ;;
esac
