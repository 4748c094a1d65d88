/**
 * The documented exit statuses (src/cli/exit-codes.ts, README), from real
 * `thinship` processes in real failure situations: a target device too
 * small (11), a target on a full file system (12), a client identity the
 * receiver does not allow and a client certificate from another CA (13), an
 * incremental onto a target holding another snapshot (14), and a receiver
 * that is not there (15). Scripts rely on these numbers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { cliPath, runCli, type CliResult } from '../helpers/cli.js';
import { makeTestCerts, writeConfig, startServe, stopServe, type TestCerts, type ServeProcess } from '../service/helpers.js';

let dir: string;
let pool: DemoPool;
let certs: TestCerts;
let serve: ServeProcess;
const CLI_TIMEOUT_MS = 60_000;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-exit-'));
  mkdirSync(join(dir, 'targets'));
  pool = await createDemoPool(join(dir, 'pool'));
  certs = await makeTestCerts(join(dir, 'certs'));
  const config = writeConfig(join(dir, 'rx.json'), {
    tls: certs.server,
    stateDir: join(dir, 'state'),
    identities: { 'sender-a': { directories: [join(dir, 'targets')] } },
  });
  serve = await startServe(['--listen', '127.0.0.1:0', '--config', config]);
});

after(async () => {
  if (serve) await stopServe(serve);
  rmSync(dir, { recursive: true, force: true });
});

const offline = () => ['--pool-metadata', pool.metadataPath, '--pool-data', pool.dataPath];

/** `thinship send (pipe mode) | thinship recv TARGET`; resolves with recv's result (bounded). */
function pipeToRecv(devIds: string[], target: string): Promise<CliResult> {
  const send = spawn(process.execPath, [cliPath, 'send', '-q', ...offline(), ...devIds], { stdio: ['ignore', 'pipe', 'pipe'] });
  // --state-dir: a block-device target's record and journal stay in the test's directory.
  const recv = spawn(process.execPath, [cliPath, 'recv', '--state-dir', join(dir, 'state'), target], { stdio: ['pipe', 'pipe', 'pipe'] });
  send.stdout.pipe(recv.stdin);
  recv.stdin.on('error', () => undefined); // recv may stop reading first
  send.stdout.on('error', () => undefined);
  let stderr = '';
  recv.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  send.stderr.resume();
  return new Promise<CliResult>((resolve, reject) => {
    const t = setTimeout(() => {
      send.kill('SIGKILL');
      recv.kill('SIGKILL');
      reject(new Error(`send | recv ${target} did not finish in ${CLI_TIMEOUT_MS} ms; recv stderr: ${stderr}`));
    }, CLI_TIMEOUT_MS);
    recv.on('close', (code, signal) => {
      clearTimeout(t);
      // recv is done: a sender still writing gets EPIPE; do not leave it behind
      if (send.exitCode === null && send.signalCode === null) send.kill('SIGTERM');
      resolve({ code, signal, stdout: '', stderr });
    });
  });
}

function sendTo(
  address: string,
  target: string,
  devIds: string[],
  tls: { ca: string; cert: string; key: string } = certs.clientA,
  extra: string[] = [],
): Promise<CliResult> {
  return runCli([
    'send',
    ...offline(),
    '--to',
    address,
    '--target',
    target,
    '--ca',
    tls.ca,
    '--cert',
    tls.cert,
    '--key',
    tls.key,
    '--server-name',
    'localhost',
    '--retries',
    '0',
    ...extra,
    ...devIds,
  ]);
}

test('11: a target device smaller than the volume (nothing written)', async (t) => {
  const backing = join(dir, 'small.img');
  writeFileSync(backing, Buffer.alloc(pool.volumeSizeBytes / 2, 0xee));
  const dev = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
  t.after(() => execFileSync('losetup', ['-d', dev]));
  const r = await pipeToRecv([String(pool.baseDevId)], dev);
  assert.equal(r.code, 11, r.stderr);
  assert.match(r.stderr, /TARGET_TOO_SMALL|has only/);
});

test('12: the target file system is full (I/O error, named)', async (t) => {
  const mnt = join(dir, 'tiny');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  t.after(() => execFileSync('umount', [mnt]));
  const r = await pipeToRecv([String(pool.baseDevId)], join(mnt, 'target.img'));
  assert.equal(r.code, 12, r.stderr);
  assert.match(r.stderr, /ENOSPC|No space/);
});

test('13: an identity the receiver does not allow (nothing created)', async () => {
  const target = join(dir, 'targets', 'never.img');
  const denied = await sendTo(`127.0.0.1:${serve.port}`, target, [String(pool.baseDevId)], certs.clientB);
  assert.equal(denied.code, 13, denied.stderr);
  assert.match(denied.stderr, /sender-b/);
  assert.equal(existsSync(target), false);
});

test('13: a client certificate from another CA is refused (TLS)', async () => {
  const target = join(dir, 'targets', 'never-tls.img');
  const foreign = await sendTo(`127.0.0.1:${serve.port}`, target, [String(pool.baseDevId)], certs.foreign);
  assert.equal(foreign.code, 13, foreign.stderr);
  assert.equal(existsSync(target), false);
});

test('14: an incremental onto a target that holds another snapshot (base mismatch), untouched', async () => {
  const address = `127.0.0.1:${serve.port}`;
  const target = join(dir, 'targets', 'base.img');
  const full = await sendTo(address, target, [String(pool.snapDevId)]);
  assert.equal(full.code, 0, full.stderr);
  const mtime = statSync(target).mtimeMs;
  const inc = await sendTo(address, target, [String(pool.baseDevId), String(pool.snapDevId)]);
  assert.equal(inc.code, 14, inc.stderr);
  assert.match(inc.stderr, /BASE_MISMATCH|applies to base/);
  assert.equal(statSync(target).mtimeMs, mtime, 'target not written');
});

test('15: no receiver listening at the address', async () => {
  // a port that was just free: listen on port 0, note it, close it
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  const r = await sendTo(`127.0.0.1:${port}`, join(dir, 'targets', 'nobody.img'), [String(pool.baseDevId)]);
  assert.equal(r.code, 15, r.stderr);
});
