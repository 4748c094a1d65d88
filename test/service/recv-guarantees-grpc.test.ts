/**
 * What the gRPC receiver guarantees for file targets (issue 13), with
 * `thinship serve` and `thinship send --to` as separate processes over real
 * mTLS: the target is always one complete received snapshot (byte for byte),
 * whatever is killed or aborted; the base check reads the record on the
 * target, so it holds after the transfer registry has expired; the size rule
 * is the same as pipe mode's.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, readdirSync, writeFileSync, readFileSync, openSync, writeSync, closeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { DemoPool } from '../../src/thin/demo-pool.js';
import { runCli, startCli, type CliResult } from '../helpers/cli.js';
import { startDelayRelay, type DelayRelay } from '../../src/testing/delay-relay.js';
import { demoFixture, grpcSendArgs, writeConfig, startServe, stopServe, assertSameImage, type TestCerts, type ServeProcess } from './helpers.js';

let dir: string;
let pool: DemoPool;
let img1: Buffer;
let img2: Buffer;
let certs: TestCerts;
const CHECKPOINT_BYTES = 256 * 1024;
/**
 * The demo incremental carries under 2 MiB: sent through a relay at this rate
 * it takes a few seconds, so the kill points below fall inside it.
 */
const SLOW_LINK_BITS_PER_SECOND = 8e6;
const OP_BYTES = 256 * 1024;
const running: ServeProcess[] = [];

before(async () => {
  ({ dir, pool, img1, img2, certs } = await demoFixture('thinship-grpcg-'));
});

after(async () => {
  for (const s of running) s.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string, extra: Record<string, unknown> = {}): string {
  return writeConfig(join(dir, `${name}.json`), {
    tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
    stateDir: join(dir, `state-${name}`),
    checkpointIntervalBytes: CHECKPOINT_BYTES,
    receiveWindowBytes: 1024 * 1024,
    identities: { 'sender-a': { directories: [join(dir, 'targets')] } },
    ...extra,
  });
}

async function serve(cfg: string, port = 0): Promise<ServeProcess> {
  const s = await startServe(['--listen', `127.0.0.1:${port}`, '--config', cfg]);
  running.push(s);
  return s;
}

function sendArgs(port: number, target: string, ids: number[], extra: string[] = []): string[] {
  return grpcSendArgs(pool, { port, target, ids, certsDir: join(dir, 'certs'), opBytes: OP_BYTES, extra });
}

function ok(r: CliResult): { transferId: string } {
  assert.equal(r.code, 0, `send failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as { transferId: string };
}

function assertTarget(path: string, expected: Buffer, what: string): void {
  assertSameImage(readFileSync(path), expected, what);
}

function leftovers(name: string): string[] {
  return readdirSync(join(dir, 'targets')).filter((n) => n.startsWith(`.${name}.thinship-`) && !n.endsWith('-record'));
}

const checkpointAt = (min: number) => (l: Record<string, unknown>) => l.msg === 'checkpoint' && (l.dataBytes as number) >= min && l.status === 'in_progress';

/** The id of the first (full, snapshot 1) transfer to `t` this receiver logged. */
function firstTransferId(s: ServeProcess, t: string): unknown {
  return s.lines.find((l) => l.msg === 'transfer begin' && l.target === t)?.transferId;
}

async function withSnap1(s: ServeProcess, name: string): Promise<string> {
  const t = join(dir, 'targets', name);
  ok(await runCli(sendArgs(s.port, t, [pool.baseDevId])));
  assertTarget(t, img1, `${name}: full`);
  return t;
}

/** A slow link to the receiver at `port` (the relay reconnects to whatever listens there: a restarted serve too). */
async function slowLink(port: number): Promise<DelayRelay> {
  return startDelayRelay({ toHost: '127.0.0.1', toPort: port, delayMs: 1, rateBitsPerSecond: SLOW_LINK_BITS_PER_SECOND, queueBytes: 64 * 1024 });
}

for (const [what, ids, killPoints] of [
  ['incremental (undo journal)', [1, 2], [1, 4 * CHECKPOINT_BYTES]],
  ['full (staging file)', [2], [1, 12 * 1024 * 1024]],
] as const) {
  for (const killAt of killPoints) {
    test(`serve SIGKILLed mid-apply of a ${what} at ${killAt} bytes, restarted: the target is snapshot 1 exactly until the transfer resumes to snapshot 2, or is aborted back to 1`, async () => {
      const name = `sk-${ids.length}-${killAt}.img`;
      const cfg = config(`sk-${ids.length}-${killAt}`);
      let s = await serve(cfg);
      const port = s.port;
      const t = await withSnap1(s, name);
      const ids2 = ids.map((i) => (i === 1 ? pool.baseDevId : pool.snapDevId));
      const link = ids.length === 2 ? await slowLink(port) : undefined;
      const sender = startCli(sendArgs(link?.port ?? port, t, ids2));
      const begun = await s.waitFor((l) => l.msg === 'transfer begin' && l.target === t && l.transferId !== firstTransferId(s, t));
      const at = await s.waitFor((l) => checkpointAt(killAt)(l) && l.transferId === begun.transferId);
      assert.ok((at.durableOffsetBytes as number) < pool.volumeSizeBytes, 'killed before the end');
      sender.child.kill('SIGSTOP');
      s.child.kill('SIGKILL');
      await s.exited;
      if (ids.length === 1) assertTarget(t, img1, 'a full stream is staged beside the target: the target is untouched meanwhile');
      s = await serve(cfg, port);
      try {
        sender.child.kill('SIGCONT');
        ok(await sender.result);
        assertTarget(t, img2, `${what}, resumed after the kill`);
        assert.deepEqual(leftovers(name), []);
      } finally {
        sender.child.kill('SIGKILL');
        await stopServe(s);
        await link?.close();
      }
    });
  }
}

const t0links: DelayRelay[] = [];

test('AbortTransfer of a broken incremental rolls the target back to snapshot 1 exactly; expiry does the same', async () => {
  const cfg = config('abort', { transferExpirySeconds: 2 });
  const s = await serve(cfg);
  try {
    for (const how of ['abort', 'expiry'] as const) {
      const name = `ab-${how}.img`;
      const t = await withSnap1(s, name);
      const link = await slowLink(s.port);
      t0links.push(link);
      const sender = startCli(sendArgs(link.port, t, [pool.baseDevId, pool.snapDevId]));
      const begun = await s.waitFor((l) => l.msg === 'transfer begin' && l.target === t && l.mode === 'incremental');
      const cp = await s.waitFor((l) => checkpointAt(1)(l) && l.transferId === begun.transferId);
      sender.child.kill('SIGSTOP');
      sender.child.kill('SIGKILL');
      await s.waitFor((l) => l.msg === 'transfer stopped' && l.transferId === begun.transferId);
      assert.ok(leftovers(name).length > 0, 'the broken transfer keeps its journal for a resume');
      if (how === 'abort') {
        const r = await runCli([
          'transfer',
          'abort',
          String(cp.transferId),
          '--to',
          `127.0.0.1:${s.port}`,
          '--server-name',
          'localhost',
          '--tls-dir',
          join(dir, 'certs'),
        ]);
        assert.equal(r.code, 0, r.stderr);
      } else {
        await s.waitFor((l) => l.msg === 'transfer expired and forgotten' && l.target === t && l.status === 'in_progress', 60_000);
      }
      assertTarget(t, img1, `after ${how}`);
      assert.deepEqual(leftovers(name), [], `after ${how}`);
      // and the incremental still applies: the rollback left the record valid
      ok(await runCli(sendArgs(s.port, t, [pool.baseDevId, pool.snapDevId])));
      assertTarget(t, img2, `incremental after ${how}`);
    }
  } finally {
    await stopServe(s);
    for (const l of t0links) await l.close();
  }
});

test('wrong base after the transfer record expired: refused from the record on the target (exit 14), target unchanged', async () => {
  const s = await serve(config('expired', { transferExpirySeconds: 1 }));
  try {
    const t = join(dir, 'targets', 'expired.img');
    const full = ok(await runCli(sendArgs(s.port, t, [pool.snapDevId])));
    await s.waitFor((l) => l.msg === 'transfer expired and forgotten' && l.transferId === full.transferId, 60_000);
    const r = await runCli(sendArgs(s.port, t, [pool.baseDevId, pool.snapDevId]));
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, /holds .* but this incremental stream applies to base/);
    assertTarget(t, img2, 'unchanged');
  } finally {
    await stopServe(s);
  }
});

test('divergence over gRPC: DIVERGED (exit 14), then send --force applies over it', async () => {
  const s = await serve(config('diverged'));
  try {
    const t = await withSnap1(s, 'diverged.img');
    let off = 0;
    while (img1.subarray(off, off + pool.blockBytes).equals(img2.subarray(off, off + pool.blockBytes))) off += pool.blockBytes;
    const fd = openSync(t, 'r+');
    writeSync(fd, Buffer.from('local write'), 0, 11, off + 10);
    closeSync(fd);
    const before = readFileSync(t);
    let r = await runCli(sendArgs(s.port, t, [pool.baseDevId, pool.snapDevId]));
    assert.equal(r.code, 14, r.stderr);
    assert.match(r.stderr, /written since it received/);
    assert.ok(readFileSync(t).equals(before), 'nothing written');
    r = await runCli(sendArgs(s.port, t, [pool.baseDevId, pool.snapDevId], ['--force', '--transfer-id', 'forced-1']));
    ok(r);
    assertTarget(t, img2, 'forced');
    await s.waitFor((l) => typeof l.msg === 'string' && /--force: target .* had diverged/.test(l.msg));
  } finally {
    await stopServe(s);
  }
});

test('an existing target smaller than the volume is refused over gRPC too (exit 11), unless --grow', async () => {
  const s = await serve(config('small'));
  try {
    const t = join(dir, 'targets', 'small.img');
    writeFileSync(t, Buffer.alloc(1024 * 1024, 9));
    let r = await runCli(sendArgs(s.port, t, [pool.baseDevId]));
    assert.equal(r.code, 11, r.stderr);
    assert.equal(statSync(t).size, 1024 * 1024, 'not grown');
    assert.ok(readFileSync(t).equals(Buffer.alloc(1024 * 1024, 9)), 'untouched');
    r = await runCli(sendArgs(s.port, t, [pool.baseDevId], ['--grow', '--transfer-id', 'grow-1']));
    ok(r);
    assertTarget(t, img1, 'grown');
    const show = await runCli(['target', 'show', t, '--json']);
    assert.equal(show.code, 0, show.stderr);
    assert.equal(JSON.parse(show.stdout).record.record.transferId, 'grow-1');
  } finally {
    await stopServe(s);
  }
});
