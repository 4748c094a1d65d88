/**
 * Real-kernel tier: the receiver's guarantees for LVM thin LV targets over
 * gRPC (issue 13), one VM boot (guest/serve-lvm.sh): `thinship serve` in the
 * guest on 127.0.0.1 with certificates from `thinship certs`, `thinship send
 * --to`. Every case checks the target byte for byte against the source
 * snapshot it must equal, and the lvs state: LV names, the record in the
 * tags, the received snapshots kept, staging LVs.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { cliInGuest, describeRun, guestDir, runGuest, vmResultsRoot, vmSkipReason, type GuestRun } from './vm-harness.js';
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
  // 6 MiB of new data: at the sender's --bwlimit 128K, several checkpoints (every 1 MiB) before it ends
  OPS5: 'w:100+96 d:480+2',
};

interface Shown {
  target: string;
  kind: string;
  record: { record: { sourceId: string; baseId: string; snapshotName?: string; digest: string; receivedUnixMs: number }; store: string } | null;
  diverged: boolean;
  divergence: string[];
  staged: { kind: string }[];
  lastSnapshot?: string;
  keptSnapshots?: string[];
}

describe('LVM thin LV targets over gRPC: thinship serve applies as pipe mode does (VM boot: serve-lvm.sh)', { skip: vmSkipReason('serve-lvm') }, () => {
  let run: GuestRun;
  const { r, lv, tagsOf, uuid, same, names } = lvmResultReaders(() => run);
  const ok = (name: string) => assert.equal(r(`${name}/rc`), '0', `${name}: send exit\n${r(`${name}/stderr`)}`);
  const show = (name: string): Shown => {
    assert.equal(r(`${name}/show-rc`), '0', r(`${name}/show-stderr`));
    return JSON.parse(r(`${name}/show.json`)) as Shown;
  };
  const serveLog = (n: number) =>
    r(`serve-${n}.log`)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  before(async () => {
    // Real certificates, made on the host (the guest has no openssl) into the share the guest sees.
    const certs = join(vmResultsRoot, `serve-lvm-certs-${process.pid}`);
    rmSync(certs, { recursive: true, force: true });
    mkdirSync(certs, { recursive: true });
    execFileSync(process.execPath, [cliInGuest, 'certs', '--out', certs, '--server-name', '127.0.0.1'], { stdio: 'pipe' });
    const env: Record<string, string> = { CERTS: certs };
    for (const [k, v] of Object.entries(src)) env[`SRC_${k}`] = v;
    try {
      run = await runGuest(join(guestDir, 'serve-lvm.sh'), { disks: ['1G', '1G'], env, timeoutSec: 2700 });
    } finally {
      rmSync(certs, { recursive: true, force: true });
    }
    process.stderr.write(`[vm] serve-lvm: wall ${(run.wallMs / 1000).toFixed(1)} s, boot ${run.bootSec} s\n`);
  });

  test('the guest scenario ran to the end', () => {
    assert.equal(run.exitCode, 0, describeRun(run));
  });

  test("a full stream to a missing LV creates a thin LV in the lvm rule's pool, byte-exact, recorded in its tags, with a read-only received snapshot", () => {
    ok('full-create');
    same('full-create');
    const t = lv('full-create', 'r');
    assert.equal(t?.pool_lv, 'tp');
    const tags = tagsOf(t);
    assert.ok(tags.includes(`thinship.src:${encodeTagValue(uuid('snap1'))}`), `tags: ${tags.join(' ')}`);
    assert.ok(tags.includes('thinship.name:vg0/snap1') && tags.includes('thinship.snap:r.snap1'), tags.join(' '));
    assert.ok(
      tags.some((x) => /^thinship\.digest:[0-9a-f]{64}$/.test(x)),
      'the stream digest',
    );
    assert.ok(!tags.some((x) => x.startsWith('thinship.xfer:pipe')), 'recorded by a gRPC transfer');
    assert.ok(!tags.some((x) => x.startsWith('thinship.owner:') || x.startsWith('thinship.staging:')), 'no staging tags left on the target');
    const s = lv('full-create', 'r.snap1');
    assert.equal(s?.origin, 'r');
    assert.equal(s?.lv_attr[1], 'r', `received snapshot read-only (attr ${s?.lv_attr})`);
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

  test('an incremental whose base the target does not hold is refused (exit 14) from the LV tags, nothing written', () => {
    assert.equal(r('wrong-base/rc'), '14', r('wrong-base/stderr'));
    assert.match(r('wrong-base/stderr'), /holds .*but this incremental stream applies to base/);
    same('wrong-base');
    assert.deepEqual(names('wrong-base', 'r'), ['r', 'r.snap1', 'r.snap2'], 'no staging LV, no new snapshot');
  });

  test('keepSnapshots 2 (receiver config): the oldest received snapshot is removed; GetTarget and `target show --to` report the LV', () => {
    ok('incr3');
    same('incr3');
    assert.deepEqual(names('incr3', 'r'), ['r', 'r.snap2', 'r.snap3']);
    const sh = show('incr3');
    assert.equal(sh.kind, 'lvm');
    assert.equal(sh.record?.store, 'lv-tags');
    assert.equal(sh.record?.record.sourceId, uuid('snap3'));
    assert.equal(sh.record?.record.baseId, uuid('snap2'));
    assert.equal(sh.record?.record.snapshotName, 'vg0/snap3');
    assert.match(sh.record?.record.digest ?? '', /^[0-9a-f]{64}$/);
    assert.ok((sh.record?.record.receivedUnixMs ?? 0) > 0);
    assert.equal(sh.lastSnapshot, 'dst/r.snap3');
    assert.deepEqual(sh.keptSnapshots, ['dst/r.snap3', 'dst/r.snap2']);
    assert.equal(sh.diverged, false);
    assert.deepEqual(sh.staged, []);
    const txt = r('incr3/show.txt');
    assert.match(txt, /^target: dst\/r \(LVM thin LV\)$/m);
    assert.match(txt, /^kept snapshots: dst\/r\.snap3, dst\/r\.snap2$/m);
    assert.match(txt, /^recorded in: LV tags thinship\.\*$/m);
    assert.match(txt, /^diverged: no$/m);
    const byPath = show('incr3-path');
    assert.equal(byPath.kind, 'lvm', 'a thin LV named by its device path is the LV (LVM route), not a raw device');
    assert.equal(byPath.record?.record.sourceId, uuid('snap3'));
  });

  test('a target written since its last received snapshot is DIVERGED (exit 14); --force rolls it back and applies', () => {
    const sh = show('diverged');
    assert.equal(sh.diverged, true);
    assert.match(sh.divergence.join(';'), /bytes written .* since dst\/r\.snap3 \(pool metadata/);
    assert.equal(r('diverged/rc'), '14', r('diverged/stderr'));
    assert.match(r('diverged/stderr'), /was written since it received/);
    assert.deepEqual(names('diverged', 'r'), ['r', 'r.snap2', 'r.snap3']);
    ok('force');
    same('force');
    assert.deepEqual(names('force', 'r'), ['r', 'r.snap3', 'r.snap4']);
    assert.ok(
      serveLog(1).some((l) => typeof l.msg === 'string' && /--force: target dst\/r had diverged .*rolled back to dst\/r\.snap3/.test(l.msg)),
      'the receiver logs what --force overwrote',
    );
  });

  test('AbortTransfer removes a resumable transfer’s staging LV; the new target it would have created never appears', () => {
    const before = lv('abort-before', 'a.thinship-staging');
    assert.ok(before, 'the killed sender left the staging LV of its resumable transfer');
    assert.ok(tagsOf(before).includes(`thinship.owner:${encodeTagValue('grpc:thinship-sender/abort-1')}`), tagsOf(before).join(' '));
    assert.equal(r('abort/abort-rc'), '0', r('abort/abort-stderr'));
    assert.match(r('abort/abort-stdout'), /aborted transfer abort-1/);
    assert.deepEqual(names('abort-after', 'a'), [], 'staging LV removed, no target made');
    assert.ok(serveLog(1).some((l) => l.action === 'staging-removed' && l.target === 'dst/a'));
  });

  test('SIGKILL of serve mid-apply: the target still equals its previous snapshot; after a restart the send resumes into the kept staging LV and the target equals the new snapshot', () => {
    assert.notEqual(r('kill-serve/rc'), '0', 'the sender saw the receiver die');
    same('kill-serve');
    assert.ok(lv('kill-serve', 'r.thinship-staging'), 'the staging LV survives the kill');
    const sh = show('kill-serve');
    assert.equal(sh.record?.record.sourceId, uuid('snap4'), 'the record still says snap4');
    assert.deepEqual(
      sh.staged.map((x) => x.kind),
      ['staging-lv'],
    );
    // The restarted receiver kept the staging LV (its transfer is resumable): nothing was removed at start.
    assert.ok(!serveLog(2).some((l) => l.action === 'staging-removed'), 'start-up recovery kept the resumable staging LV');
    ok('kill-serve-resume');
    const resumed = serveLog(2).find((l) => l.msg === 'transfer resuming');
    assert.ok(resumed, 'the second send resumed the transfer');
    same('kill-serve-resume');
    assert.deepEqual(names('kill-serve-resume', 'r'), ['r', 'r.snap4', 'r.snap5']);
    const fin = show('final');
    assert.equal(fin.record?.record.sourceId, uuid('snap5'));
    assert.equal(fin.record?.record.baseId, uuid('snap4'));
    assert.equal(fin.diverged, false);
    assert.deepEqual(fin.staged, []);
  });

  test('the source pool holds no metadata snapshot at the end', () => {
    assert.equal(r('src-tpool-status').split(/\s+/)[6], '-');
  });
});
