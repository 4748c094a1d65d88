#!/bin/bash
# lib.sh - helpers sourced by the guest scenarios (they run INSIDE the VM, see
# run-guest.sh). The host side (test/vm/vm-harness.ts) passes:
#   RESULTS        per-run results directory inside the 9p share (host reads it back)
#   THINSHIP_REPO  the repository root (shared at the same path)
#   THINSHIP_CLI   the bundled CLI, dist/bin/thinship.js
# Results format (read by vm-harness.ts readCapture): one directory per command,
#   $RESULTS/<name>/{argv,rc,stdout,stderr,tpool-status}
set -euo pipefail
: "${RESULTS:?RESULTS must name the results directory}"
: "${THINSHIP_CLI:?THINSHIP_CLI must name dist/bin/thinship.js}"
mkdir -p "$RESULTS"

uptime_s() { cut -d' ' -f1 /proc/uptime; }
step() { echo "== [$(uptime_s)] $*"; }

# dm name of a pool's thin-pool layer: hyphens inside VG/LV names are doubled.
tpool_dm() { local vg=$1 pool=$2; echo "${vg//-/--}-${pool//-/--}-tpool"; }

# 7th field of `dmsetup status <tpool>`: "-" when no metadata snapshot is held,
# else the held metadata root block.
held_root() { dmsetup status "$1" | awk '{print $7}'; }

# The bound of a wait for a state that must come (a child started, a tool
# exited, a daemon listening). It only stops a stuck run: under emulation on a
# loaded host a step that takes a second on an idle one can take minutes, so it
# is generous (the guest as a whole is bounded by run-guest.sh's RV_TIMEOUT).
STATE_WAIT_S=${STATE_WAIT_S:-300}

# wait_until TIMEOUT_S CMD... : polls CMD every 0.1 s; fails after TIMEOUT_S.
wait_until() {
  local limit=$1; shift
  local deadline; deadline=$(awk -v a="$(uptime_s)" -v b="$limit" 'BEGIN{print a+b}')
  until "$@"; do
    if awk -v a="$(uptime_s)" -v b="$deadline" 'BEGIN{exit !(a>b)}'; then return 1; fi
    sleep 0.1   # busybox sleep takes fractions
  done
}

# Layout ops, in units of pool chunks (CHUNK_BYTES); the host test models the same list:
#   w:START+COUNT  write COUNT whole chunks of random data from chunk START
#   d:START+COUNT  discard COUNT whole chunks (unmaps them)
#   s:CHUNK        write 4 KiB inside the chunk (maps/copies the whole chunk)
#   p:CHUNK        discard half a chunk (dm-thin must leave it mapped)
apply_ops() {
  local dev=$1 cb=$2; shift 2
  local op a start count
  for op in "$@"; do
    case $op in
      w:*+*) a=${op#w:}; start=${a%+*}; count=${a#*+}
             dd if=/dev/urandom of="$dev" bs="$cb" count="$count" seek="$start" iflag=fullblock conv=fsync 2>/dev/null ;;
      d:*+*) a=${op#d:}; start=${a%+*}; count=${a#*+}
             blkdiscard -o $((start * cb)) -l $((count * cb)) "$dev" ;;
      s:*)   a=${op#s:}
             dd if=/dev/urandom of="$dev" bs=4096 count=1 seek=$((a * cb / 4096 + 3)) conv=fsync 2>/dev/null ;;
      p:*)   a=${op#p:}
             blkdiscard -o $((a * cb + cb / 4)) -l $((cb / 2)) "$dev" ;;
      *) echo "apply_ops: unknown op '$op'" >&2; return 1 ;;
    esac
  done
}

# make_pool_with_snaps DISK VG POOL CHUNK POOL_SIZE LV LV_SIZE SNAP1 SNAP2 "OPS1" "OPS2"
# Pool + thin LV; OPS1; snapshot SNAP1; OPS2; sync; snapshot SNAP2.
make_pool_with_snaps() {
  local disk=$1 vg=$2 pool=$3 chunk=$4 psize=$5 lv=$6 lvsize=$7 snap1=$8 snap2=$9 ops1=${10} ops2=${11}
  local cb
  pvcreate -q "$disk"
  vgcreate -q "$vg" "$disk"
  lvcreate -q --type thin-pool -L "$psize" --chunksize "$chunk" -n "$pool" "$vg" 2>&1 | grep -v 'can address at most' || true
  lvs "$vg/$pool" >/dev/null
  lvcreate -q -V "$lvsize" -T "$vg/$pool" -n "$lv"
  cb=$(lvs --noheadings --units b --nosuffix -o chunk_size "$vg/$pool" | tr -d ' ')
  # shellcheck disable=SC2086 # ops are space-separated tokens
  apply_ops "/dev/$vg/$lv" "$cb" $ops1
  sync
  lvcreate -q -s -n "$snap1" "$vg/$lv"
  # shellcheck disable=SC2086
  apply_ops "/dev/$vg/$lv" "$cb" $ops2
  sync
  lvcreate -q -s -n "$snap2" "$vg/$lv"
}

# run_cli NAME TPOOL_DM [VAR=VALUE...] -- CLI ARGS...
# Runs the CLI to completion (never fails the script) and records its exit
# status, stdout, stderr and the pool's status right after it exited.
run_cli() {
  local name=$1 tpool=$2; shift 2
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  local d=$RESULTS/$name rc=0
  mkdir -p "$d"
  printf '%s\n' "$*" > "$d/argv"
  env "${envs[@]}" node "$THINSHIP_CLI" "$@" > "$d/stdout" 2> "$d/stderr" || rc=$?
  echo "$rc" > "$d/rc"
  dmsetup status "$tpool" > "$d/tpool-status" 2>&1 || true
  echo "  $name: exit $rc, stdout $(wc -c < "$d/stdout") B, held root after: $(awk '{print $7}' "$d/tpool-status")"
}

# make_layout_pool DISK PREFIX: make_pool_with_snaps with the values the host
# passed as PREFIX_VG, PREFIX_POOL, PREFIX_CHUNK, PREFIX_POOL_SIZE, PREFIX_LV,
# PREFIX_LV_SIZE, PREFIX_SNAP1, PREFIX_SNAP2, PREFIX_OPS1, PREFIX_OPS2.
make_layout_pool() {
  local disk=$1 p=$2 v
  local -a a=()
  for v in VG POOL CHUNK POOL_SIZE LV LV_SIZE SNAP1 SNAP2 OPS1 OPS2; do
    v=${p}_$v; [ -n "${!v+x}" ] || { echo "make_layout_pool: $v is not set" >&2; return 1; }
    a+=("${!v}")
  done
  make_pool_with_snaps "$disk" "${a[@]}"
}

# pids of processes whose command name is NAME and, if PPID is given, whose parent is PPID
procs_named() {
  local name=$1 ppid=${2:-} f s comm rest
  local -a st
  for f in /proc/[0-9]*/stat; do
    # builtin read, not $(cat): a fork per process costs ~5 ms under TCG
    read -r s 2>/dev/null < "$f" || continue
    [ -n "$s" ] || continue
    comm=${s#*(}; comm=${comm%)*}
    rest=${s##*) }; read -r -a st <<< "$rest"   # st[0]=state st[1]=ppid
    [ "$comm" = "$name" ] || continue
    [ -z "$ppid" ] || [ "${st[1]}" = "$ppid" ] || continue
    [ "${st[0]}" != Z ] || continue
    echo "${s%% *}"
  done
}

# save NAME CMD... : stdout+stderr of a command into $RESULTS/NAME (never fails)
save() { local f=$RESULTS/$1; shift; "$@" > "$f" 2>&1 || echo "(exit $?)" >> "$f"; }

# lvs report the host test reads (all values strings, bytes without suffix)
save_lvs() { save "$1" lvs -a --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_attr,lv_active,thin_id,lv_size,chunk_size,origin; }
