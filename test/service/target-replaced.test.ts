/**
 * The receiver answers "already complete" and resume from the target as well
 * as from its record: `thinship serve` and `thinship send --to` as separate
 * processes over mTLS, real files. A target deleted after a full send is sent
 * again (not "already complete"); a target re-created since refuses the
 * incremental (exit 14) and is left untouched; an interrupted full transfer
 * whose target is deleted starts over from 0, an interrupted incremental
 * whose target is replaced is refused (the in-process sender, which stops
 * itself at a byte count). A hard-linked target is refused.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync, readFileSync, statSync, unlinkSync, utimesSync, linkSync, copyFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { DemoPool } from '../../src/thin/demo-pool.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { planSend } from '../../src/thin/planner.js';
import { openSourceReader } from '../../src/sender/volume-reader.js';
import { ReceiverClient, sendPlanOverGrpc, type GrpcSendResult } from '../../src/rpc/client.js';
import type { ThinshipError } from '../../src/errors.js';
import { gatedAfterReading } from './receiver-helpers.js';
import { demoFixture, waitFor, writeConfig, startServe, stopServe, assertSameImage, readImage, type TestCerts, type ServeProcess } from './helpers.js';

let dir: string;
let targets: string;
let pool: DemoPool;
let img1: Buffer;
let img2: Buffer;
let certs: TestCerts;
let s: ServeProcess;
// small, so that the interrupted incremental below (1 MiB of its ~1.9 MiB sent) has a checkpoint before it is cut (the
// test waits on it, not on what the sender handed to gRPC)
const CHECKPOINT_BYTES = 128 * 1024;
const OLD_MTIME = new Date(1_000_000_000_000);
const EXIT_BASE_MISMATCH = 14;
const EXIT_PERMISSION_DENIED = 13;

before(async () => {
  ({ dir, pool, img1, img2, certs } = await demoFixture('thinship-replaced-'));
  targets = join(dir, 'targets');
  s = await startServe([
    '--listen',
    '127.0.0.1:0',
    '--config',
    writeConfig(join(dir, 'rx.json'), {
      tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
      stateDir: join(dir, 'state'),
      checkpointIntervalBytes: CHECKPOINT_BYTES,
      identities: { 'sender-a': { directories: [targets] } },
    }),
  ]);
});

after(async () => {
  if (s) await stopServe(s);
  rmSync(dir, { recursive: true, force: true });
});

function sendArgs(target: string, ids: number[]): string[] {
  return [
    'send',
    '--pool-metadata',
    pool.metadataPath,
    '--pool-data',
    pool.dataPath,
    '--volume-size',
    String(pool.volumeSizeBytes),
    '--max-op-bytes',
    String(256 * 1024),
    '--to',
    `127.0.0.1:${s.port}`,
    '--server-name',
    'localhost',
    '--target',
    target,
    '--tls-dir',
    join(dir, 'certs'),
    '--retries',
    '3',
    '--json',
    ...ids.map(String),
  ];
}

interface SendJson {
  transferId: string;
  startOffsets: number[];
  alreadyComplete: boolean;
  state: { status: string };
}

function parsed(r: CliResult): SendJson {
  assert.equal(r.code, 0, `send failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as SendJson;
}

async function transferStatus(id: string): Promise<{ status: string; durableOffsetBytes: number | string }> {
  const r = await runCli(['transfer', 'status', id, '--json', '--to', `127.0.0.1:${s.port}`, '--server-name', 'localhost', '--tls-dir', join(dir, 'certs')]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { status: string; durableOffsetBytes: number | string };
}

/** The file's bytes and mtime, to show a refused send left it alone. */
function snapshot(path: string): { bytes: Buffer; mtimeMs: number } {
  return { bytes: readFileSync(path), mtimeMs: statSync(path).mtimeMs };
}

test('a target deleted after a full send: the same send again re-creates it byte-exact, not "already complete"', async () => {
  const target = join(targets, 'deleted.img');
  const full = parsed(await runCli(sendArgs(target, [pool.baseDevId])));
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'full');
  unlinkSync(target);
  const st = await transferStatus(full.transferId);
  assert.equal(st.status, 'TRANSFER_STATUS_IN_PROGRESS', 'GetTransferState answers from the target: nothing of it is there');
  assert.equal(Number(st.durableOffsetBytes), 0);
  const again = parsed(await runCli(sendArgs(target, [pool.baseDevId])));
  assert.equal(again.transferId, full.transferId, 'the same (default) transfer id');
  assert.equal(again.alreadyComplete, false);
  assert.deepEqual(again.startOffsets, [0]);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'sent again after the delete');
  // Now the target is what the record says again.
  assert.equal(parsed(await runCli(sendArgs(target, [pool.baseDevId]))).alreadyComplete, true);
  parsed(await runCli(sendArgs(target, [pool.baseDevId, pool.snapDevId])));
  assertSameImage(readImage(target, pool.volumeSizeBytes), img2, 'the incremental onto the re-sent full');
});

test('a target re-created since the full send (empty, or same size): the incremental is refused with exit 14, the target untouched', async () => {
  const target = join(targets, 'recreated.img');
  parsed(await runCli(sendArgs(target, [pool.baseDevId])));
  for (const [what, content] of [
    ['empty', Buffer.alloc(0)],
    ['same size, other content', Buffer.alloc(pool.volumeSizeBytes, 0xee)],
  ] as const) {
    unlinkSync(target);
    writeFileSync(target, content);
    utimesSync(target, OLD_MTIME, OLD_MTIME);
    const before = snapshot(target);
    const r = await runCli(sendArgs(target, [pool.baseDevId, pool.snapDevId]));
    assert.equal(r.code, EXIT_BASE_MISMATCH, `${what}: ${r.stderr}`);
    // Issue 13: a file target's base is read from the record on it, which a re-created file lacks.
    assert.match(r.stderr, /has no thinship record, so nothing says it holds base/, what);
    assert.deepEqual(snapshot(target), before, `${what}: the target is untouched`);
  }
  // A full send makes it known again, and the incremental applies.
  parsed(await runCli(sendArgs(target, [pool.baseDevId])));
  parsed(await runCli(sendArgs(target, [pool.baseDevId, pool.snapDevId])));
  assertSameImage(readImage(target, pool.volumeSizeBytes), img2, 'full then incremental after the refusals');
});

/**
 * The in-process sender (the one `send --to` runs) to the serve process. With `stopAtBytes` its
 * reads past that many bytes are held until the RECEIVER reports part of the transfer durable (its own
 * checkpoint, not the sender's counters: under load the receiver lags what was handed to gRPC);
 * then it aborts, leaving a resumable transfer.
 */
async function sendInProcess(target: string, transferId: string, ids: [number] | [number, number], stopAtBytes?: number): Promise<GrpcSendResult> {
  const [snap, base] = ids.length === 2 ? [ids[1], ids[0]] : [ids[0], undefined];
  const p = await planSend(
    { kind: 'offline', metadataPath: pool.metadataPath, dataPath: pool.dataPath, snapDevId: snap, baseDevId: base, volumeSizeBytes: pool.volumeSizeBytes },
    { withMappings: true, maxOpBytes: 64 * 1024 },
  );
  const client = await ReceiverClient.connect({ address: `127.0.0.1:${s.port}`, tls: certs.clientA, serverName: 'localhost' });
  const ac = new AbortController();
  const gate = stopAtBytes === undefined ? undefined : gatedAfterReading(stopAtBytes);
  try {
    const opened = await openSourceReader(p);
    const reader = gate ? gate.wrap(opened) : opened;
    try {
      const sending = sendPlanOverGrpc(client, p, reader, { target, transferId, maxAttempts: 1, signal: ac.signal });
      if (gate) {
        sending.catch(() => undefined);
        try {
          await waitFor(async () => ((await client.getTransferState(transferId))?.durableOffsetBytes ?? 0) > 0, `a first checkpoint of ${transferId}`, 60_000);
          ac.abort();
        } finally {
          gate.release();
        }
      }
      return await sending;
    } finally {
      await reader.close();
    }
  } finally {
    client.close();
    await p.close();
  }
}

/** Sends until stopAtBytes and a first receiver checkpoint, then aborts; waits until the receiver has stopped the transfer. */
async function interrupted(target: string, transferId: string, ids: [number] | [number, number], stopAtBytes: number): Promise<void> {
  await assert.rejects(sendInProcess(target, transferId, ids, stopAtBytes), (e: ThinshipError) => e.code === 'ABORTED');
  const stopped = await s.waitFor((l) => l.msg === 'transfer stopped' && l.transferId === transferId);
  assert.ok((stopped.durableOffsetBytes as number) > 0, 'something of it is durable');
}

test('an interrupted full transfer whose target is deleted starts over from 0; an interrupted incremental whose target is replaced is refused', async () => {
  const full = join(targets, 'interrupted-full.img');
  await interrupted(full, 'int-full', [pool.baseDevId], 8 * 1024 * 1024);
  unlinkSync(full);
  const r = await sendInProcess(full, 'int-full', [pool.baseDevId]);
  assert.deepEqual(r.startOffsets, [0], 'no resume into a target that is not there');
  assertSameImage(readImage(full, pool.volumeSizeBytes), img1, 'started over');

  const inc = join(targets, 'interrupted-inc.img');
  await sendInProcess(inc, 'int-inc-base', [pool.baseDevId]);
  await interrupted(inc, 'int-inc', [pool.baseDevId, pool.snapDevId], 1024 * 1024); // of its ~1.9 MiB
  // Replaced by a copy of itself: another file, whatever it holds.
  copyFileSync(inc, `${inc}.copy`);
  renameSync(`${inc}.copy`, inc);
  utimesSync(inc, OLD_MTIME, OLD_MTIME);
  const before = snapshot(inc);
  await assert.rejects(sendInProcess(inc, 'int-inc', [pool.baseDevId, pool.snapDevId]), (e: ThinshipError) => {
    assert.equal(e.code, 'BASE_MISMATCH', e.message);
    assert.match(e.message, /was replaced since transfer int-inc wrote it/);
    return true;
  });
  assert.deepEqual(snapshot(inc), before, 'the replaced target is untouched');
});

test('a target hard-linked to a file outside the allowed directory is refused (exit 13), the file untouched', async () => {
  const victim = join(dir, 'victim.img');
  writeFileSync(victim, 'not a target\n');
  utimesSync(victim, OLD_MTIME, OLD_MTIME);
  const link = join(targets, 'hardlink.img');
  linkSync(victim, link);
  const r = await runCli(sendArgs(link, [pool.baseDevId]));
  assert.equal(r.code, EXIT_PERMISSION_DENIED, r.stderr);
  assert.match(r.stderr, /hard links/);
  assert.ok(r.stderr.includes(link), r.stderr);
  assert.deepEqual(snapshot(victim), { bytes: Buffer.from('not a target\n'), mtimeMs: OLD_MTIME.getTime() });
});
