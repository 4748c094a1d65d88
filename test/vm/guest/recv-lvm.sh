#!/bin/bash
# recv-lvm.sh - runs INSIDE the VM. The receiver's guarantees for LVM thin LV
# targets, pipe mode (`thinship send ... | thinship recv dst/LV`):
#   source pool on /dev/vda (SRC_* layout: thin LV, snap1, snap2) plus snap3, snap4;
#   target VG dst on /dev/vdb: pool tp (the source's chunk size) and pool big (BIG_CHUNK).
# Each case records the CLI's exit status and stderr (cases/NAME/{rc,stderr}), a
# byte comparison of the target with the snapshot it must equal (NAME/cmp), and
# the lvs state (NAME/lvs.json: names, tags, origins).
# shellcheck source=lib.sh
. "$THINSHIP_REPO/test/vm/guest/lib.sh"
# the open-target case holds fd 7 on the target: LVM tools would print "File descriptor 7 leaked" into the reports
export LVM_SUPPRESS_FD_WARNINGS=1

step "source pool on /dev/vda: $SRC_VG/$SRC_POOL chunk $SRC_CHUNK"
make_layout_pool /dev/vda SRC
CB=$(lvs --noheadings --units b --nosuffix -o chunk_size "$SRC_VG/$SRC_POOL" | tr -d ' ')
# shellcheck disable=SC2086 # ops are space-separated tokens
apply_ops "/dev/$SRC_VG/$SRC_LV" "$CB" $SRC_OPS3; sync
lvcreate -q -s -n snap3 "$SRC_VG/$SRC_LV"
# shellcheck disable=SC2086
apply_ops "/dev/$SRC_VG/$SRC_LV" "$CB" $SRC_OPS4; sync
lvcreate -q -s -n snap4 "$SRC_VG/$SRC_LV"
step "target VG dst on /dev/vdb"
pvcreate -q /dev/vdb
vgcreate -q dst /dev/vdb
lvcreate -q --type thin-pool -L 256M --chunksize "$SRC_CHUNK" -n tp dst 2>&1 | grep -v 'can address at most' || true
lvcreate -q --type thin-pool -L 256M --chunksize "$BIG_CHUNK" -n big dst 2>&1 | grep -v 'can address at most' || true
TSRC=$(tpool_dm "$SRC_VG" "$SRC_POOL")

# recv_case NAME [VAR=VALUE...] -- SEND-ARGS... -- RECV-ARGS... : send | recv, recording both sides
recv_case() {
  local name=$1; shift
  local envs=() sargs=() rargs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  while [ "$1" != -- ]; do sargs+=("$1"); shift; done; shift
  rargs=("$@")
  local d=$RESULTS/$name
  mkdir -p "$d"
  printf '%s\n' "send ${sargs[*]} | recv ${rargs[*]}" > "$d/argv"
  set +e
  node "$THINSHIP_CLI" send "${sargs[@]}" 2> "$d/send-stderr" | env "${envs[@]}" node "$THINSHIP_CLI" recv "${rargs[@]}" 2> "$d/stderr"
  local st=("${PIPESTATUS[@]}")
  set -e
  echo "${st[1]}" > "$d/rc"
  echo "${st[0]}" > "$d/send-rc"
  save_state "$name"
  echo "  $name: send exit ${st[0]}, recv exit ${st[1]}"
}
save_state() {
  mkdir -p "$RESULTS/$1"
  lvs -a --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_attr,lv_tags,origin,pool_lv,lv_size,lv_device_open dst > "$RESULTS/$1/lvs.json" 2>&1 || true
  ls -A /var/lib/thinship/lvm-commits/dst 2>/dev/null > "$RESULTS/$1/journals" || true
}
# compare NAME SNAP TARGET_LV : byte-exact check of dst/TARGET_LV against the source snapshot
compare() {
  local name=$1 snap=$2 t=$3 tdev
  mkdir -p "$RESULTS/$name"
  lvchange -ay -K "$SRC_VG/$snap"
  tdev=/dev/mapper/dst-${t//-/--}
  local act=0; [ -e "$tdev" ] || { lvchange -ay -K "dst/$t"; act=1; }
  # busybox cmp goes byte by byte (minutes under TCG): compare 4 MiB pieces in node instead
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
show() { # show NAME TARGET : target show --json
  mkdir -p "$RESULTS/$1"
  local rc=0
  node "$THINSHIP_CLI" target show "$2" --json > "$RESULTS/$1/show.json" 2> "$RESULTS/$1/show-stderr" || rc=$?
  echo "$rc" > "$RESULTS/$1/show-rc"
}
S1=$SRC_VG/$SRC_SNAP1 S2=$SRC_VG/$SRC_SNAP2 S3=$SRC_VG/snap3 S4=$SRC_VG/snap4

step "full stream to a missing LV creates it in --pool"
recv_case full-create -- "$S1" -- dst/r --pool tp
compare full-create "$SRC_SNAP1" r
lvs --reportformat json -o lv_name,lv_uuid "$SRC_VG" > "$RESULTS/src-lvs.json"
lvchange -q --addtag site=b dst/r   # an operator's own tag: it must stay with the target across commits
step "incremental snap1 -> snap2"
recv_case incr -- "$S1" "$S2" -- dst/r
compare incr "$SRC_SNAP2" r
step "wrong base: snap1 -> snap3 onto a target holding snap2"
recv_case wrong-base -- "$S1" "$S3" -- dst/r
compare wrong-base "$SRC_SNAP2" r
step "incremental snap2 -> snap3: the oldest received snapshot is pruned (keep 2)"
recv_case incr3 -- "$S2" "$S3" -- dst/r
compare incr3 snap3 r
compare incr3-snap2-kept "$SRC_SNAP2" r.snap2
show incr3 dst/r

step "divergence: the target is written, then an increment is refused"
dd if=/dev/urandom of=/dev/mapper/dst-r bs=4096 count=4 seek=100 conv=fsync 2>/dev/null
show diverged dst/r
recv_case diverged -- "$S3" "$S4" -- dst/r
step "--force rolls it back to its last received snapshot and applies"
recv_case force -- "$S3" "$S4" -- dst/r --force
compare force snap4 r

step "open target refused"
exec 7</dev/mapper/dst-r
recv_case open -- "$S3" "$S4" -- dst/r
exec 7<&-

step "SIGKILL mid-apply: the target keeps its previous snapshot; the next recv removes the staging LV"
node "$THINSHIP_CLI" send "$S1" > /tmp/full1.stream 2> "$RESULTS/full1-send-stderr"
mkdir -p "$RESULTS/kill-apply"
mkfifo /tmp/partial.fifo
node "$THINSHIP_CLI" recv dst/r < /tmp/partial.fifo 2> "$RESULTS/kill-apply/stderr" & RECV=$!
exec 8> /tmp/partial.fifo
head -c "$KILL_AFTER_BYTES" /tmp/full1.stream >&8
# mid-apply: the staging LV exists and maps blocks written from the stream (recv then waits for more input)
staging_written() { [ "$(dmsetup status dst-r.thinship--staging 2>/dev/null | awk '{print $4}')" -gt 0 ] 2>/dev/null; }
wait_until 120 staging_written
kill -9 "$RECV"; rc=0; wait "$RECV" || rc=$?
exec 8>&-
echo "$rc" > "$RESULTS/kill-apply/rc"
save_state kill-apply
show kill-apply dst/r
compare kill-apply snap4 r
recv_case kill-apply-restart -- "$S1" -- dst/r
compare kill-apply-restart "$SRC_SNAP1" r

step "SIGKILL between the commit's renames: the next recv finishes the commit"
REAL_LVRENAME=$(command -v lvrename)
mkdir -p /tmp/wrap
cat > /tmp/wrap/lvrename <<EOF
#!/bin/bash
# the real rename, then (once) SIGKILL to the recv that ran it: a crash between the two renames
"$REAL_LVRENAME" "\$@"; rc=\$?
if [ -e /tmp/kill-after-rename ]; then rm -f /tmp/kill-after-rename; kill -9 \$PPID; fi
exit \$rc
EOF
chmod +x /tmp/wrap/lvrename
touch /tmp/kill-after-rename
recv_case kill-commit "PATH=/tmp/wrap:$PATH" -- "$S1" "$S2" -- dst/r
show kill-commit dst/r
# the same stream again: the commit is finished first (the target holds snap2), then its base is wrong
recv_case kill-commit-restart -- "$S1" "$S2" -- dst/r
compare kill-commit-restart "$SRC_SNAP2" r

step "another chunk size: pool dst/big ($BIG_CHUNK chunks)"
recv_case big-full -- "$S1" -- dst/rb --pool big
compare big-full "$SRC_SNAP1" rb
recv_case big-incr -- "$S1" "$S2" -- dst/rb
compare big-incr "$SRC_SNAP2" rb
show big-incr dst/rb

save_state final
dmsetup status "$TSRC" > "$RESULTS/src-tpool-status" 2>&1 || true
vgchange -q -an "$SRC_VG" dst >/dev/null
step "done"
