#!/bin/bash
# plan-basic.sh - runs INSIDE the VM. `thinship plan` against real LVM thin pools:
#   pool A on /dev/vda (64 KiB chunks, plain names, e.g. vg0/pool, thin1)
#   pool B on /dev/vdb (256 KiB chunks, hyphenated names, e.g. test-vg/pool-1)
# Each pool: thin LV, OPS1, snapshot 1, OPS2, snapshot 2 (layouts come from the
# host test as A_* / B_* variables, see lib.sh make_layout_pool). Then full,
# incremental, live-refused/allowed and error cases; every command's outputs and
# the pool status after it go to $RESULTS/<name>/ for the host to assert.
# shellcheck source=lib.sh
. "$THINSHIP_REPO/test/vm/guest/lib.sh"

step "pool A on /dev/vda: $A_VG/$A_POOL chunk $A_CHUNK"
make_layout_pool /dev/vda A
step "pool B on /dev/vdb: $B_VG/$B_POOL chunk $B_CHUNK"
make_layout_pool /dev/vdb B
TA=$(tpool_dm "$A_VG" "$A_POOL")
TB=$(tpool_dm "$B_VG" "$B_POOL")
[ "$(held_root "$TA")" = - ] && [ "$(held_root "$TB")" = - ] || { echo "a reservation is held before any plan ran" >&2; exit 1; }

# snapshots keep the activation-skip flag and stay inactive: plan must not need them active
save_lvs lvs-before.json
save dev-mapper-before.txt ls /dev/mapper

step "plans on pool A"
run_cli a-full-snap1 "$TA" -- plan "$A_VG/$A_SNAP1" --json
run_cli a-incr "$TA" -- plan "$A_VG/$A_SNAP1" "$A_VG/$A_SNAP2" --json
# the default (auto) reads natively; each reader on its own, the thin tools being the reference
run_cli a-full-snap1-native "$TA" -- plan "$A_VG/$A_SNAP1" --json --metadata-reader native
run_cli a-incr-native "$TA" -- plan "$A_VG/$A_SNAP1" "$A_VG/$A_SNAP2" --json --metadata-reader native
run_cli a-full-snap1-tools "$TA" -- plan "$A_VG/$A_SNAP1" --json --metadata-reader thin-tools
run_cli a-incr-tools "$TA" -- plan "$A_VG/$A_SNAP1" "$A_VG/$A_SNAP2" --json --metadata-reader thin-tools
run_cli a-incr-text "$TA" -- plan "$A_VG/$A_SNAP1" "$A_VG/$A_SNAP2"
run_cli a-live-refused "$TA" -- plan "$A_VG/$A_LV" --json
run_cli a-live-allowed "$TA" -- plan "$A_VG/$A_LV" --allow-live --json
run_cli a-missing "$TA" -- plan "$A_VG/no-such-lv" --json
run_cli a-reversed "$TA" -- plan "$A_VG/$A_SNAP2" "$A_VG/$A_SNAP1" --json
run_cli cross-pool "$TA" -- plan "$A_VG/$A_SNAP1" "$B_VG/$B_SNAP2" --json

step "plans on pool B (hyphenated names)"
run_cli b-full-snap1 "$TB" -- plan "$B_VG/$B_SNAP1" --json
run_cli b-incr "$TB" -- plan "/dev/$B_VG/$B_SNAP1" "/dev/$B_VG/$B_SNAP2" --json
run_cli b-incr-tools "$TB" -- plan "/dev/$B_VG/$B_SNAP1" "/dev/$B_VG/$B_SNAP2" --json --metadata-reader thin-tools

step "state after the plans"
save_lvs lvs-after.json
save dev-mapper-after.txt ls /dev/mapper
save tpool-a-final.txt dmsetup status "$TA"
save tpool-b-final.txt dmsetup status "$TB"
# pool locks must be gone once every plan has exited
save locks-after.txt sh -c 'ls -A /run/lock/thinship 2>/dev/null || true'

# raw metadata, to tell a wrong model from a wrong plan when a test fails (not asserted)
raw_metadata() {
  local vg=$1 pool=$2 snap1=$3 snap2=$4 tp; tp=$(tpool_dm "$vg" "$pool")
  local meta=/dev/mapper/${vg//-/--}-${pool//-/--}_tmeta id1 id2
  id1=$(lvs --noheadings -o thin_id "$vg/$snap1" | tr -d ' '); id2=$(lvs --noheadings -o thin_id "$vg/$snap2" | tr -d ' ')
  dmsetup message "$tp" 0 reserve_metadata_snap
  save "raw-$vg-dump-$snap1.xml" thin_dump -m --dev-id "$id1" "$meta"
  save "raw-$vg-dump-$snap2.xml" thin_dump -m --dev-id "$id2" "$meta"
  save "raw-$vg-delta.xml" thin_delta -m --snap1 "$id1" --snap2 "$id2" "$meta"
  dmsetup message "$tp" 0 release_metadata_snap
}
raw_metadata "$A_VG" "$A_POOL" "$A_SNAP1" "$A_SNAP2"
raw_metadata "$B_VG" "$B_POOL" "$B_SNAP1" "$B_SNAP2"

vgchange -q -an "$A_VG" "$B_VG" >/dev/null
step "done"
