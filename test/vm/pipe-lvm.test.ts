/**
 * Real-kernel tier for replication between real thin LVs in one VM boot:
 * pipe mode (`thinship send | thinship recv`, issue 3) and gRPC with mTLS
 * (`thinship serve` + `thinship send --to`, issue 4). Full then incremental with discards,
 * target compared byte for byte with the source snapshot (cmp in the guest),
 * the target's mapped space not above the source's (discards really free pool
 * blocks), and a target pool whose chunk size is 4x the source's.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, rmSync } from 'node:fs';
import { runCli } from '../helpers/cli.js';
import { join } from 'node:path';
import { describeRun, guestDir, readLvsRows, runGuest, vmResultsRoot, vmSkipReason, type GuestRun } from './vm-harness.js';

const src = {
  VG: 'vg0',
  POOL: 'pool',
  CHUNK: '64k',
  POOL_SIZE: '1G',
  LV: 'thin1',
  LV_SIZE: '128M',
  SNAP1: 'snap1',
  SNAP2: 'snap2',
  // chunks of 64 KiB: data spread out, rewritten, and discarded (whole chunks and a partial one)
  OPS1: 'w:0+64 w:1024+16 w:1500+1 w:2047+1 w:1000+3',
  OPS2: 'w:10+4 w:100+2 w:1501+1 d:1024+4 d:2047+1 d:20+1 s:500 p:40 d:1000+3',
};

describe('pipe mode between real thin LVs (VM boot: pipe-lvm.sh)', { skip: vmSkipReason('pipe-lvm') }, () => {
  let run: GuestRun;
  const r = (f: string) => {
    const p = join(run.resultsDir, f);
    assert.ok(existsSync(p), `the guest did not write ${f}\n${describeRun(run)}`);
    return readFileSync(p, 'utf8').trim();
  };

  before(async () => {
    // the guest has no openssl: make the mTLS certificates here, with the CLI, inside the shared repo
    const certsDir = join(vmResultsRoot, `certs-${process.pid}`);
    rmSync(certsDir, { recursive: true, force: true });
    const c = await runCli(['certs', '--out', certsDir, '--server-name', 'localhost', '--client', 'vm-sender']);
    assert.equal(c.code, 0, c.stderr);
    const env: Record<string, string> = { TARGET_BIG_CHUNK: '256k', CERTS_DIR: certsDir };
    for (const [k, v] of Object.entries(src)) env[`SRC_${k}`] = v;
    run = await runGuest(join(guestDir, 'pipe-lvm.sh'), { disks: ['2G', '2G'], env, timeoutSec: 600 });
    process.stderr.write(`[vm] pipe-lvm: wall ${(run.wallMs / 1000).toFixed(1)} s, boot ${run.bootSec} s\n`);
  });

  test('the guest scenario ran to the end', () => {
    assert.equal(run.exitCode, 0, describeRun(run));
  });

  for (const t of ['replica', 'replica-big']) {
    test(`${t}: full send | recv is byte-exact, holes of the source read as zeros on a dirty target`, () => {
      assert.equal(r(`${t}-full/rc`), '0 0', `send/recv exit codes\n${r(`${t}-full/send-stderr`)}\n${r(`${t}-full/recv-stderr`)}`);
      assert.equal(r(`${t}-full/cmp`), 'same', 'target == snap1');
      assert.match(r(`${t}-full/recv-stderr`), /thinship recv: dst\/.*written/);
    });
    test(`${t}: incremental with discards is byte-exact`, () => {
      assert.equal(r(`${t}-incr/rc`), '0 0', `${r(`${t}-incr/send-stderr`)}\n${r(`${t}-incr/recv-stderr`)}`);
      assert.equal(r(`${t}-incr/cmp`), 'same', 'target == snap2');
      assert.match(r(`${t}-incr/recv-stderr`), /[1-9]\d* unmap/);
    });
  }

  test('same chunk size: the target maps no more than the source (discards freed pool blocks)', () => {
    const srcSectors = Number(r('src-snap2-mapped-sectors'));
    const dstSectors = Number(r('replica-incr/target-mapped-sectors'));
    assert.ok(srcSectors > 0);
    assert.ok(dstSectors <= srcSectors, `target maps ${dstSectors} sectors, source snap2 ${srcSectors}`);
  });

  test('4x larger target chunks: mapped space within one target chunk per source run', () => {
    const srcSectors = Number(r('src-snap2-mapped-sectors'));
    const dstSectors = Number(r('replica-big-incr/target-mapped-sectors'));
    // each source extent can add at most one partially used 256 KiB chunk at each end
    assert.ok(dstSectors <= srcSectors + 12 * 2 * 512, `target ${dstSectors} sectors vs source ${srcSectors}`);
  });

  test('gRPC with mTLS between real thin LVs: full then incremental, byte-exact', () => {
    for (const [n, snap] of [
      ['grpc-full', 'snap1'],
      ['grpc-incr', 'snap2'],
    ] as const) {
      assert.equal(r(`${n}/rc`), '0', `${n}: ${r(`${n}/stderr`)}\n--- serve.log ---\n${r('serve.log').slice(-3000)}`);
      assert.equal(r(`${n}/cmp`), 'same', `${n}: target == ${snap}`);
      const out = JSON.parse(r(`${n}/stdout`)) as {
        mode: string;
        dataBytes: number;
        plannedDataBytes: number;
        digest: string;
        alreadyComplete: boolean;
        state: { status: string };
      };
      assert.equal(out.mode, n === 'grpc-full' ? 'full' : 'incremental', `${n}: mode in the JSON summary`);
      assert.equal(out.state.status, 'TRANSFER_STATUS_COMPLETE', `${n}: status`);
      assert.equal(out.alreadyComplete, false, `${n}: really sent`);
      assert.ok(out.dataBytes > 0 && out.dataBytes === out.plannedDataBytes, `${n}: sent ${out.dataBytes} of ${out.plannedDataBytes} planned bytes`);
      assert.match(out.digest, /^[0-9a-f]{64}$/, `${n}: stream digest`);
    }
    assert.ok(Number(r('grpc-incr/target-mapped-sectors')) <= Number(r('src-snap2-mapped-sectors')), 'gRPC target maps no more than the source');
  });

  test('gRPC: a target the identity may not write is refused (exit 13)', () => {
    assert.equal(r('grpc-denied/rc'), '13', r('grpc-denied/stderr'));
    assert.match(r('grpc-denied/stderr'), /not allowed|permission/i);
  });

  test('the metadata snapshot is released after every send', () => {
    for (const n of ['replica-full', 'replica-incr', 'replica-big-full', 'replica-big-incr', 'grpc-full', 'grpc-incr']) {
      assert.equal(r(`${n}/tpool-status`).split(/\s+/)[6], '-', `${n}: held root after send`);
    }
    const rows = readLvsRows(run.resultsDir, 'lvs-after.json');
    const snap = rows.find((x) => x.lv_name === 'snap1');
    assert.ok(snap && snap.lv_attr?.[4] !== 'a', 'snapshots were put back inactive after the send');
  });
});
