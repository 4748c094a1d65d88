/**
 * A host where the BLAKE3 package's native binary does not load (another libc, a
 * missing shared library: the VM guest once lacked librt) still sends and receives
 * sha256 streams, and a BLAKE3 send says what is missing and what to do
 * (src/stream/digest.ts loads the package on first use). The binary's failure is
 * made real by pointing napi-rs's loader at a file that does not exist.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath, q, sh } from '../helpers/cli.js';
import { createFlatPool, type FlatPool } from '../helpers/flat-pool.js';

const MiB = 1024 * 1024;
let dir: string;
let pool: FlatPool;
const env = { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: '/nonexistent/blake.node' };

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-noblake-'));
  pool = createFlatPool(dir, 8 * MiB);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const send = (extra: string) =>
  `${q(process.execPath)} ${q(cliPath)} send -q --pool-metadata ${q(pool.metadataPath)} --pool-data ${q(pool.dataPath)} ${extra} 1`;
const recv = (target: string) => `${q(process.execPath)} ${q(cliPath)} recv -q --state-dir ${q(join(dir, 'state'))} ${q(target)}`;

test('without a loadable BLAKE3 binary, a sha256 send | recv still works byte for byte', async () => {
  const target = join(dir, 'sha256.img');
  const r = await sh(`${send('--checksum sha256')} | ${recv(target)}`, env);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(readFileSync(target).equals(readFileSync(pool.dataPath).subarray(0, 8 * MiB)), 'the target equals the volume');
});

test('without a loadable BLAKE3 binary, a BLAKE3 send fails with TOOL_MISSING (exit 5) naming the package and the way out', async () => {
  const r = await sh(`${send('--checksum blake3')} > /dev/null`, env);
  assert.equal(r.code, 5, r.stderr);
  assert.match(
    r.stderr,
    /BLAKE3 checksums need the native package @napi-rs\/blake-hash, which does not load on this host \(.+\): reinstall it \(npm ci\), or send with --checksum sha256/,
  );
});
