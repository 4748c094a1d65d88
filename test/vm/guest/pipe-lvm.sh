#!/bin/bash
# pipe-lvm.sh - runs INSIDE the VM. Pipe mode between real thin LVs:
#   source pool on /dev/vda (SRC_* layout: thin LV, OPS1, snap1, OPS2 with
#   discards, snap2); targets on /dev/vdb: dst/tp (same chunk size as the
#   source) and dst/big (TARGET_BIG_CHUNK, larger than the source's).
# For each target: `thinship send snap1 | thinship recv target` (full), compare,
# then `thinship send snap1 snap2 | thinship recv target` (incremental), compare,
# and record the mapped sectors of source and target (dmsetup status of a thin
# device: "<start> <len> thin <mapped sectors> <highest mapped sector>").
# shellcheck source=lib.sh
. "$THINSHIP_REPO/test/vm/guest/lib.sh"

step "source pool on /dev/vda: $SRC_VG/$SRC_POOL chunk $SRC_CHUNK"
make_layout_pool /dev/vda SRC
step "targets on /dev/vdb"
pvcreate -q /dev/vdb
vgcreate -q dst /dev/vdb
lvcreate -q --type thin-pool -L 1G --chunksize "$SRC_CHUNK" -n tp dst 2>&1 | grep -v 'can address at most' || true
lvcreate -q --type thin-pool -L 512M --chunksize "$TARGET_BIG_CHUNK" -n big dst 2>&1 | grep -v 'can address at most' || true
lvcreate -q -V "$SRC_LV_SIZE" -T dst/tp -n replica
lvcreate -q -V "$SRC_LV_SIZE" -T dst/big -n replica-big
lvcreate -q -V "$SRC_LV_SIZE" -T dst/tp -n replica-grpc
# the targets start with garbage where the source has holes: a full receive must make them read as zeros
dd if=/dev/urandom of=/dev/dst/replica bs=64k count=8 seek=1000 conv=fsync 2>/dev/null
dd if=/dev/urandom of=/dev/dst/replica-big bs=64k count=8 seek=1000 conv=fsync 2>/dev/null

# snapshots have the activation-skip flag: activate them to compare (send activates on its own)
lvchange -ay -K "$SRC_VG/$SRC_SNAP1" "$SRC_VG/$SRC_SNAP2"
mapped_sectors() { dmsetup status "$1" | awk '{print $4}'; }
SRC_DM1=/dev/mapper/${SRC_VG//-/--}-${SRC_SNAP1//-/--}
SRC_DM2=/dev/mapper/${SRC_VG//-/--}-${SRC_SNAP2//-/--}
echo "$(mapped_sectors "$(basename "$SRC_DM1")")" > "$RESULTS/src-snap1-mapped-sectors"
echo "$(mapped_sectors "$(basename "$SRC_DM2")")" > "$RESULTS/src-snap2-mapped-sectors"
lvchange -an "$SRC_VG/$SRC_SNAP1" "$SRC_VG/$SRC_SNAP2"

TSRC=$(tpool_dm "$SRC_VG" "$SRC_POOL")
pipe() { # pipe NAME TARGET SEND-ARGS... : send | recv, recording both sides
  local name=$1 target=$2; shift 2
  local d=$RESULTS/$name rc=0
  mkdir -p "$d"
  set +e
  node "$THINSHIP_CLI" send "$@" 2> "$d/send-stderr" | node "$THINSHIP_CLI" recv "$target" 2> "$d/recv-stderr"
  local st=("${PIPESTATUS[@]}")
  set -e
  echo "${st[0]} ${st[1]}" > "$d/rc"
  dmsetup status "$TSRC" > "$d/tpool-status" 2>&1 || true
  echo "  $name: send exit ${st[0]}, recv exit ${st[1]}"
}
compare() { # compare NAME SNAP TARGET_DEV: byte-exact check
  local name=$1 snap=$2 tdev=$3
  lvchange -ay -K "$SRC_VG/$snap"
  # busybox cmp goes byte by byte (minutes under TCG): compare 4 MiB pieces in node instead
  node -e '
    const fs = require("fs"); const [a, b] = process.argv.slice(1);
    const fa = fs.openSync(a, "r"), fb = fs.openSync(b, "r");
    const ba = Buffer.alloc(4 << 20), bb = Buffer.alloc(4 << 20);
    for (let off = 0; ; off += ba.length) {
      const na = fs.readSync(fa, ba, 0, ba.length, off), nb = fs.readSync(fb, bb, 0, bb.length, off);
      if (na === 0) { console.log(nb === 0 ? "same" : "target longer"); break; }
      if (!ba.subarray(0, na).equals(bb.subarray(0, na))) {
        for (let i = 0; i < na; i++) if (ba[i] !== bb[i]) { console.log(`differ at byte ${off + i}`); process.exit(0); }
      }
    }' "/dev/mapper/${SRC_VG//-/--}-${snap//-/--}" "$tdev" > "$RESULTS/$name/cmp" 2>&1 || true
  lvchange -an "$SRC_VG/$snap"
  echo "  $name: $(cat "$RESULTS/$name/cmp")"
}

for t in replica replica-big; do
  tdev=/dev/mapper/dst-${t//-/--}
  step "full: $SRC_VG/$SRC_SNAP1 -> dst/$t"
  pipe "$t-full" "dst/$t" "$SRC_VG/$SRC_SNAP1"
  compare "$t-full" "$SRC_SNAP1" "$tdev"
  mapped_sectors "dst-${t//-/--}" > "$RESULTS/$t-full/target-mapped-sectors"
  step "incremental: $SRC_SNAP1 -> $SRC_SNAP2 -> dst/$t"
  pipe "$t-incr" "dst/$t" "$SRC_VG/$SRC_SNAP1" "$SRC_VG/$SRC_SNAP2"
  compare "$t-incr" "$SRC_SNAP2" "$tdev"
  mapped_sectors "dst-${t//-/--}" > "$RESULTS/$t-incr/target-mapped-sectors"
done

step "gRPC with mTLS: receiver on loopback, full then incremental into dst/replica-grpc"
# the minimal guest init leaves loopback down
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
# the guest has no openssl: the host test made the certificates (thinship certs) into $CERTS_DIR
D=$(mktemp -d)
cp -r "$CERTS_DIR" "$D/certs"
cat > "$D/receiver.json" <<JSON
{"tls":{"ca":"certs/ca.crt","cert":"certs/server.crt","key":"certs/server.key"},"stateDir":"state",
 "identities":{"vm-sender":{"lvm":[{"vg":"dst","pool":"tp","lv":"replica-grpc"}]}}}
JSON
THINSHIP_LOG=info node "$THINSHIP_CLI" serve --listen 127.0.0.1:7443 --config "$D/receiver.json" 2> "$RESULTS/serve.log" & SERVE=$!
# listening, or exited (then fail at once, not after the bound)
serve_up() { grep -q '"receiver listening"' "$RESULTS/serve.log" || ! kill -0 "$SERVE" 2>/dev/null; }
wait_until "$STATE_WAIT_S" serve_up
grep -q '"receiver listening"' "$RESULTS/serve.log" || { echo "thinship serve exited before listening:" >&2; cat "$RESULTS/serve.log" >&2; exit 1; }
grpc_send() { # grpc_send NAME TARGET SEND-ARGS...
  local name=$1 target=$2; shift 2
  local d=$RESULTS/$name rc=0
  mkdir -p "$d"
  node "$THINSHIP_CLI" send "$@" --to 127.0.0.1:7443 --server-name localhost --target "$target" --tls-dir "$D/certs" --json > "$d/stdout" 2> "$d/stderr" || rc=$?
  echo "$rc" > "$d/rc"
  dmsetup status "$TSRC" > "$d/tpool-status" 2>&1 || true
  echo "  $name: exit $rc"
}
grpc_send grpc-full dst/replica-grpc "$SRC_VG/$SRC_SNAP1"
compare grpc-full "$SRC_SNAP1" /dev/mapper/dst-replica--grpc
grpc_send grpc-incr dst/replica-grpc "$SRC_VG/$SRC_SNAP1" "$SRC_VG/$SRC_SNAP2"
compare grpc-incr "$SRC_SNAP2" /dev/mapper/dst-replica--grpc
mapped_sectors dst-replica--grpc > "$RESULTS/grpc-incr/target-mapped-sectors"
grpc_send grpc-denied dst/replica "$SRC_VG/$SRC_SNAP1"
kill "$SERVE"; wait "$SERVE" || true

save_lvs lvs-after.json
save dev-mapper-after.txt ls /dev/mapper
vgchange -q -an "$SRC_VG" dst >/dev/null
step "done"
