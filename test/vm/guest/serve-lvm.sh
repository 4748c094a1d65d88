#!/bin/bash
# serve-lvm.sh - runs INSIDE the VM. The receiver's guarantees for LVM thin LV
# targets over gRPC: `thinship serve` on 127.0.0.1 with real certificates
# (made on the host by `thinship certs`, in $CERTS), `thinship send --to`:
#   source pool on /dev/vda (SRC_* layout: thin LV, snap1, snap2) plus snap3, snap4, snap5;
#   target VG dst on /dev/vdb, pool tp (the lvm rule's pool: full streams create LVs there).
# Each case records the sender's exit status and stderr (NAME/{rc,stderr,stdout}), a
# byte comparison of the target with the snapshot it must equal (NAME/cmp), and
# the lvs state (NAME/lvs.json). The receiver's log is serve-1.log, serve-2.log.
# shellcheck source=lib.sh
. "$THINSHIP_REPO/test/vm/guest/lib.sh"
: "${CERTS:?CERTS must name the directory thinship certs wrote}"
export LVM_SUPPRESS_FD_WARNINGS=1
ADDR=127.0.0.1:7443
STATE=/var/lib/thinship-serve
TLS=(--tls-dir "$CERTS")

step "source pool on /dev/vda: $SRC_VG/$SRC_POOL chunk $SRC_CHUNK"
make_layout_pool /dev/vda SRC
CB=$(lvs --noheadings --units b --nosuffix -o chunk_size "$SRC_VG/$SRC_POOL" | tr -d ' ')
snap_after() { # snap_after NAME OPS...: apply OPS to the source LV, then snapshot it as NAME
  local n=$1; shift
  apply_ops "/dev/$SRC_VG/$SRC_LV" "$CB" "$@"; sync
  lvcreate -q -s -n "$n" "$SRC_VG/$SRC_LV"
}
# shellcheck disable=SC2086 # ops are space-separated tokens
snap_after snap3 $SRC_OPS3
# shellcheck disable=SC2086
snap_after snap4 $SRC_OPS4
# shellcheck disable=SC2086
snap_after snap5 $SRC_OPS5
lvs --reportformat json -o lv_name,lv_uuid "$SRC_VG" > "$RESULTS/src-lvs.json"
step "target VG dst on /dev/vdb"
pvcreate -q /dev/vdb
vgcreate -q dst /dev/vdb
lvcreate -q --type thin-pool -L 256M --chunksize "$SRC_CHUNK" -n tp dst 2>&1 | grep -v 'can address at most' || true
TSRC=$(tpool_dm "$SRC_VG" "$SRC_POOL")

# the guest's init brings up no network: the loopback interface serve listens on
ip link set lo up 2>/dev/null || busybox ip link set lo up
mkdir -p "$STATE"
cat > /tmp/serve.json <<EOF
{
  "tls": { "ca": "$CERTS/ca.crt", "cert": "$CERTS/server.crt", "key": "$CERTS/server.key" },
  "stateDir": "$STATE",
  "checkpointIntervalBytes": 1048576,
  "keepSnapshots": 2,
  "identities": { "thinship-sender": { "lvm": [{ "vg": "dst", "pool": "tp", "lv": "*" }] } }
}
EOF
SERVE=
start_serve() { # start_serve N: serve in the background, its log in serve-N.log; waits until it listens
  local log=$RESULTS/serve-$1.log
  node "$THINSHIP_CLI" serve --config /tmp/serve.json --listen "$ADDR" > "$log" 2>&1 & SERVE=$!
  listening() { grep -q '"receiver listening"' "$log"; }
  wait_until "$STATE_WAIT_S" listening || { echo "serve did not start"; cat "$log"; exit 1; }
}
save_state() {
  mkdir -p "$RESULTS/$1"
  lvs -a --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_attr,lv_tags,origin,pool_lv,lv_size,lv_device_open dst > "$RESULTS/$1/lvs.json" 2>&1 || true
  ls -A "$STATE/lvm-commits/dst" 2>/dev/null > "$RESULTS/$1/journals" || true
}
# send_case NAME [VAR=VALUE...] -- SEND-ARGS...: thinship send ... --to --target, to completion
send_case() {
  local name=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  local d=$RESULTS/$name rc=0
  mkdir -p "$d"
  printf '%s\n' "send $*" > "$d/argv"
  env "${envs[@]}" node "$THINSHIP_CLI" send "$@" --to "$ADDR" "${TLS[@]}" --json > "$d/stdout" 2> "$d/stderr" || rc=$?
  echo "$rc" > "$d/rc"
  save_state "$name"
  echo "  $name: send exit $rc"
}
# compare NAME SNAP TARGET_LV : byte-exact check of dst/TARGET_LV against the source snapshot
compare() {
  local name=$1 snap=$2 t=$3 tdev
  mkdir -p "$RESULTS/$name"
  lvchange -ay -K "$SRC_VG/$snap"
  tdev=/dev/mapper/dst-${t//-/--}
  local act=0; [ -e "$tdev" ] || { lvchange -ay -K "dst/$t"; act=1; }
  node -e '
    const fs = require("fs"); const [a, b] = process.argv.slice(1);
    const fa = fs.openSync(a, "r"), fb = fs.openSync(b, "r");
    const ba = Buffer.alloc(4 << 20), bb = Buffer.alloc(4 << 20);
    for (let off = 0; ; off += ba.length) {
      const na = fs.readSync(fa, ba, 0, ba.length, off), nb = fs.readSync(fb, bb, 0, bb.length, off);
      if (na === 0) { console.log(nb === 0 ? "same" : "target longer"); break; }
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, na))) {
        for (let i = 0; i < na; i++) if (ba[i] !== bb[i]) { console.log(`differ at byte ${off + i}`); process.exit(0); }
        console.log(`target shorter (${off + nb} bytes)`); process.exit(0);
      }
    }' "/dev/mapper/${SRC_VG//-/--}-${snap//-/--}" "$tdev" > "$RESULTS/$name/cmp" 2>&1 || true
  lvchange -an "$SRC_VG/$snap"
  [ $act = 0 ] || lvchange -an "dst/$t"
  echo "  $name: $t vs $snap: $(cat "$RESULTS/$name/cmp")"
}
show() { # show NAME TARGET [text] : target show --to --json (GetTarget); with "text" also the text form
  mkdir -p "$RESULTS/$1"
  local rc=0
  node "$THINSHIP_CLI" target show "$2" --to "$ADDR" "${TLS[@]}" --json > "$RESULTS/$1/show.json" 2> "$RESULTS/$1/show-stderr" || rc=$?
  echo "$rc" > "$RESULTS/$1/show-rc"
  [ "${3:-}" != text ] || node "$THINSHIP_CLI" target show "$2" --to "$ADDR" "${TLS[@]}" > "$RESULTS/$1/show.txt" 2>&1 || true
}
# the staging LV of dst/LV maps blocks the stream wrote (dm-thin status: mapped sectors > 0)
staging_written() { [ "$(dmsetup status "dst-$1.thinship--staging" 2>/dev/null | awk '{print $4}')" -gt 0 ] 2>/dev/null; }
# checkpointed LOG ID: a checkpoint beyond offset 0 was saved for transfer ID (the registry's log line)
checkpointed() { grep '"msg":"checkpoint"' "$1" | grep "\"transferId\":\"$2\"" | grep -qv '"durableOffsetBytes":0,'; }
S1=$SRC_VG/$SRC_SNAP1 S2=$SRC_VG/$SRC_SNAP2 S3=$SRC_VG/snap3 S4=$SRC_VG/snap4 S5=$SRC_VG/snap5

start_serve 1
step "full stream to a missing LV creates it in the rule's pool"
send_case full-create -- "$S1" --target dst/r
compare full-create "$SRC_SNAP1" r
lvchange -q --addtag site=b dst/r   # an operator's own tag: it must stay with the target across commits
step "incremental snap1 -> snap2"
send_case incr -- "$S1" "$S2" --target dst/r
compare incr "$SRC_SNAP2" r
step "wrong base: snap1 -> snap3 onto a target holding snap2"
send_case wrong-base -- "$S1" "$S3" --target dst/r
compare wrong-base "$SRC_SNAP2" r
step "incremental snap2 -> snap3 (keepSnapshots 2 prunes r.snap1), GetTarget"
send_case incr3 -- "$S2" "$S3" --target dst/r
compare incr3 snap3 r
show incr3 dst/r text
# the same LV by its device path: the LVM route, the same record
show incr3-path /dev/dst/r

step "divergence: the target is written, then an increment is refused; --force rolls back and applies"
dd if=/dev/urandom of=/dev/mapper/dst-r bs=4096 count=4 seek=100 conv=fsync 2>/dev/null
show diverged dst/r
send_case diverged -- "$S3" "$S4" --target dst/r
send_case force -- "$S3" "$S4" --target dst/r --force
compare force snap4 r

step "abort: a sender killed mid-transfer leaves a resumable staging LV; transfer abort removes it"
mkdir -p "$RESULTS/abort"
node "$THINSHIP_CLI" send "$S1" --to "$ADDR" "${TLS[@]}" --target dst/a --bwlimit 64K --transfer-id abort-1 \
  > "$RESULTS/abort/stdout" 2> "$RESULTS/abort/stderr" & SEND=$!
wait_until "$STATE_WAIT_S" staging_written a
kill -9 "$SEND"; wait "$SEND" || true
# the receiver saw the call end (it checkpointed and closed the staging LV): its log line, not a CLI call per poll
stopped() { grep '"msg":"transfer stopped"' "$RESULTS/serve-1.log" | grep -q '"transferId":"abort-1"'; }
wait_until "$STATE_WAIT_S" stopped
save_state abort-before
rc=0; node "$THINSHIP_CLI" transfer abort abort-1 --to "$ADDR" "${TLS[@]}" > "$RESULTS/abort/abort-stdout" 2> "$RESULTS/abort/abort-stderr" || rc=$?
echo "$rc" > "$RESULTS/abort/abort-rc"
save_state abort-after

step "SIGKILL of serve mid-apply of snap4 -> snap5: the target keeps snap4; serve restarts, the send resumes into its staging LV"
mkdir -p "$RESULTS/kill-serve"
node "$THINSHIP_CLI" send "$S4" "$S5" --to "$ADDR" "${TLS[@]}" --target dst/r --transfer-id kill-1 --bwlimit 128K --retries 0 --json \
  > "$RESULTS/kill-serve/stdout" 2> "$RESULTS/kill-serve/stderr" & SEND=$!
wait_until "$STATE_WAIT_S" checkpointed "$RESULTS/serve-1.log" kill-1
kill -9 "$SERVE"; wait "$SERVE" || true
rc=0; wait "$SEND" || rc=$?
echo "$rc" > "$RESULTS/kill-serve/rc"
save_state kill-serve
compare kill-serve snap4 r
start_serve 2
show kill-serve dst/r
send_case kill-serve-resume -- "$S4" "$S5" --target dst/r --transfer-id kill-1
compare kill-serve-resume snap5 r
show final dst/r

kill "$SERVE"; wait "$SERVE" || true
save_state final
dmsetup status "$TSRC" > "$RESULTS/src-tpool-status" 2>&1 || true
vgchange -q -an "$SRC_VG" dst >/dev/null
step "done"
