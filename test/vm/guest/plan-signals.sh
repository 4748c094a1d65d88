#!/bin/bash
# plan-signals.sh - runs INSIDE the VM. The metadata snapshot reservation must
# be released whatever happens to a `thinship plan`:
#   sigterm     SIGTERM to the plan while a (slowed) thin_dump runs
#   sigint      SIGINT to an incremental plan while a (slowed) thin_delta runs
#   kill-child  SIGKILL to the thin_dump child: the plan fails naming thin_dump
#   crash       SIGKILL to the plan itself leaves the reservation held; the next
#               plan (crash-recover) finds it, says so, releases it and succeeds
# The thin tools are slowed by wrappers put first on PATH (sleep, then exec the
# real tool), so there is time to see the reservation held and send the signal.
# Per case, $RESULTS/<case>/ gets rc, stdout, stderr, tpool-status (after exit),
# held-before (held root when the signal was sent), tools-after (thin tool
# processes still alive after the plan exited).
# shellcheck source=lib.sh
. "$THINSHIP_REPO/test/vm/guest/lib.sh"
SLOW_SEC=${SLOW_SEC:-4}

step "pool A on /dev/vda: $A_VG/$A_POOL chunk $A_CHUNK"
make_layout_pool /dev/vda A
TA=$(tpool_dm "$A_VG" "$A_POOL")
save_lvs lvs.json

SLOW=/tmp/slowbin
mkdir -p "$SLOW"
for tool in thin_dump thin_delta; do
  printf '#!/bin/sh\nsleep %s\nexec /usr/sbin/%s "$@"\n' "$SLOW_SEC" "$tool" > "$SLOW/$tool"
  chmod 755 "$SLOW/$tool"
done

held() { [ "$(held_root "$TA")" != - ]; }
no_thin_tools() { [ -z "$(procs_named thin_dump; procs_named thin_delta)" ]; }

# start_plan CASE ARGS... : starts the plan in the background with the slow tools
# first on PATH; sets PLAN_PID.
start_plan() {
  local name=$1; shift
  local d=$RESULTS/$name
  mkdir -p "$d"
  printf '%s\n' "$*" > "$d/argv"
  # the thin tools, not the native reader: these cases signal a running tool
  PATH=$SLOW:$PATH node "$THINSHIP_CLI" "$@" --metadata-reader thin-tools > "$d/stdout" 2> "$d/stderr" &
  PLAN_PID=$!
}

# wait_child TOOL: waits until the plan's child TOOL runs; sets CHILD_PID.
# Fails (without waiting out the timeout) when the plan exits first.
wait_child() {
  local tool=$1
  CHILD_PID=
  child_up() {
    CHILD_PID=$(procs_named "$tool" "$PLAN_PID" | head -1)
    [ -n "$CHILD_PID" ] || ! kill -0 "$PLAN_PID" 2>/dev/null
  }
  wait_until "$STATE_WAIT_S" child_up || true
  [ -n "$CHILD_PID" ] && return 0
  echo "  no $tool child of plan $PLAN_PID appeared (plan $(kill -0 "$PLAN_PID" 2>/dev/null && echo still running || echo exited))"
  return 1
}

# signal_case CASE TOOL SIGNAL WHO ARGS... : starts the plan, waits for its TOOL
# child, records the held root, sends SIGNAL to WHO (plan|child). A case whose
# child never shows up records "no-child" and sends nothing: the host test fails it.
signal_case() {
  local name=$1 tool=$2 sig=$3 who=$4; shift 4
  start_plan "$name" "$@"
  if wait_child "$tool"; then
    held_root "$TA" > "$RESULTS/$name/held-before"
    echo "  $name: [$(uptime_s)] $tool pid $CHILD_PID runs, held root $(cat "$RESULTS/$name/held-before"); sending SIG$sig to the $who"
    if [ "$who" = plan ]; then kill "-$sig" "$PLAN_PID"; else kill "-$sig" "$CHILD_PID"; fi
  else
    echo no-child > "$RESULTS/$name/held-before"
  fi
}

# finish_case CASE: waits for the plan, records its status and what it left behind
finish_case() {
  local name=$1 d=$RESULTS/$1 rc=0
  wait "$PLAN_PID" || rc=$?
  echo "$rc" > "$d/rc"
  dmsetup status "$TA" > "$d/tpool-status" 2>&1 || true
  { procs_named thin_dump; procs_named thin_delta; } > "$d/tools-after" || true
  echo "  $name: [$(uptime_s)] exit $rc, held root after: $(awk '{print $7}' "$d/tpool-status"), thin tools left: $(wc -l < "$d/tools-after")"
  # leave a clean pool for the next case whatever happened in this one
  wait_until "$STATE_WAIT_S" no_thin_tools || true
  if held; then
    echo "  $name: reservation still held; releasing it for the next case"
    dmsetup message "$TA" 0 release_metadata_snap
  fi
}

step "sigterm: SIGTERM while thin_dump runs"
signal_case sigterm thin_dump TERM plan plan "$A_VG/$A_SNAP1" --json
finish_case sigterm

step "sigint: SIGINT while thin_delta runs"
signal_case sigint thin_delta INT plan plan "$A_VG/$A_SNAP1" "$A_VG/$A_SNAP2" --json
finish_case sigint

step "kill-child: SIGKILL to thin_dump"
signal_case kill-child thin_dump KILL child plan "$A_VG/$A_SNAP2" --json
finish_case kill-child

step "crash: SIGKILL to the plan itself"
signal_case crash thin_dump KILL plan plan "$A_VG/$A_SNAP1" --json
rc=0; wait "$PLAN_PID" || rc=$?
echo "$rc" > "$RESULTS/crash/rc"
# the orphaned slow thin_dump finishes on its own (its reader is gone)
wait_until "$STATE_WAIT_S" no_thin_tools || echo "  crash: thin tool still running after $STATE_WAIT_S s" >&2
# what the crash left: the reservation must still be held here
dmsetup status "$TA" > "$RESULTS/crash/tpool-status" 2>&1 || true
echo "  crash: exit $rc, held root left behind: $(awk '{print $7}' "$RESULTS/crash/tpool-status")"

step "crash-recover: the next plan releases the stale reservation"
run_cli crash-recover "$TA" -- plan "$A_VG/$A_SNAP1" --json
# and a plan after that one finds nothing stale
run_cli after-recover "$TA" -- plan "$A_VG/$A_SNAP1" "$A_VG/$A_SNAP2" --json
save locks-after.txt sh -c 'ls -A /run/lock/thinship 2>/dev/null || true'

vgchange -q -an "$A_VG" >/dev/null
step "done"
