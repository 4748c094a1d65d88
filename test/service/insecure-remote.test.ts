/**
 * --insecure (plaintext, no authentication) is for one machine: `serve` and
 * the clients (`send --to`, `transfer`) refuse it off loopback with a usage
 * error (exit 2) naming the address and the flag that forces it, before any
 * socket is opened; on loopback it works. Real processes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { runCli, startCli, type CliResult } from '../helpers/cli.js';
import { writeConfig, startServe, stopServe } from './helpers.js';

let dir: string;
let pool: DemoPool;
let config: string;
/** TEST-NET-1 (RFC 5737): never a loopback address, and nothing answers there. */
const REMOTE = '192.0.2.1';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-insecure-'));
  mkdirSync(join(dir, 'targets'));
  pool = await createDemoPool(join(dir, 'pool'));
  config = writeConfig(join(dir, 'rx.json'), { stateDir: join(dir, 'state'), identities: { anonymous: { directories: [join(dir, 'targets')] } } });
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the CLI, killing it after `ms`: a command that tries to connect to TEST-NET would hang, and must fail instead. */
async function runBounded(args: string[], ms = 15_000): Promise<CliResult> {
  const { child, result } = startCli(args);
  const t = setTimeout(() => child.kill('SIGKILL'), ms);
  try {
    return await result;
  } finally {
    clearTimeout(t);
  }
}

const offline = () => ['--pool-metadata', pool.metadataPath, '--pool-data', pool.dataPath];

test('serve --insecure off loopback is refused (exit 2) unless --allow-insecure-remote', async () => {
  for (const listen of [`0.0.0.0:0`, `${REMOTE}:0`, '[::]:0']) {
    const r = await runBounded(['serve', '--insecure', '--listen', listen, '--config', config]);
    assert.equal(r.code, 2, `${listen}: ${r.stderr}`);
    assert.match(r.stderr, /--insecure .* allowed only on loopback .*--allow-insecure-remote/, listen);
  }
  // forced: it listens (on every address, plaintext)
  const s = await startServe(['--insecure', '--allow-insecure-remote', '--listen', '0.0.0.0:0', '--config', config]);
  try {
    assert.ok(s.port > 0);
  } finally {
    await stopServe(s);
  }
});

test('send --to and transfer with --insecure to a remote address are refused (exit 2) before connecting', async () => {
  const t0 = Date.now();
  const target = join(dir, 'targets', 'never.img');
  const send = await runBounded(['send', ...offline(), '--insecure', '--to', `${REMOTE}:50051`, '--target', target, '--retries', '0', String(pool.baseDevId)]);
  assert.equal(send.code, 2, send.stderr);
  assert.match(send.stderr, new RegExp(`allowed only on loopback .*not ${REMOTE.replace(/\./g, '\\.')}.*--allow-insecure-remote`));
  for (const action of ['status', 'abort']) {
    const r = await runBounded(['transfer', action, 'some-id', '--insecure', '--to', `${REMOTE}:50051`]);
    assert.equal(r.code, 2, `${action}: ${r.stderr}`);
    assert.match(r.stderr, /allowed only on loopback/);
  }
  // a connection attempt to TEST-NET would hang until a timeout: these were refused up front
  assert.ok(Date.now() - t0 < 20_000, `refused without connecting (${Date.now() - t0} ms for three commands)`);
});

test('--insecure on loopback works end to end (serve and send)', async () => {
  const s = await startServe(['--insecure', '--listen', '127.0.0.1:0', '--config', config]);
  try {
    const target = join(dir, 'targets', 'loopback.img');
    const r = await runCli(['send', ...offline(), '-q', '--insecure', '--to', `127.0.0.1:${s.port}`, '--target', target, String(pool.baseDevId)]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(target));
  } finally {
    await stopServe(s);
  }
});
