/**
 * `thinship serve` as separate processes (the bundled CLI): one receiver per
 * state directory (a second refuses to start, naming the first's pid), and
 * refused TLS handshakes logged at warn with the peer address and reason,
 * SIGHUP reloads instead of ending it (test/service/config-reload.test.ts has the rest).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { ReceiverClient } from '../../src/rpc/client.js';
import { makeTestCerts, writeConfig, startServe, stopServe, type TestCerts, type ServeProcess } from './helpers.js';

let dir: string;
let certs: TestCerts;
const running: ServeProcess[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-rproc-'));
  mkdirSync(join(dir, 'targets'));
  certs = await makeTestCerts(join(dir, 'certs'));
});

after(() => {
  for (const s of running) s.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string): string {
  return writeConfig(join(dir, `${name}.json`), {
    tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
    stateDir: join(dir, 'state-shared'),
    identities: { 'sender-a': { directories: [join(dir, 'targets')] } },
  });
}

async function serve(cfg: string): Promise<ServeProcess> {
  const s = await startServe(['--listen', '127.0.0.1:0', '--config', cfg]);
  running.push(s);
  return s;
}

test("a second serve on the same state directory refuses to start (TARGET_BUSY exit 11, naming the holder's pid); it starts once the first stops", async () => {
  const first = await serve(config('one'));
  try {
    assert.equal(readFileSync(join(dir, 'state-shared', 'serve.lock'), 'utf8').trim(), String(first.child.pid));
    // another config file, same state directory
    const second = await runCli(['serve', '--listen', '127.0.0.1:0', '--config', config('two')], { env: { ...process.env, THINSHIP_LOG: 'info' } });
    assert.equal(second.code, 11, second.stderr);
    assert.match(second.stderr, new RegExp(`state directory .*state-shared is in use by another thinship serve \\(pid ${first.child.pid}`));
    assert.doesNotMatch(second.stderr, /receiver listening/);
    assert.equal(first.child.exitCode, null, 'the first keeps running');
  } finally {
    await stopServe(first);
  }
  const third = await serve(config('three'));
  await stopServe(third);
});

test('a refused TLS handshake (client certificate from another CA) is logged at warn with the peer address and the reason', async () => {
  const s = await serve(config('tls'));
  try {
    const c = await ReceiverClient.connect({ address: `127.0.0.1:${s.port}`, tls: certs.foreign, serverName: 'localhost' });
    try {
      await assert.rejects(c.getTransferState('x'));
    } finally {
      c.close();
    }
    const w = await s.waitFor((l) => l.msg === 'TLS handshake refused', 10_000);
    assert.equal(w.level, 'warn');
    assert.match(String(w.peer), /^127\.0\.0\.1:\d+$/);
    assert.match(String(w.reason), /client certificate refused: UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
  } finally {
    await stopServe(s);
  }
});

test('SIGHUP does not end serve: it reloads the config (logged at info) and keeps answering', async () => {
  const s = await serve(config('hup'));
  try {
    s.child.kill('SIGHUP');
    const w = await s.waitFor((l) => l.signal === 'SIGHUP', 10_000);
    assert.equal(w.level, 'info');
    assert.match(String(w.msg), /reloading the config/);
    await s.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('config reloaded'), 10_000);
    const c = await ReceiverClient.connect({ address: `127.0.0.1:${s.port}`, tls: certs.clientA, serverName: 'localhost' });
    try {
      assert.equal(await c.getTransferState('never-begun'), undefined, 'still serving after SIGHUP');
    } finally {
      c.close();
    }
    assert.equal(s.child.exitCode, null);
  } finally {
    await stopServe(s);
  }
  assert.deepEqual(await s.exited, { code: 0, signal: null }, 'SIGTERM after SIGHUP still stops cleanly');
});
