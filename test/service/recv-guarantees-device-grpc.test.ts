/**
 * What the gRPC receiver guarantees for raw block-device targets (issue 13),
 * on real loop devices listed under `devices`, with `thinship serve` and
 * `thinship send --to` as separate processes over real mTLS: the record is in
 * the receiver's state directory, every apply goes through an undo journal
 * there, and the device reads back byte for byte as one complete snapshot
 * whatever is killed or aborted. Also GetTarget (`thinship target show --to`):
 * its content, and the same access rules as applying.
 * Needs root and losetup: skipped with a message otherwise.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, readdirSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DemoPool } from '../../src/thin/demo-pool.js';
import { runCli, startCli, type CliResult } from '../helpers/cli.js';
import { startDelayRelay, type DelayRelay } from '../../src/testing/delay-relay.js';
import { demoFixture, grpcSendArgs, writeConfig, startServe, stopServe, assertSameImage, type TestCerts, type ServeProcess } from './helpers.js';
import { detachLoop, loopUnavailable, newLoop, readDevice, writeDevice } from '../helpers/loop.js';

const skipReason = await loopUnavailable();
if (skipReason) console.log(`# recv-guarantees-device-grpc tests skipped: ${skipReason}`);

let dir: string;
let pool: DemoPool;
let img1: Buffer;
let img2: Buffer;
let certs: TestCerts;
const CHECKPOINT_BYTES = 256 * 1024;
/** The demo streams carry a few MiB: through a relay at this rate they take seconds, so the kill points fall inside. */
const SLOW_LINK_BITS_PER_SECOND = 8e6;
const OP_BYTES = 256 * 1024;
const running: ServeProcess[] = [];
const loops: string[] = [];

before(async () => {
  if (skipReason) return;
  ({ dir, pool, img1, img2, certs } = await demoFixture('thinship-devgrpc-'));
});

after(async () => {
  for (const s of running) s.child.kill('SIGKILL');
  for (const l of loops) await detachLoop(l).catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function device(name: string, sizeBytes = pool.volumeSizeBytes): Promise<string> {
  const dev = await newLoop(join(dir, `${name}.backing`), sizeBytes);
  loops.push(dev);
  return dev;
}

/** A receiver config: sender-a may write `devices` and the targets directory; sender-b only a directory of its own. */
function config(name: string, devices: string[], extra: Record<string, unknown> = {}): string {
  return writeConfig(join(dir, `${name}.json`), {
    tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
    stateDir: join(dir, `state-${name}`),
    checkpointIntervalBytes: CHECKPOINT_BYTES,
    receiveWindowBytes: 1024 * 1024,
    identities: { 'sender-a': { devices, directories: [join(dir, 'targets')] }, 'sender-b': { directories: [join(dir, 'pool')] } },
    ...extra,
  });
}

async function serve(cfg: string, port = 0): Promise<ServeProcess> {
  const s = await startServe(['--listen', `127.0.0.1:${port}`, '--config', cfg]);
  running.push(s);
  return s;
}

const tls = (who: 'a' | 'b') =>
  who === 'a' ? ['--tls-dir', join(dir, 'certs')] : ['--ca', certs.clientB.ca, '--cert', certs.clientB.cert, '--key', certs.clientB.key];

function sendArgs(port: number, target: string, ids: string[], extra: string[] = []): string[] {
  return grpcSendArgs(pool, { port, target, ids, certsDir: join(dir, 'certs'), opBytes: OP_BYTES, extra });
}

function ok(r: CliResult): { transferId: string } {
  assert.equal(r.code, 0, `send failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as { transferId: string };
}

interface Shown {
  kind: string;
  identity?: string;
  record: { record: { sourceId: string; baseId: string; digest: string; transferId: string }; store: string } | null;
  diverged: boolean;
  divergence: string[];
  staged: { kind: string }[];
}

/** `thinship target show --to` (GetTarget) as identity `who`. */
async function remoteShow(port: number, target: string, who: 'a' | 'b' = 'a'): Promise<CliResult> {
  return runCli(['target', 'show', target, '--to', `127.0.0.1:${port}`, '--server-name', 'localhost', ...tls(who), '--json']);
}

async function shown(port: number, target: string): Promise<Shown> {
  const r = await remoteShow(port, target);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Shown;
}

function assertDevice(dev: string, expected: Buffer, what: string): void {
  assertSameImage(readDevice(dev, expected.length), expected, what, pool.blockBytes);
}

function journals(cfgName: string): string[] {
  const d = join(dir, `state-${cfgName}`, 'targets');
  return existsSync(d) ? readdirSync(d).filter((n) => n.includes('.undo-')) : [];
}

const snap = (i: 1 | 2) => String(i === 1 ? pool.baseDevId : pool.snapDevId);

test(
  'device over gRPC: full then incremental, recorded in the state dir; GetTarget (target show --to) reports it; a wrong base is refused (exit 14) before any byte',
  { skip: skipReason },
  async () => {
    const dev = await device('basic');
    const other = await device('basic-other');
    const s = await serve(config('basic', [dev, other]));
    try {
      const full = ok(await runCli(sendArgs(s.port, dev, [snap(1)])));
      assertDevice(dev, img1, 'full');
      let r = await shown(s.port, dev);
      assert.equal(r.kind, 'block-device');
      assert.match(r.identity ?? '', /^loop backing-file /);
      assert.equal(r.record?.store, 'state-dir');
      assert.equal(r.record.record.transferId, full.transferId);
      assert.equal(r.record.record.baseId, '');
      assert.match(r.record.record.digest, /^[0-9a-f]{64}$/);
      assert.equal(r.diverged, false, r.divergence.join('; '));
      assert.deepEqual(r.staged, []);
      const snap1 = r.record.record.sourceId;
      ok(await runCli(sendArgs(s.port, dev, [snap(1), snap(2)])));
      assertDevice(dev, img2, 'incremental');
      r = await shown(s.port, dev);
      assert.equal(r.record?.record.baseId, snap1);
      // The same answer on the receiving host, from the state directory.
      const local = await runCli(['target', 'show', dev, '--state-dir', join(dir, 'state-basic'), '--json']);
      assert.equal(local.code, 0, local.stderr);
      assert.equal((JSON.parse(local.stdout) as Shown).record?.record.sourceId, r.record?.record.sourceId);
      // Wrong base: `other` holds snapshot 2 (full), the incremental 1→2 is refused, nothing written.
      ok(await runCli(sendArgs(s.port, other, [snap(2)])));
      const refused = await runCli(sendArgs(s.port, other, [snap(1), snap(2)], ['--transfer-id', 'wrong-base']));
      assert.equal(refused.code, 14, refused.stderr);
      assert.match(refused.stderr, /holds .* but this incremental stream applies to base/);
      assertDevice(other, img2, 'untouched by the refused incremental');
      assert.equal((await shown(s.port, other)).diverged, false, 'nothing was written (the I/O counters did not move)');
      assert.deepEqual(journals('basic'), []);
    } finally {
      await stopServe(s);
    }
  },
);

test(
  'GetTarget: the same access rules as applying (another identity, a path outside: PERMISSION_DENIED, exit 13); a missing target is NOT_FOUND (exit 3); a file target reports its xattr record',
  { skip: skipReason },
  async () => {
    const dev = await device('acl');
    const s = await serve(config('acl', [dev]));
    try {
      ok(await runCli(sendArgs(s.port, dev, [snap(1)])));
      const b = await remoteShow(s.port, dev, 'b');
      assert.equal(b.code, 13, b.stderr);
      assert.match(b.stderr, /may not write target/);
      assert.doesNotMatch(b.stderr, /sourceId|holds/, 'nothing of the record is told');
      const outside = await remoteShow(s.port, join(dir, 'pool', 'meta.bin'));
      assert.equal(outside.code, 13, outside.stderr);
      const missing = await remoteShow(s.port, join(dir, 'targets', 'never-sent.img'));
      assert.equal(missing.code, 3, missing.stderr);
      assert.match(missing.stderr, /does not exist/);
      const file = join(dir, 'targets', 'acl-file.img');
      const sent = ok(await runCli(sendArgs(s.port, file, [snap(2)])));
      const r = await shown(s.port, file);
      assert.equal(r.kind, 'file');
      assert.equal(r.record?.store, 'xattr');
      assert.equal(r.record.record.transferId, sent.transferId);
      assert.equal(r.diverged, false);
      writeFileSync(file, Buffer.alloc(16, 1), { flag: 'r+' });
      assert.equal((await shown(s.port, file)).diverged, true, 'a local write is reported as divergence');
    } finally {
      await stopServe(s);
    }
  },
);

/** A slow link to the receiver at `port` (the relay reconnects to whatever listens there: a restarted serve too). */
async function slowLink(port: number): Promise<DelayRelay> {
  return startDelayRelay({ toHost: '127.0.0.1', toPort: port, delayMs: 1, rateBitsPerSecond: SLOW_LINK_BITS_PER_SECOND, queueBytes: 64 * 1024 });
}

const checkpointAt = (min: number) => (l: Record<string, unknown>) => l.msg === 'checkpoint' && (l.dataBytes as number) >= min && l.status === 'in_progress';

for (const [what, ids] of [
  ['incremental', [1, 2]],
  ['full', [2]],
] as const) {
  test(
    `serve SIGKILLed mid-apply of a ${what} onto a device, restarted: GetTarget shows the staged journal; the sender's resume ends at snapshot 2 exactly`,
    { skip: skipReason },
    async () => {
      const name = `sk-${what}`;
      const dev = await device(name);
      const cfg = config(name, [dev]);
      let s = await serve(cfg);
      const port = s.port;
      ok(await runCli(sendArgs(port, dev, [snap(1)])));
      const link = await slowLink(port);
      const sender = startCli(
        sendArgs(
          link.port,
          dev,
          ids.map((i) => snap(i)),
          ['--transfer-id', `kill-${what}`],
        ),
      );
      try {
        await s.waitFor((l) => checkpointAt(2 * CHECKPOINT_BYTES)(l) && l.transferId === `kill-${what}`);
        sender.child.kill('SIGSTOP');
        s.child.kill('SIGKILL');
        await s.exited;
        assert.equal(journals(name).length, 1, 'the journal survives the kill');
        s = await serve(cfg, port);
        const r = await shown(port, dev);
        assert.deepEqual(
          r.staged.map((x) => x.kind),
          ['undo-journal'],
          'the resumable transfer keeps its journal',
        );
        sender.child.kill('SIGCONT');
        ok(await sender.result);
        assertDevice(dev, img2, `${what}, resumed after the kill`);
        assert.deepEqual(journals(name), []);
        assert.equal((await shown(port, dev)).diverged, false);
      } finally {
        sender.child.kill('SIGKILL');
        await stopServe(s);
        await link.close();
      }
    },
  );
}

test(
  'serve SIGKILLed mid-apply onto a device with its sender gone: after the restart, AbortTransfer rolls the device back to snapshot 1 exactly; expiry does the same',
  { skip: skipReason },
  async () => {
    for (const how of ['abort', 'expiry'] as const) {
      const name = `gone-${how}`;
      const dev = await device(name);
      const cfg = config(name, [dev], how === 'expiry' ? { transferExpirySeconds: 3 } : {});
      let s = await serve(cfg);
      const port = s.port;
      const link = await slowLink(port);
      try {
        ok(await runCli(sendArgs(port, dev, [snap(1)])));
        const sender = startCli(sendArgs(link.port, dev, [snap(1), snap(2)], ['--transfer-id', `gone-${how}`]));
        await s.waitFor((l) => checkpointAt(CHECKPOINT_BYTES)(l) && l.transferId === `gone-${how}`);
        sender.child.kill('SIGKILL');
        s.child.kill('SIGKILL');
        await s.exited;
        assert.ok(!readDevice(dev, pool.volumeSizeBytes).equals(img1), 'the killed apply had written the device');
        s = await serve(cfg, port);
        if (how === 'abort') {
          const r = await runCli(['transfer', 'abort', `gone-${how}`, '--to', `127.0.0.1:${port}`, '--server-name', 'localhost', ...tls('a')]);
          assert.equal(r.code, 0, r.stderr);
        } else {
          await s.waitFor((l) => l.msg === 'transfer expired and forgotten' && l.transferId === `gone-${how}`, 60_000);
        }
        assertDevice(dev, img1, `after ${how}`);
        assert.deepEqual(journals(name), [], `after ${how}`);
        const r = await shown(port, dev);
        assert.equal(r.diverged, false, `after ${how} the record is valid again: ${r.divergence.join('; ')}`);
        ok(await runCli(sendArgs(port, dev, [snap(1), snap(2)], ['--transfer-id', `after-${how}`])));
        assertDevice(dev, img2, `incremental after ${how}`);
      } finally {
        await stopServe(s);
        await link.close();
      }
    }
  },
);

test('device over gRPC: a device smaller than the volume is refused (exit 11), and --grow cannot grow it', { skip: skipReason }, async () => {
  const dev = await device('small', 1024 * 1024);
  writeDevice(dev, 0, Buffer.alloc(1024 * 1024, 9));
  const s = await serve(config('small', [dev]));
  try {
    let r = await runCli(sendArgs(s.port, dev, [snap(1)]));
    assert.equal(r.code, 11, r.stderr);
    r = await runCli(sendArgs(s.port, dev, [snap(1)], ['--grow', '--transfer-id', 'grow-1']));
    assert.equal(r.code, 11, r.stderr);
    assert.match(r.stderr, /--grow cannot grow a block device/);
    assert.ok(readDevice(dev, 1024 * 1024).equals(Buffer.alloc(1024 * 1024, 9)), 'untouched');
  } finally {
    await stopServe(s);
  }
});
