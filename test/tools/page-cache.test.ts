/**
 * The README's promise: a send reads the source once and leaves ~0 % of it in
 * the page cache (posix_fadvise DONTNEED behind the reader), so a send does
 * not evict everything else on the host. Measured with util-linux `fincore`
 * on the data file of an offline pool: the file is read first so that it is
 * cached (dropping caches system-wide is not assumed to be allowed), then a
 * pipe-mode `thinship send`, and a gRPC `send --to` to a real `serve` over
 * mTLS, must leave almost none of it resident (both read with O_DIRECT where
 * the file system allows it, and drop the whole file from the cache at the end).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, openSync, readSync, closeSync, statSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, runCli } from '../helpers/cli.js';
import { makeTestCerts, writeConfig, startServe, stopServe } from '../service/helpers.js';
import { createFlatPool } from '../helpers/flat-pool.js';

const MiB = 1024 * 1024;
const VOLUME_BYTES = 256 * MiB;
/**
 * The bound. Measured here: 0 or 8 MiB left (the sender's last DROP_LAG_BYTES
 * window: pages just read by the I/O threads can sit in other CPUs' LRU
 * batches, which the final DONTNEED skips); without DONTNEED: 100 %.
 */
const MAX_RESIDENT_FRACTION = 0.05;

let dir: string;
let metadataPath: string;
let dataPath: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-pcache-'));
  ({ metadataPath, dataPath } = createFlatPool(dir, VOLUME_BYTES));
});

after(() => rmSync(dir, { recursive: true, force: true }));

function residentBytes(path: string): number {
  const out = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' }).trim();
  const n = Number(out);
  assert.ok(Number.isSafeInteger(n), `fincore printed ${JSON.stringify(out)}`);
  return n;
}

function readWhole(path: string): void {
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(4 * MiB);
  try {
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

test('a pipe-mode send of a cached 256 MiB source leaves at most 5 % of it in the page cache', async (t) => {
  readWhole(dataPath);
  const cached = residentBytes(dataPath);
  // the premise: the file is cached before the send (else the test proves nothing)
  assert.ok(cached >= VOLUME_BYTES * 0.5, `the data file is cached before the send: ${cached} of ${VOLUME_BYTES} bytes`);
  const devNull = openSync('/dev/null', 'w');
  let stderr = '';
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, 'send', '-q', '--pool-metadata', metadataPath, '--pool-data', dataPath, '1'], {
      stdio: ['ignore', devNull, 'pipe'],
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`send did not finish in 120 s: ${stderr}`));
    }, 120_000);
    child.on('close', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  closeSync(devNull);
  assert.equal(code, 0, stderr);
  const left = residentBytes(dataPath);
  t.diagnostic(`resident before the send ${cached} bytes, after ${left} bytes`);
  assert.ok(
    left <= VOLUME_BYTES * MAX_RESIDENT_FRACTION,
    `after the send ${left} bytes (${((100 * left) / VOLUME_BYTES).toFixed(1)} %) of the source are still in the page cache (before: ${cached})`,
  );
});

test('a gRPC send (send --to, mTLS) of a cached 256 MiB source leaves at most 5 % of it in the page cache', async (t) => {
  const certs = await makeTestCerts(join(dir, 'certs'));
  mkdirSync(join(dir, 'targets'));
  const config = writeConfig(join(dir, 'rx.json'), {
    tls: certs.server,
    stateDir: join(dir, 'state'),
    identities: { 'sender-a': { directories: [join(dir, 'targets')] } },
  });
  const serve = await startServe(['--listen', '127.0.0.1:0', '--config', config]);
  try {
    readWhole(dataPath);
    const cached = residentBytes(dataPath);
    assert.ok(cached >= VOLUME_BYTES * 0.5, `the data file is cached before the send: ${cached} of ${VOLUME_BYTES} bytes`);
    const target = join(dir, 'targets', 'replica.img');
    const r = await runCli([
      'send',
      '-q',
      '--pool-metadata',
      metadataPath,
      '--pool-data',
      dataPath,
      '--to',
      `127.0.0.1:${serve.port}`,
      '--target',
      target,
      '--ca',
      certs.clientA.ca,
      '--cert',
      certs.clientA.cert,
      '--key',
      certs.clientA.key,
      '--server-name',
      'localhost',
      '1',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(statSync(target).size, VOLUME_BYTES, 'the target was written');
    const left = residentBytes(dataPath);
    t.diagnostic(`resident before the send ${cached} bytes, after ${left} bytes`);
    assert.ok(
      left <= VOLUME_BYTES * MAX_RESIDENT_FRACTION,
      `after the gRPC send ${left} bytes (${((100 * left) / VOLUME_BYTES).toFixed(1)} %) of the source are still in the page cache (before: ${cached})`,
    );
  } finally {
    await stopServe(serve);
  }
});
