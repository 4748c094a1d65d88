/**
 * Real-kernel tier: the receiver's guarantees for LVM thin LV targets (issue
 * 13), pipe mode, one VM boot (guest/recv-lvm.sh). Every case checks the
 * target byte for byte against the source snapshot it must equal, and the lvs
 * state: LV names, the record in the tags, the received snapshots kept.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describeRun, guestDir, runGuest, vmSkipReason, type GuestRun } from './vm-harness.js';
import { lvmResultReaders } from './lvm-results.js';
import { encodeTagValue } from '../../src/receiver/target-state/lvm-tags.js';

const src = {
  VG: 'vg0',
  POOL: 'pool',
  CHUNK: '64k',
  POOL_SIZE: '256M',
  LV: 'thin1',
  LV_SIZE: '32M',
  SNAP1: 'snap1',
  SNAP2: 'snap2',
  // chunks of 64 KiB (the LV has 512): writes, rewrites, discards
  OPS1: 'w:0+48 w:300+16 w:511+1 w:400+3',
  OPS2: 'w:10+4 w:100+2 w:301+1 d:300+4 d:511+1 s:450 p:40',
  OPS3: 'w:200+8 d:0+2 s:460',
  OPS4: 'w:480+4 d:400+3 w:5+1',
};

describe('LVM thin LV targets: atomic apply, record in tags, received snapshots (VM boot: recv-lvm.sh)', { skip: vmSkipReason('recv-lvm') }, () => {
  let run: GuestRun;
  const { r, lv, tagsOf, uuid, same, names } = lvmResultReaders(() => run);
  const ok = (name: string) => assert.equal(r(`${name}/rc`), '0', `${name}: recv exit\n${r(`${name}/stderr`)}\n${r(`${name}/send-stderr`)}`);
  const show = (name: string) => {
    assert.equal(r(`${name}/show-rc`), '0', r(`${name}/show-stderr`));
    return JSON.parse(r(`${name}/show.json`)) as {
      record: { sourceId: string; baseId: string; snapshotName: string } | null;
      diverged: boolean;
      divergence: string[];
      lastSnapshot: string | null;
      snapshots: { lv: string }[];
      staged: { stagingLv: string | null; commitJournal: string | null };
    };
  };

  before(async () => {
    const env: Record<string, string> = { BIG_CHUNK: '256k', KILL_AFTER_BYTES: String(2 * 1024 * 1024) };
    for (const [k, v] of Object.entries(src)) env[`SRC_${k}`] = v;
    run = await runGuest(join(guestDir, 'recv-lvm.sh'), { disks: ['1G', '1G'], env, timeoutSec: 2400 });
    process.stderr.write(`[vm] recv-lvm: wall ${(run.wallMs / 1000).toFixed(1)} s, boot ${run.bootSec} s\n`);
  });

  test('the guest scenario ran to the end', () => {
    assert.equal(run.exitCode, 0, describeRun(run));
  });

  test('a full stream to a missing LV creates a thin LV in --pool, byte-exact, recorded in its tags, with a read-only received snapshot', () => {
    ok('full-create');
    same('full-create');
    const t = lv('full-create', 'r');
    assert.equal(t?.pool_lv, 'tp');
    const tags = tagsOf(t);
    assert.ok(tags.includes(`thinship.src:${encodeTagValue(uuid('snap1'))}`), `tags: ${tags.join(' ')}`);
    assert.ok(tags.includes('thinship.name:vg0/snap1') && tags.includes('thinship.v:1') && tags.includes('thinship.snap:r.snap1'), tags.join(' '));
    assert.ok(!tags.some((x) => x.startsWith('thinship.base:')), 'a full stream records no base');
    assert.ok(
      tags.some((x) => /^thinship\.digest:[0-9a-f]{64}$/.test(x)),
      'the stream digest',
    );
    const s = lv('full-create', 'r.snap1');
    assert.equal(s?.origin, 'r');
    assert.equal(s?.lv_attr[1], 'r', `received snapshot read-only (attr ${s?.lv_attr})`);
    assert.ok(tagsOf(s).includes('thinship.snapof:r') && tagsOf(s).includes(`thinship.src:${encodeTagValue(uuid('snap1'))}`));
    assert.deepEqual(names('full-create', 'r'), ['r', 'r.snap1'], 'no staging or old LV left');
    assert.equal(r('full-create/journals'), '', 'no commit journal left');
  });

  test('an incremental applies through a staging snapshot and records its base', () => {
    ok('incr');
    same('incr');
    const tags = tagsOf(lv('incr', 'r'));
    assert.ok(
      tags.includes(`thinship.src:${encodeTagValue(uuid('snap2'))}`) && tags.includes(`thinship.base:${encodeTagValue(uuid('snap1'))}`),
      tags.join(' '),
    );
    assert.deepEqual(names('incr', 'r'), ['r', 'r.snap1', 'r.snap2']);
    assert.ok(tags.includes('site=b'), "the operator's own tag moved to the new target LV");
  });

  test('an incremental whose base the target does not hold is refused (exit 14), nothing written', () => {
    assert.equal(r('wrong-base/rc'), '14', r('wrong-base/stderr'));
    assert.match(r('wrong-base/stderr'), /holds .*but this incremental stream applies to base/);
    same('wrong-base');
    assert.deepEqual(names('wrong-base', 'r'), ['r', 'r.snap1', 'r.snap2'], 'no staging LV, no new snapshot');
  });

  test('keepSnapshots (default 2): the oldest received snapshot is removed; a kept one equals its source snapshot', () => {
    ok('incr3');
    same('incr3');
    assert.deepEqual(names('incr3', 'r'), ['r', 'r.snap2', 'r.snap3']);
    assert.equal(r('incr3-snap2-kept/cmp'), 'same', 'r.snap2 == snap2');
    const sh = show('incr3');
    assert.equal(sh.record?.sourceId, uuid('snap3'));
    assert.equal(sh.record?.snapshotName, 'vg0/snap3');
    assert.equal(sh.lastSnapshot, 'dst/r.snap3');
    assert.deepEqual(
      sh.snapshots.map((x) => x.lv),
      ['dst/r.snap3', 'dst/r.snap2'],
    );
    assert.equal(sh.diverged, false);
  });

  test('a target written since its last received snapshot is DIVERGED (exit 14), seen in the pool metadata', () => {
    const sh = show('diverged');
    assert.equal(sh.diverged, true);
    assert.match(sh.divergence.join(';'), /bytes written .* since dst\/r\.snap3 \(pool metadata/);
    assert.equal(r('diverged/rc'), '14', r('diverged/stderr'));
    assert.match(r('diverged/stderr'), /was written since it received .*--force/);
    assert.deepEqual(names('diverged', 'r'), ['r', 'r.snap2', 'r.snap3']);
  });

  test('--force rolls the target back to its last received snapshot, then applies the increment', () => {
    ok('force');
    assert.match(r('force/stderr'), /rolled back to dst\/r\.snap3/);
    same('force');
    assert.deepEqual(names('force', 'r'), ['r', 'r.snap3', 'r.snap4']);
  });

  test('an open target is refused (exit 11), nothing written', () => {
    assert.equal(r('open/rc'), '11', r('open/stderr'));
    assert.match(r('open/stderr'), /is open/);
    assert.deepEqual(names('open', 'r'), ['r', 'r.snap3', 'r.snap4']);
  });

  test('SIGKILL mid-apply: the target still equals its previous snapshot; the next recv removes the staging LV and applies', () => {
    assert.equal(r('kill-apply/rc'), '137');
    assert.ok(lv('kill-apply', 'r.thinship-staging'), 'the staging LV is left by the kill');
    assert.equal(show('kill-apply').staged.stagingLv, 'dst/r.thinship-staging');
    same('kill-apply');
    ok('kill-apply-restart');
    assert.match(r('kill-apply-restart/stderr'), /interrupted before its end: its staging LV was removed/);
    same('kill-apply-restart');
    assert.deepEqual(names('kill-apply-restart', 'r'), ['r', 'r.snap1', 'r.snap4']);
  });

  test("SIGKILL between the commit's renames: the next recv finishes the commit from its journal (the target holds the new snapshot)", () => {
    assert.equal(r('kill-commit/rc'), '137', r('kill-commit/stderr'));
    assert.deepEqual(names('kill-commit', 'r'), ['r.snap1', 'r.snap4', 'r.thinship-old', 'r.thinship-staging'], 'killed after the first rename');
    assert.equal(r('kill-commit/journals'), 'r.json');
    assert.equal(r('kill-commit/show-rc'), '3', 'target show: the target name is missing mid-commit');
    assert.match(r('kill-commit/show-stderr'), /interrupted commit/);
    assert.match(r('kill-commit-restart/stderr'), /commit was interrupted between its renames: finished from its journal/);
    assert.equal(r('kill-commit-restart/rc'), '14', 'then the re-sent increment finds the target already holds snap2');
    same('kill-commit-restart');
    assert.deepEqual(names('kill-commit-restart', 'r'), ['r', 'r.snap1', 'r.snap2']);
    assert.equal(r('kill-commit-restart/journals'), '');
    assert.ok(!tagsOf(lv('kill-commit-restart', 'r')).some((t) => t.startsWith('thinship.staging:')));
  });

  test('a pool with another chunk size (256 KiB): full and incremental, byte-exact, not diverged', () => {
    ok('big-full');
    same('big-full');
    ok('big-incr');
    same('big-incr');
    assert.equal(lv('big-incr', 'rb')?.pool_lv, 'big');
    assert.equal(show('big-incr').diverged, false);
    assert.deepEqual(names('big-incr', 'rb'), ['rb', 'rb.snap1', 'rb.snap2']);
  });

  test('the source pool holds no metadata snapshot at the end', () => {
    assert.equal(r('src-tpool-status').split(/\s+/)[6], '-');
  });
});
