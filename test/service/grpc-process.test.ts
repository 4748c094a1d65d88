/**
 * `thinship serve` and `thinship send --to` as separate processes, with real
 * mTLS certificates, on 127.0.0.1: full then incremental byte-exact; the
 * receiver SIGKILLed at several points of a transfer and restarted, and the
 * sender SIGKILLed and run again — each time the transfer resumes from the
 * receiver's durable checkpoint and the target is byte-identical. The bytes
 * sent again are bounded by the checkpoint interval plus what can be in
 * flight (the client's documented bound and the HTTP/2 window).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DemoPool } from '../../src/thin/demo-pool.js';
import { runCli, startCli, type CliResult } from '../helpers/cli.js';
import { demoFixture, grpcSendArgs, writeConfig, startServe, stopServe, assertSameImage, readImage, type TestCerts, type ServeProcess } from './helpers.js';

let dir: string;
let pool: DemoPool;
let img1: Buffer;
let img2: Buffer;
let certs: TestCerts;
const CHECKPOINT_BYTES = 2 * 1024 * 1024;
const OP_BYTES = 256 * 1024;
/**
 * A small receive window keeps what is in flight small, so the kill points
 * below stay well before the end of the 31 MiB transfer on any machine.
 */
const WINDOW_BYTES = 1024 * 1024;
/**
 * What may be sent and not applied when a receiver dies, besides the records
 * applied after its last checkpoint (< one interval): the HTTP/2 window on
 * the wire; in the receiver grpc-js's readable buffer (16 messages) and read
 * queue (1), the records decoding (4) and the one being written (1); in the
 * sender the messages counted as sent that HTTP/2 had not taken yet (4 + 1).
 */
const IN_FLIGHT_BOUND_BYTES = WINDOW_BYTES + (16 + 1 + 4 + 1 + 4 + 1) * OP_BYTES;
const running: ServeProcess[] = [];

before(async () => {
  ({ dir, pool, img1, img2, certs } = await demoFixture('thinship-grpcp-'));
});

after(async () => {
  for (const s of running) s.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string): string {
  return writeConfig(join(dir, `${name}.json`), {
    tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
    stateDir: join(dir, `state-${name}`),
    checkpointIntervalBytes: CHECKPOINT_BYTES,
    receiveWindowBytes: WINDOW_BYTES,
    identities: { 'sender-a': { directories: [join(dir, 'targets')] } },
  });
}

async function serve(cfg: string, port = 0): Promise<ServeProcess> {
  const s = await startServe(['--listen', `127.0.0.1:${port}`, '--config', cfg]);
  running.push(s);
  return s;
}

function sendArgs(port: number, target: string, ids: number[]): string[] {
  return grpcSendArgs(pool, { port, target, ids, certsDir: join(dir, 'certs'), opBytes: OP_BYTES });
}

interface SendJson {
  transferId: string;
  startOffsets: number[];
  dataBytes: number;
  plannedDataBytes: number;
  digest: string;
  attempts: number;
  alreadyComplete: boolean;
  state: { status: string };
}

function parsed(r: CliResult): SendJson {
  assert.equal(r.code, 0, `send failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as SendJson;
}

const checkpointAt = (minDataBytes: number) => (l: Record<string, unknown>) =>
  l.msg === 'checkpoint' && (l.dataBytes as number) >= minDataBytes && l.status === 'in_progress';

test('separate processes: full then incremental over mTLS, byte-exact; transfer status from the CLI', async () => {
  const s = await serve(config('plain'));
  try {
    const target = join(dir, 'targets', 'plain.img');
    const full = parsed(await runCli(sendArgs(s.port, target, [pool.baseDevId])));
    assert.equal(full.state.status, 'TRANSFER_STATUS_COMPLETE');
    assert.deepEqual(full.startOffsets, [0]);
    assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'full');
    const inc = parsed(await runCli(sendArgs(s.port, target, [pool.baseDevId, pool.snapDevId])));
    assertSameImage(readImage(target, pool.volumeSizeBytes), img2, 'incremental');
    const st = await runCli([
      'transfer',
      'status',
      inc.transferId,
      '--json',
      '--to',
      `127.0.0.1:${s.port}`,
      '--server-name',
      'localhost',
      '--tls-dir',
      join(dir, 'certs'),
    ]);
    assert.equal(st.code, 0, st.stderr);
    assert.equal(JSON.parse(st.stdout).status, 'TRANSFER_STATUS_COMPLETE');
    // The same as a table, and in the list of this identity's transfers (newest first).
    const table = await runCli([
      'transfer',
      'status',
      inc.transferId,
      '--to',
      `127.0.0.1:${s.port}`,
      '--server-name',
      'localhost',
      '--tls-dir',
      join(dir, 'certs'),
    ]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^TRANSFER +STATUS +RUNNING +DURABLE +DATA +TARGET +UPDATED\n/);
    assert.match(table.stdout, new RegExp(`^${inc.transferId} +complete +no +64\\.0 MiB `, 'm'));
    const list = await runCli(['transfer', 'list', '--json', '--to', `127.0.0.1:${s.port}`, '--server-name', 'localhost', '--tls-dir', join(dir, 'certs')]);
    assert.equal(list.code, 0, list.stderr);
    const listed = JSON.parse(list.stdout) as { transferId: string; status: string }[];
    assert.equal(listed[0]?.transferId, inc.transferId, 'newest first');
    // The incremental supersedes the full one on the same target (the registry forgets it).
    assert.ok(
      listed.every((t) => t.status === 'TRANSFER_STATUS_COMPLETE'),
      JSON.stringify(listed),
    );
    // a human summary without --json
    const again = await runCli(sendArgs(s.port, target, [pool.baseDevId, pool.snapDevId]).filter((a) => a !== '--json'));
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /already complete/);
    const lines = s.lines.filter((l) => l.msg === 'transfer complete');
    assert.equal(lines.length, 2);
    assert.equal(lines[0]!.identity, 'sender-a');
  } finally {
    await stopServe(s);
  }
});

for (const [label, killAfterBytes] of [
  ['early', 1],
  ['midway', 12 * 1024 * 1024],
  ['late', 22 * 1024 * 1024],
] as const) {
  test(`receiver SIGKILLed ${label} in a transfer, restarted: the sender resumes, byte-identical, re-sent bytes bounded`, async () => {
    const cfg = config(`rk-${label}`);
    let s = await serve(cfg);
    const port = s.port;
    const target = join(dir, 'targets', `rk-${label}.img`);
    const sender = startCli(sendArgs(port, target, [pool.baseDevId]));
    const cp = await s.waitFor(checkpointAt(killAfterBytes));
    // Freeze the sender first, so the receiver cannot finish before it dies however fast this machine is.
    sender.child.kill('SIGSTOP');
    s.child.kill('SIGKILL');
    await s.exited;
    const lastLogged = Math.max(...s.lines.filter(checkpointAt(0)).map((l) => l.durableOffsetBytes as number));
    s = await serve(cfg, port);
    sender.child.kill('SIGCONT');
    try {
      const r = parsed(await sender.result);
      assert.equal(r.state.status, 'TRANSFER_STATUS_COMPLETE');
      assert.ok(r.startOffsets.length >= 2, `resumed: ${JSON.stringify(r.startOffsets)}`);
      const resumedAt = r.startOffsets[1]!;
      assert.ok(
        resumedAt >= lastLogged && lastLogged >= (cp.durableOffsetBytes as number),
        `resumed at ${resumedAt}, last checkpoint logged before the kill ${lastLogged}`,
      );
      const resent = r.dataBytes - r.plannedDataBytes;
      assert.ok(resent >= 0 && resent <= CHECKPOINT_BYTES + IN_FLIGHT_BOUND_BYTES, `re-sent ${resent} bytes`);
      process.stdout.write(`# receiver killed ${label}: resumed at offset ${resumedAt}, re-sent ${resent} bytes (checkpoint interval ${CHECKPOINT_BYTES})\n`);
      assertSameImage(readImage(target, pool.volumeSizeBytes), img1, `receiver killed ${label}`);
      const resumed = s.lines.find((l) => l.msg === 'transfer resuming');
      assert.equal(resumed?.resumeOffsetBytes, resumedAt);
    } finally {
      sender.child.kill('SIGKILL');
      await stopServe(s);
    }
  });
}

for (const [label, killAfterBytes] of [
  ['early', 1],
  ['late', 16 * 1024 * 1024],
] as const) {
  test(`sender SIGKILLed ${label} in a transfer, run again: resumes from the receiver's checkpoint, byte-identical`, async () => {
    const s = await serve(config(`sk-${label}`));
    try {
      const target = join(dir, 'targets', `sk-${label}.img`);
      const first = startCli(sendArgs(s.port, target, [pool.baseDevId]));
      await s.waitFor(checkpointAt(killAfterBytes));
      first.child.kill('SIGKILL');
      const stopped = await s.waitFor((l) => l.msg === 'transfer stopped');
      assert.equal(stopped.code, 'UNAVAILABLE');
      const durable = stopped.durableOffsetBytes as number;
      assert.ok(durable >= killAfterBytes, `the broken stream was checkpointed at the last applied record (${durable})`);
      const r = parsed(await runCli(sendArgs(s.port, target, [pool.baseDevId])));
      assert.equal(r.startOffsets[0], durable, 'the re-run resumes where the receiver stopped');
      assert.ok(r.dataBytes < r.plannedDataBytes);
      assertSameImage(readImage(target, pool.volumeSizeBytes), img1, `sender killed ${label}`);
      // and the incremental on top
      parsed(await runCli(sendArgs(s.port, target, [pool.baseDevId, pool.snapDevId])));
      assertSameImage(readImage(target, pool.volumeSizeBytes), img2, `sender killed ${label}, then incremental`);
    } finally {
      await stopServe(s);
    }
  });
}
