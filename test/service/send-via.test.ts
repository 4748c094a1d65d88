/**
 * `thinship send … --via` and `thinship transfer … --via`: the command line
 * driving a real sender daemon (`thinship sender serve`, a child process)
 * that sends to a real receiver (`thinship serve`, a child process), all over
 * mTLS with test certificates. A full and an incremental arrive byte-exact
 * with the progress modes of a direct send; a refused transfer exits with the
 * same code as the same send made directly; SIGINT on the command cancels the
 * transfer and leaves nothing reserved on either side; list, status and
 * cancel reach the daemon's transfers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readdirSync, rmSync, utimesSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, startCli } from '../helpers/cli.js';
import { ReceiverClient } from '../../src/rpc/client.js';
import {
  demoFixture,
  writeConfig,
  startServe,
  startSenderServe,
  stopServe,
  assertSameImage,
  readImage,
  waitFor,
  type DemoFixture,
  type ServeProcess,
} from './helpers.js';

let fx: DemoFixture;
let rx: ServeProcess;
let sender: ServeProcess;
let rxClient: ReceiverClient;
const targets = () => join(fx.dir, 'targets');
const rxAddress = () => `127.0.0.1:${rx.port}`;
const via = () => `127.0.0.1:${sender.port}`;

before(async () => {
  fx = await demoFixture('thinship-sendvia-');
  const rxConfig = writeConfig(join(fx.dir, 'rx.json'), {
    tls: fx.certs.server,
    stateDir: join(fx.dir, 'rx-state'),
    identities: { 'sender-a': { directories: [targets()] } },
  });
  rx = await startServe(['--listen', '127.0.0.1:0', '--config', rxConfig]);
  // The daemon speaks to the receiver as sender-a; callers: sender-a may do everything with the
  // demo pool into targets/, sender-b only watch.
  const rules = { sources: { offlineDirectories: [fx.pool.dir] }, destinations: [{ receiver: rxAddress(), target: `${targets()}/*` }] };
  const senderConfig = writeConfig(join(fx.dir, 'sender.json'), {
    tls: fx.certs.server,
    stateDir: join(fx.dir, 'sender-state'),
    receiverTls: fx.certs.clientA,
    identities: { 'sender-a': rules, 'sender-b': { ...rules, actions: ['watch'] } },
  });
  sender = await startSenderServe(['--listen', '127.0.0.1:0', '--config', senderConfig]);
  rxClient = await ReceiverClient.connect({ address: rxAddress(), tls: fx.certs.clientA, serverName: 'localhost' });
});

after(async () => {
  rxClient?.close();
  if (sender) await stopServe(sender);
  if (rx) await stopServe(rx);
  if (fx) rmSync(fx.dir, { recursive: true, force: true });
});

const tlsA = () => ['--ca', fx.certs.clientA.ca, '--cert', fx.certs.clientA.cert, '--key', fx.certs.clientA.key, '--server-name', 'localhost'];
const tlsB = () => ['--ca', fx.certs.clientB.ca, '--cert', fx.certs.clientB.cert, '--key', fx.certs.clientB.key, '--server-name', 'localhost'];
const offline = () => ['--pool-metadata', fx.pool.metadataPath, '--pool-data', fx.pool.dataPath, '--volume-size', String(fx.pool.volumeSizeBytes)];
const full = () => [...offline(), String(fx.pool.baseDevId)];
const incremental = () => [...offline(), String(fx.pool.baseDevId), String(fx.pool.snapDevId)];
const viaArgs = (target: string) => ['--via', via(), '--to', rxAddress(), '--target', join(targets(), target), ...tlsA()];

interface ProgressLineJson {
  progress: string;
  doneBytes: number;
  totalBytes: number | null;
  final?: true;
}
const progressLines = (stderr: string): ProgressLineJson[] =>
  stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as ProgressLineJson);

/** The file names beside a target that hold a staged apply or an undo journal (left reserved). */
const stagedBeside = (target: string) => readdirSync(targets()).filter((n) => n.startsWith(`.${target}.thinship-`));

test('send --via: a full then an incremental arrive byte-exact, with JSON progress lines and the summary of a direct send', async () => {
  const r1 = await runCli(['send', ...full(), ...viaArgs('replica.img'), '--progress', 'json']);
  assert.equal(r1.code, 0, r1.stderr);
  assert.match(
    r1.stdout,
    new RegExp(
      `^thinship send: full ${fx.pool.baseDevId} via ${via()} to ${rxAddress()} .*replica\\.img: .* of data, .*; digest [0-9a-f]{64}; transfer tsd-[0-9a-f]{32}\\n$`,
    ),
  );
  assertSameImage(readImage(join(targets(), 'replica.img'), fx.pool.volumeSizeBytes), fx.img1, 'full via the daemon');
  const lines = progressLines(r1.stderr);
  assert.ok(lines.length >= 1, `JSON progress lines on stderr:\n${r1.stderr}`);
  for (const l of lines) assert.equal(l.progress, 'send');
  const last = lines.at(-1)!;
  assert.equal(last.final, true, 'the last progress line is the final one');
  assert.ok(last.totalBytes !== null && last.totalBytes > 0, 'the total is known once the daemon planned');
  assert.equal(last.doneBytes, last.totalBytes, 'the final line has every byte done');
  for (let i = 1; i < lines.length; i++) assert.ok(lines[i]!.doneBytes >= lines[i - 1]!.doneBytes, 'doneBytes never goes back');

  const r2 = await runCli(['send', ...incremental(), ...viaArgs('replica.img'), '--json']);
  assert.equal(r2.code, 0, r2.stderr);
  const s = JSON.parse(r2.stdout) as Record<string, unknown>;
  assert.equal(s.mode, 'incremental');
  assert.equal(s.source, String(fx.pool.snapDevId));
  assert.equal(s.base, String(fx.pool.baseDevId));
  assert.equal(s.via, via());
  assert.match(String(s.digest), /^[0-9a-f]{64}$/);
  assert.ok(
    typeof s.dataBytes === 'number' && s.dataBytes > 0 && s.dataBytes < fx.pool.volumeSizeBytes,
    `an incremental sends part of the volume: ${String(s.dataBytes)}`,
  );
  assert.equal(progressLines(r2.stderr).length, 0, '--json without --progress json draws no progress');
  assertSameImage(readImage(join(targets(), 'replica.img'), fx.pool.volumeSizeBytes), fx.img2, 'incremental via the daemon');
  assert.deepEqual(stagedBeside('replica.img'), [], 'nothing staged after the sends');
});

test("a refused transfer exits with the code of the same send made directly: the wrong base (14), no target for an incremental (3), a target outside the caller's rules (13)", async () => {
  // Both targets hold the newer snapshot; an incremental from the base onto them is refused.
  for (const name of ['wrong-base-direct.img', 'wrong-base-via.img']) {
    const r = await runCli(['send', ...offline(), String(fx.pool.snapDevId), '--to', rxAddress(), '--target', join(targets(), name), ...tlsA(), '-q']);
    assert.equal(r.code, 0, r.stderr);
  }
  const direct = await runCli(['send', ...incremental(), '--to', rxAddress(), '--target', join(targets(), 'wrong-base-direct.img'), ...tlsA()]);
  const viaRun = await runCli(['send', ...incremental(), ...viaArgs('wrong-base-via.img')]);
  assert.equal(direct.code, 14, direct.stderr);
  assert.equal(viaRun.code, direct.code, `same exit code as the direct send:\n${viaRun.stderr}`);
  assert.match(viaRun.stderr, /^thinship: .*\[transfer tsd-[0-9a-f]{32} on the sender daemon at /m);
  assert.equal(viaRun.stdout, '');
  assertSameImage(readImage(join(targets(), 'wrong-base-via.img'), fx.pool.volumeSizeBytes), fx.img2, 'the refused target is unchanged');

  const noTargetDirect = await runCli(['send', ...incremental(), '--to', rxAddress(), '--target', join(targets(), 'missing-direct.img'), ...tlsA()]);
  const noTargetVia = await runCli(['send', ...incremental(), ...viaArgs('missing-via.img')]);
  assert.equal(noTargetDirect.code, 3, noTargetDirect.stderr);
  assert.equal(noTargetVia.code, noTargetDirect.code, noTargetVia.stderr);
  assert.match(noTargetVia.stderr, /an incremental stream applies only to a target holding its base/);

  // The daemon's ACL refuses StartTransfer itself: PERMISSION_DENIED, exit 13 as a receiver's refusal.
  const outside = await runCli(['send', ...full(), '--via', via(), '--to', rxAddress(), '--target', join(fx.dir, 'elsewhere.img'), ...tlsA()]);
  assert.equal(outside.code, 13, outside.stderr);
  assert.match(outside.stderr, /may not send to/);
  // sender-b may only watch.
  const watcher = await runCli(['send', ...full(), '--via', via(), '--to', rxAddress(), '--target', join(targets(), 'b.img'), ...tlsB()]);
  assert.equal(watcher.code, 13, watcher.stderr);
  assert.match(watcher.stderr, /identity sender-b may not start/);
});

test('send --via --force reaches the receiver (TransferOptions.force): a target written since its last snapshot is refused (14), then applied over with --force, byte-exact', async () => {
  const name = 'diverged-via.img';
  const target = join(targets(), name);
  const r1 = await runCli(['send', ...full(), ...viaArgs(name), '-q']);
  assert.equal(r1.code, 0, r1.stderr);
  // someone writes to the replica: one byte inside a block the incremental rewrites (the demo pool's
  // snapshot 2 rewrites blocks 10-19 of 64 KiB), and a later mtime than its commit
  const fd = openSync(target, 'r+');
  writeSync(fd, Buffer.from([0x5a]), 0, 1, 10 * 64 * 1024 + 4096);
  closeSync(fd);
  const later = new Date(Date.now() + 60_000);
  utimesSync(target, later, later);
  const refused = await runCli(['send', ...incremental(), ...viaArgs(name)]);
  assert.equal(refused.code, 14, refused.stderr);
  assert.match(refused.stderr, /was written since it received/);
  const forced = await runCli(['send', ...incremental(), ...viaArgs(name), '--force', '-q']);
  assert.equal(forced.code, 0, forced.stderr);
  assertSameImage(readImage(target, fx.pool.volumeSizeBytes), fx.img2, 'the incremental applied over the divergence');
});

test('send --via: options the service does not take, and --via without --to, are usage errors (exit 2)', async () => {
  for (const extra of [
    ['--max-op-bytes', '64K'],
    ['--transfer-id', 'x'],
  ]) {
    const r = await runCli(['send', ...full(), ...viaArgs('usage.img'), ...extra]);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /is not an option of the sender service/);
  }
  const noTo = await runCli(['send', ...full(), '--via', via(), ...tlsA()]);
  assert.equal(noTo.code, 2, noTo.stderr);
  assert.match(noTo.stderr, /--via needs --to RECEIVER:PORT and --target NAME/);
  const both = await runCli(['transfer', 'list', '--via', via(), '--to', rxAddress(), ...tlsA()]);
  assert.equal(both.code, 2, both.stderr);
});

test('SIGINT on send --via cancels the transfer: exit 130, the daemon reports it cancelled, the receiver holds nothing, nothing is staged', async () => {
  const target = join(targets(), 'interrupted.img');
  // 64 KiB/s: the send runs for minutes unless cancelled.
  const run = startCli(['send', ...full(), ...viaArgs('interrupted.img'), '--bwlimit', '64K', '--request-id', 'sigint-1', '--progress', 'json']);
  let transferId = '';
  await waitFor(
    async () => {
      const mine = (await rxClient.listTransfers()).find((t) => t.target === target && t.active);
      transferId = mine ? mine.transferId : '';
      return mine !== undefined;
    },
    'the receiver to hold the running transfer',
    120_000,
  );
  run.child.kill('SIGINT');
  const r = await run.result;
  assert.equal(r.code, 130, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(
      `interrupted by SIGINT: the sender daemon at ${via()} cancelled it \\(nothing stays reserved; the receiver-side transfer was aborted\\); transfer ${transferId}`,
    ),
  );
  assert.equal(await rxClient.getTransferState(transferId), undefined, 'the receiver-side transfer is gone');
  assert.deepEqual(stagedBeside('interrupted.img'), [], 'no staging file or undo journal left beside the target');
  const st = await runCli(['transfer', 'status', transferId, '--via', via(), '--json', ...tlsA()]);
  assert.equal(st.code, 0, st.stderr);
  const info = JSON.parse(st.stdout) as Record<string, unknown>;
  assert.equal(info.state, 'cancelled');
  assert.match(String(info.errorMessage), /thinship send interrupted by SIGINT/);
  // The pool's turn was released: the same request id now gives the same (cancelled) transfer, and a new
  // send from the same pool runs to the end.
  const again = await runCli(['send', ...full(), ...viaArgs('after-cancel.img')]);
  assert.equal(again.code, 0, again.stderr);
  assertSameImage(readImage(join(targets(), 'after-cancel.img'), fx.pool.volumeSizeBytes), fx.img1, 'a send after the cancel');
});

test("transfer list|status|cancel --via: the caller's transfers on the daemon; a cancel ends the watching send with exit 16", async () => {
  const target = join(targets(), 'listed.img');
  const run = startCli(['send', ...full(), ...viaArgs('listed.img'), '--bwlimit', '64K', '--request-id', 'listed-1']);
  let transferId = '';
  await waitFor(
    async () => {
      const l = await runCli(['transfer', 'list', '--via', via(), '--json', ...tlsA()]);
      const mine = (JSON.parse(l.stdout) as Array<Record<string, unknown>>).find((t) => t.requestId === 'listed-1' && t.state === 'sending');
      transferId = typeof mine?.transferId === 'string' ? mine.transferId : '';
      return mine !== undefined;
    },
    'the transfer to be listed as sending',
    120_000,
  );
  const table = await runCli(['transfer', 'list', '--via', via(), ...tlsA()]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^TRANSFER +STATE +DONE +TOTAL +RATE +RETRIES +SOURCE +DESTINATION +CREATED\n/);
  assert.match(table.stdout, new RegExp(`^${transferId} +sending +.*${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
  const st = await runCli(['transfer', 'status', transferId, '--via', via(), ...tlsB()]);
  assert.equal(st.code, 3, `another identity's transfer is not found: ${st.stderr}`);
  const c = await runCli(['transfer', 'cancel', transferId, '--via', via(), '--reason', 'test cancel', ...tlsA()]);
  assert.equal(c.code, 0, c.stderr);
  assert.equal(c.stdout, `cancelled transfer ${transferId} (the sender daemon released it and aborted it on the receiver)\n`);
  const r = await run.result;
  assert.equal(r.code, 16, `the send whose transfer was cancelled elsewhere exits 16:\n${r.stderr}`);
  assert.match(r.stderr, /was cancelled on the sender daemon at .*: cancelled by sender-a: test cancel/);
  assert.equal(await rxClient.getTransferState(transferId), undefined, 'the receiver-side transfer is gone');
  const gone = await runCli(['transfer', 'status', 'tsd-nosuchtransfer', '--via', via(), ...tlsA()]);
  assert.equal(gone.code, 3, gone.stderr);
  assert.match(gone.stderr, /no transfer tsd-nosuchtransfer/);
});
