/**
 * The example clients in other languages (clients/python, clients/go) against
 * a real `thinship serve` and a real `thinship sender-serve` (child processes,
 * mTLS with certificates from makeTestCerts): each client sends the demo
 * pool's snapshots, as image files, as a full, an incremental onto the full's
 * target, and a full whose first call breaks after a durable checkpoint and is
 * resumed with the digest continued from GetTransferState; reads a refusal's
 * stable code from google.rpc.ErrorInfo; asks GetTarget what a target holds
 * after real `thinship send --to` runs (compared field for field with
 * `thinship target show --to --json` and with what the sends reported); and
 * starts and watches a transfer through the sender daemon. Every target is compared byte for byte with the
 * snapshot (expectedImage, from thin_dump), and every digest the client
 * computed must equal the receiver's.
 * The Go client is built once for this file (clients/go/build.sh; Go's build
 * cache makes later runs fast). A client whose toolchain is missing is
 * skipped with the reason (scripts/setup --test installs both).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { DemoPool } from '../../src/thin/demo-pool.js';
import { repoRoot } from '../helpers/paths.js';
import { runCli, startCli, type CliResult } from '../helpers/cli.js';
import {
  demoFixture,
  grpcSendArgs,
  writeConfig,
  startServe,
  startSenderServe,
  stopServe,
  assertSameImage,
  readImage,
  waitFor,
  type ServeProcess,
  type TestCerts,
} from './helpers.js';
import type { TlsFiles } from '../../src/rpc/tls.js';

const PYTHON = '/usr/bin/python3';
const pyProbe = spawnSync(PYTHON, ['-c', 'import grpc, grpc_tools.protoc'], { encoding: 'utf8' });
const skipPython = pyProbe.status !== 0 ? `${PYTHON} cannot import grpc and grpc_tools (install python3-grpcio python3-grpc-tools)` : false;
const goTools = ['go', 'protoc', 'protoc-gen-go', 'protoc-gen-go-grpc'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const skipGo =
  goTools.length > 0 || !existsSync('/usr/share/gocode/src/google.golang.org/grpc')
    ? `missing ${[...goTools, ...(existsSync('/usr/share/gocode/src/google.golang.org/grpc') ? [] : ['/usr/share/gocode/src/google.golang.org/grpc'])].join(', ')} (install golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev)`
    : false;

let dir: string;
let certs: TestCerts;
let pool: DemoPool;
let img1: Buffer;
let img2: Buffer;
let serve: ServeProcess;
let sender: ServeProcess;
let goBinary: string;
const targets = () => join(dir, 'targets');
const image1 = () => join(dir, 'img1.img');
const image2 = () => join(dir, 'img2.img');

before(async () => {
  if (skipPython && skipGo) return;
  ({ dir, pool, img1, img2, certs } = await demoFixture('thinship-clients-'));
  writeFileSync(image1(), img1);
  writeFileSync(image2(), img2);
  // A checkpoint every MiB, so that a call broken mid-volume leaves a durable offset above 0.
  const rxConfig = writeConfig(join(dir, 'rx.json'), {
    tls: certs.server,
    stateDir: join(dir, 'rx-state'),
    checkpointIntervalBytes: 1024 * 1024,
    identities: { 'sender-a': { directories: [targets()] } },
  });
  serve = await startServe(['--listen', '127.0.0.1:0', '--config', rxConfig]);
  const senderConfig = writeConfig(join(dir, 'sender.json'), {
    tls: certs.server,
    stateDir: join(dir, 'sender-state'),
    receiverTls: certs.clientA,
    identities: {
      'sender-a': { sources: { offlineDirectories: [pool.dir] }, destinations: [{ receiver: `127.0.0.1:${serve.port}`, target: `${targets()}/*` }] },
    },
  });
  // The daemon's first spelling (`sender-serve`; send-via.test.ts runs `sender serve`).
  sender = await startSenderServe(['--listen', '127.0.0.1:0', '--config', senderConfig], ['sender-serve']);
  if (!skipGo) {
    goBinary = join(dir, 'go', 'thinship-example-go');
    const b = spawnSync(join(repoRoot, 'clients/go/build.sh'), [join(dir, 'go')], {
      encoding: 'utf8',
      env: { ...process.env, GOCACHE: process.env.GOCACHE ?? join(homedir(), '.cache', 'go-build') },
    });
    assert.equal(b.status, 0, `clients/go/build.sh failed:\n${b.stdout}\n${b.stderr}`);
  }
});

after(async () => {
  if (sender) await stopServe(sender);
  if (serve) await stopServe(serve);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Out = Record<string, unknown> & {
  error?: string;
  details?: string;
  error_info?: { reason: string; domain: string; metadata: Record<string, string>; status_code: number } | null;
};

interface Client {
  name: string;
  skip: string | false;
  run(command: string, tls: TlsFiles, address: string, flags: string[]): Promise<{ code: number | null; out: Out; stderr: string }>;
}

function runJson(cmd: string, args: string[]): Promise<{ code: number | null; out: Out; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    c.on('error', reject);
    c.on('close', (code) => {
      try {
        resolve({ code, out: JSON.parse(stdout) as Out, stderr });
      } catch {
        reject(new Error(`${cmd} exited ${code} without one JSON object:\n${stdout}\n${stderr}`));
      }
    });
  });
}

const connFlags = (tls: TlsFiles, address: string) => [
  '--address',
  address,
  '--server-name',
  'localhost',
  '--ca',
  tls.ca,
  '--cert',
  tls.cert,
  '--key',
  tls.key,
];

const clients: Client[] = [
  {
    name: 'Python',
    skip: skipPython,
    run: (command, tls, address, flags) =>
      runJson(PYTHON, [join(repoRoot, 'clients/python/thinship_example.py'), ...connFlags(tls, address), command, ...flags]),
  },
  {
    // Go's flag package takes -flag and --flag alike.
    name: 'Go',
    skip: skipGo,
    run: (command, tls, address, flags) => runJson(goBinary, [command, ...connFlags(tls, address), ...flags]),
  },
];

const rxAddress = () => `127.0.0.1:${serve.port}`;

/** `thinship target show --to … --json` (the Node client of GetTarget) as identity `who`. */
function cliShow(target: string, tls: TlsFiles): Promise<CliResult> {
  return runCli(['target', 'show', target, '--to', rxAddress(), '--server-name', 'localhost', '--ca', tls.ca, '--cert', tls.cert, '--key', tls.key, '--json']);
}

/** What `target show --json` prints (src/cli/commands/target.ts, a TargetReport). */
interface CliTargetReport {
  target: string;
  kind: string;
  record: {
    record: { sourceId: string; baseId: string; snapshotName?: string; volumeSizeBytes: number; digest: string; transferId: string; receivedUnixMs: number };
    store: string;
  } | null;
  identity?: string;
  diverged: boolean;
  divergence: string[];
  divergenceUnchecked?: string;
  staged: { file: string; kind: string }[];
  lastSnapshot?: string;
  keptSnapshots?: string[];
}

/**
 * The CLI's report as the example clients print GetTargetResponse (every
 * field under its .proto name; receive_time as milliseconds to compare, since
 * the clients print RFC 3339).
 */
function asClientPrints(r: CliTargetReport): Record<string, unknown> {
  const rec = r.record?.record;
  return {
    target: r.target,
    kind: r.kind,
    record: rec
      ? {
          source_id: rec.sourceId,
          base_id: rec.baseId,
          snapshot_name: rec.snapshotName ?? '',
          volume_size_bytes: rec.volumeSizeBytes,
          digest: rec.digest,
          transfer_id: rec.transferId,
          receive_time_ms: rec.receivedUnixMs,
        }
      : null,
    record_store: r.record?.store ?? '',
    diverged: r.diverged,
    divergence: r.divergence,
    divergence_unchecked: r.divergenceUnchecked ?? '',
    staged: r.staged.map((x) => ({ kind: x.kind })),
    identity: r.identity ?? '',
    last_snapshot: r.lastSnapshot ?? '',
    kept_snapshots: r.keptSnapshots ?? [],
  };
}

/** A client's `target` output with receive_time (RFC 3339, proto3's JSON mapping: 0, 3, 6 or 9 fractional digits) as milliseconds. */
function clientPrinted(out: Out): Record<string, unknown> {
  const rec = out.record as Record<string, unknown> | null;
  if (!rec) return out;
  const { receive_time: time, ...rest } = rec;
  assert.match(String(time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$/, `receive_time ${String(time)}`);
  return { ...out, record: { ...rest, receive_time_ms: Date.parse(String(time)) } };
}

/** `thinship send --to` of the demo pool's devices `ids` to `target` as sender-a: exit 0, its JSON summary. */
async function send(target: string, ids: number[]): Promise<{ transferId: string; digest: string }> {
  const r = await runCli(grpcSendArgs(pool, { port: serve.port, target, ids, certsDir: certs.dir, opBytes: 256 * 1024 }));
  assert.equal(r.code, 0, `send ${ids.join(' ')} to ${target}: ${r.stderr}`);
  return JSON.parse(r.stdout) as { transferId: string; digest: string };
}

for (const client of clients) {
  const { name, skip } = client;
  const lc = name.toLowerCase();
  const ok = (r: { code: number | null; out: Out; stderr: string }) => assert.equal(r.code, 0, `${name}: ${JSON.stringify(r.out)}\n${r.stderr}`);

  test(`${name} client: a full, then an incremental onto it, byte-exact with the snapshots and the client's own digest`, { skip }, async () => {
    const target = join(targets(), `${lc}-inc.img`);
    const full = await client.run('full', certs.clientA, rxAddress(), [
      '--image',
      image1(),
      '--target',
      target,
      '--transfer-id',
      `${lc}-full-1`,
      '--source-id',
      'demo-snap-1',
    ]);
    ok(full);
    assert.equal(full.out.status, 'TRANSFER_STATUS_COMPLETE');
    assert.equal(full.out.digest, full.out.expected_digest, 'the receiver verified the digest the client computed');
    assert.equal(full.out.durable_offset_bytes, pool.volumeSizeBytes);
    assertSameImage(readImage(target, pool.volumeSizeBytes), img1, `${name} full`);

    const inc = await client.run('incremental', certs.clientA, rxAddress(), [
      '--base',
      image1(),
      '--base-id',
      'demo-snap-1',
      '--image',
      image2(),
      '--target',
      target,
      '--transfer-id',
      `${lc}-inc-2`,
      '--source-id',
      'demo-snap-2',
    ]);
    ok(inc);
    assert.equal(inc.out.status, 'TRANSFER_STATUS_COMPLETE');
    assert.equal(inc.out.digest, inc.out.expected_digest);
    // snap 2 differs from the base in 40 blocks (10 + 10 rewritten, 10 added, 10 discarded)
    assert.equal(Number(inc.out.data_records_applied), 40, JSON.stringify(inc.out));
    assertSameImage(readImage(target, pool.volumeSizeBytes), img2, `${name} incremental`);
  });

  test(`${name} client: a broken call resumed from GetTransferState's durable offset and digest state`, { skip }, async () => {
    const target = join(targets(), `${lc}-resume.img`);
    const r = await client.run('resume', certs.clientA, rxAddress(), [
      '--image',
      image2(),
      '--target',
      target,
      '--transfer-id',
      `${lc}-resume-1`,
      '--source-id',
      'demo-snap-2',
    ]);
    ok(r);
    assert.equal(r.out.resumed_status, 'TRANSFER_STATUS_IN_PROGRESS');
    const from = Number(r.out.resumed_from_offset_bytes);
    assert.ok(from > 0 && from <= pool.volumeSizeBytes / 2, `resumed from ${from}`);
    assert.notEqual(r.out.resumed_digest_state, '00'.repeat(32), 'the digest was continued from a non-initial state');
    assert.equal(r.out.status, 'TRANSFER_STATUS_COMPLETE');
    assert.equal(r.out.digest, r.out.expected_digest, "the digest chain continued from digest_state matches the receiver's");
    assertSameImage(readImage(target, pool.volumeSizeBytes), img2, `${name} resumed full`);
  });

  test(`${name} client: a refused call's stable code is read from google.rpc.ErrorInfo`, { skip }, async () => {
    const target = join(targets(), `${lc}-denied.img`);
    const r = await client.run('full', certs.clientB, rxAddress(), [
      '--image',
      image1(),
      '--target',
      target,
      '--transfer-id',
      `${lc}-denied-1`,
      '--source-id',
      'demo-snap-1',
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.out.error, 'PERMISSION_DENIED');
    assert.deepEqual(r.out.error_info, { reason: 'PERMISSION_DENIED', domain: 'thinship', metadata: { retryable: 'false' }, status_code: 7 });
    assert.match(String(r.out.details), /sender-b/);
    assert.equal(existsSync(target), false);

    // An incremental from a base the target does not hold: refused before anything is written
    const incTarget = join(targets(), `${lc}-inc.img`);
    const wrongBase = await client.run('incremental', certs.clientA, rxAddress(), [
      '--base',
      image1(),
      '--base-id',
      'not-what-the-target-holds',
      '--image',
      image2(),
      '--target',
      incTarget,
      '--transfer-id',
      `${lc}-wrong-base`,
      '--source-id',
      'demo-snap-3',
    ]);
    assert.equal(wrongBase.code, 1, `${JSON.stringify(wrongBase.out)}\n${wrongBase.stderr}`);
    assert.equal(wrongBase.out.error, 'FAILED_PRECONDITION');
    assert.equal(wrongBase.out.error_info?.domain, 'thinship');
    assert.equal(wrongBase.out.error_info?.reason, 'BASE_MISMATCH', JSON.stringify(wrongBase.out));
    assertSameImage(readImage(incTarget, pool.volumeSizeBytes), img2, `${name}: the refused incremental changed nothing`);
  });

  test(
    `${name} client: GetTarget after real sends equals \`thinship target show --to --json\` field for field, also staged and diverged; a missing target exits 3 (NOT_FOUND), a forbidden one 13 (PERMISSION_DENIED)`,
    { skip },
    async () => {
      const target = join(targets(), `${lc}-shown.img`);
      /** The client's and the CLI's answer for `target`: the same, field for field; the client's is returned. */
      const asked = async (what: string): Promise<Record<string, unknown>> => {
        const c = await client.run('target', certs.clientA, rxAddress(), ['--target', target]);
        ok(c);
        const cli = await cliShow(target, certs.clientA);
        assert.equal(cli.code, 0, cli.stderr);
        const printed = clientPrinted(c.out);
        assert.deepEqual(printed, asClientPrints(JSON.parse(cli.stdout) as CliTargetReport), `${name} ${what}: the client prints what target show does`);
        return printed;
      };

      const t0 = Date.now();
      const full = await send(target, [pool.baseDevId]);
      const afterFull = (await asked('after the full')) as { record: Record<string, unknown> };
      const snap1 = String(afterFull.record.source_id);
      assert.match(snap1, /./, 'the full recorded its source snapshot');
      assert.deepEqual(
        { ...afterFull.record, source_id: '', receive_time_ms: 0 },
        {
          source_id: '',
          base_id: '',
          snapshot_name: '', // ApplyStream's Begin has no snapshot name
          volume_size_bytes: pool.volumeSizeBytes,
          digest: full.digest,
          transfer_id: full.transferId,
          receive_time_ms: 0,
        },
      );

      const inc = await send(target, [pool.baseDevId, pool.snapDevId]);
      const t1 = Date.now();
      assertSameImage(readImage(target, pool.volumeSizeBytes), img2, `${name}: the target after the incremental`);
      const clean = (await asked('after the incremental')) as { record: Record<string, unknown> } & Record<string, unknown>;
      assert.equal(clean.target, target);
      assert.equal(clean.kind, 'file');
      assert.match(String(clean.record_store), /^(xattr|sidecar)$/);
      assert.equal(clean.record.base_id, snap1, 'the incremental applied onto the full');
      assert.notEqual(clean.record.source_id, snap1);
      assert.equal(clean.record.transfer_id, inc.transferId);
      assert.equal(clean.record.digest, inc.digest);
      const at = Number(clean.record.receive_time_ms);
      assert.ok(at >= t0 - 1000 && at <= t1 + 1000, `receive_time ${new Date(at).toISOString()} within the sends`);
      assert.equal(clean.diverged, false);
      assert.deepEqual(clean.divergence, []);
      assert.deepEqual(clean.staged, []);
      assert.equal(clean.identity, '');

      // A full of snapshot 1 that breaks: its staging file stays beside the target (resumable). Slow enough
      // (--bwlimit) to be killed, once the staging file exists, long before its End.
      const broken = startCli(
        grpcSendArgs(pool, {
          port: serve.port,
          target,
          ids: [pool.baseDevId],
          certsDir: certs.dir,
          opBytes: 64 * 1024,
          extra: ['--bwlimit', '128K', '--transfer-id', `${lc}-broken-full`],
        }),
      );
      const staging = `.${lc}-shown.img.thinship-staging-`;
      try {
        await waitFor(() => readdirSync(targets()).some((n) => n.startsWith(staging)), 'the broken full staged beside the target', 60_000);
      } finally {
        broken.child.kill('SIGKILL');
      }
      assert.equal((await broken.result).signal, 'SIGKILL', 'the send was killed before its End');
      // And a local write: the target diverged from its record.
      writeFileSync(target, Buffer.alloc(16, 0xa5), { flag: 'r+' });
      const dirty = await asked('staged and diverged');
      assert.deepEqual(dirty.staged, [{ kind: 'staging' }]);
      assert.equal(dirty.diverged, true);
      assert.ok((dirty.divergence as string[]).length > 0);
      assert.deepEqual(dirty.record, clean.record, "the record is still the incremental's");

      // NOT_FOUND: allowed, but nothing there.
      const missingTarget = join(targets(), `${lc}-never-sent.img`);
      const missing = await client.run('target', certs.clientA, rxAddress(), ['--target', missingTarget]);
      assert.equal(missing.code, 3, `${JSON.stringify(missing.out)}\n${missing.stderr}`);
      assert.equal(missing.out.error, 'NOT_FOUND');
      assert.deepEqual(missing.out.error_info, { reason: 'NOT_FOUND', domain: 'thinship', metadata: { retryable: 'false' }, status_code: 5 });
      assert.equal((await cliShow(missingTarget, certs.clientA)).code, 3, 'target show says the same');

      // PERMISSION_DENIED: another identity asking for this target, and a path outside the identity's directories.
      // Nothing of the record is told.
      for (const [who, tls, forbidden] of [
        ['sender-b', certs.clientB, target],
        ['sender-a', certs.clientA, pool.metadataPath],
      ] as const) {
        const denied = await client.run('target', tls, rxAddress(), ['--target', forbidden]);
        assert.equal(denied.code, 13, `${who} ${forbidden}: ${JSON.stringify(denied.out)}\n${denied.stderr}`);
        assert.equal(denied.out.error, 'PERMISSION_DENIED');
        assert.deepEqual(denied.out.error_info, { reason: 'PERMISSION_DENIED', domain: 'thinship', metadata: { retryable: 'false' }, status_code: 7 });
        assert.match(String(denied.out.details), new RegExp(who));
        assert.doesNotMatch(JSON.stringify(denied.out), new RegExp(String(clean.record.source_id)));
        assert.equal((await cliShow(forbidden, tls)).code, 13, 'target show says the same');
      }
    },
  );

  test(`${name} client: starts a send through the sender daemon and watches it to DONE`, { skip }, async () => {
    const target = join(targets(), `${lc}-via-sender.img`);
    const r = await client.run('sender-watch', certs.clientA, `127.0.0.1:${sender.port}`, [
      '--request-id',
      `${lc}-watch-1`,
      '--metadata',
      pool.metadataPath,
      '--data',
      pool.dataPath,
      '--volume-size-bytes',
      String(pool.volumeSizeBytes),
      '--snapshot',
      String(pool.snapDevId),
      '--receiver',
      rxAddress(),
      '--receiver-server-name',
      'localhost',
      '--target',
      target,
    ]);
    ok(r);
    const states = r.out.states as string[];
    assert.equal(r.out.state, 'STATE_DONE', JSON.stringify(r.out));
    assert.equal(states.at(-1), 'STATE_DONE');
    assert.equal(states.filter((s) => s === 'STATE_DONE').length, 1, `the stream closes after the final state: ${states.join(' ')}`);
    assert.equal(Number(r.out.done_bytes), Number(r.out.total_bytes));
    assert.match(String(r.out.digest), /^[0-9a-f]{64}$/);
    assertSameImage(readImage(target, pool.volumeSizeBytes), img2, `${name} via the sender daemon`);
  });
}
