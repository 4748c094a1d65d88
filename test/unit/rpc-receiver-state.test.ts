/**
 * Receiver state on disk and the access policy: atomic checkpoints, identity
 * names from certificates, and target authorisation with real directories,
 * symlinks and escape attempts. Also the compression pool on worker threads.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, symlinkSync, writeFileSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { CheckpointStore, checkTransferId, checkpointFileName, type TransferCheckpoint } from '../../src/receiver/checkpoint.js';
import { parseAccessRules, authorizeTarget, type AccessPolicy } from '../../src/receiver/access.js';
import { certificateNames, parseHostPort, isLoopbackHost } from '../../src/rpc/tls.js';
import { CompressPool } from '../../src/sender/compress-pool.js';
import { ChunkDecompressor } from '../../src/stream/zstd.js';
import { ThinshipError } from '../../src/errors.js';

let dir: string;
before(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'thinship-rs-')));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const cp = (id: string, over: Partial<TransferCheckpoint> = {}): TransferCheckpoint => ({
  format: 2,
  transferId: id,
  status: 'in_progress',
  identity: 'a',
  target: '/t',
  targetKey: '/t',
  mode: 'full',
  sourceId: 's',
  baseId: '',
  volumeSizeBytes: 100,
  blockSizeBytes: 10,
  checksum: 'sha256',
  durableOffsetBytes: 0,
  digestState: '0'.repeat(64),
  dataRecords: 0,
  unmapRecords: 0,
  dataBytes: 0,
  unmapBytes: 0,
  createdUnixMs: 1,
  updatedUnixMs: 2,
  ...over,
});

test('checkpoints are saved atomically, listed, validated (unusable files quarantined) and removed', async () => {
  const store = new CheckpointStore(join(dir, 'state'));
  await store.init();
  await store.save(cp('x-1'));
  await store.save(cp('x-1', { durableOffsetBytes: 50, dataBytes: 40 }));
  assert.equal((await store.load('a', 'x-1'))!.durableOffsetBytes, 50);
  assert.equal(await store.load('b', 'x-1'), undefined, 'ids are per identity');
  const name = checkpointFileName('a', 'x-1');
  // a crashed write leaves a temporary; listing cleans it up and ignores it
  writeFileSync(join(store.dir, '.x-2.tmp-1-abcd'), '{"half":');
  assert.deepEqual(
    (await store.list()).checkpoints.map((c) => c.transferId),
    ['x-1'],
  );
  assert.deepEqual(readdirSync(store.dir), [name]);
  writeFileSync(join(store.dir, 'bad.json'), JSON.stringify({ ...cp('bad'), durableOffsetBytes: -5 }));
  const listed = await store.list();
  assert.deepEqual(
    listed.checkpoints.map((c) => c.transferId),
    ['x-1'],
  );
  assert.match(listed.quarantined[0]!.reason, /bad.json: field "durableOffsetBytes"/);
  assert.deepEqual(readdirSync(store.dir).sort(), [name, 'quarantine'].sort());
  // optional fields survive a round trip and are covered by the MAC
  await store.save(
    cp('x-3', { targetIdentity: 'inode:2049:1234', lastData: { offsetBytes: 0, lengthBytes: 10, checksum: 'a'.repeat(64) }, durableOffsetBytes: 10 }),
  );
  const x3 = await store.load('a', 'x-3');
  assert.equal(x3!.targetIdentity, 'inode:2049:1234');
  assert.deepEqual(x3!.lastData, { offsetBytes: 0, lengthBytes: 10, checksum: 'a'.repeat(64) });
  const f3 = join(store.dir, checkpointFileName('a', 'x-3'));
  writeFileSync(f3, readFileSync(f3, 'utf8').replace('inode:2049:1234', 'inode:2049:9999'));
  await assert.rejects(store.load('a', 'x-3'), /mac\) mismatch/);
  await store.remove('a', 'x-3');
  await store.remove('a', 'x-1');
  await store.remove('a', 'x-1');
  assert.equal(await store.load('a', 'x-1'), undefined);
  assert.throws(() => checkTransferId('../etc'), /transfer id/);
  assert.throws(() => checkTransferId('.hidden'), /transfer id/);
  assert.throws(() => checkTransferId('a'.repeat(129)), /transfer id/);
  assert.equal(checkTransferId('ts-0123abc_x.y'), 'ts-0123abc_x.y');
});

test('a state directory removed under a running receiver: saving says so (IO_ERROR naming it), it is not silently recreated', async () => {
  const store = new CheckpointStore(join(dir, 'gone'));
  await store.init();
  rmSync(join(dir, 'gone'), { recursive: true });
  await assert.rejects(
    store.save(cp('y-1')),
    (e: ThinshipError) => e.code === 'IO_ERROR' && /state directory .*gone\/transfers is missing.*restart the receiver/.test(e.message),
  );
  assert.deepEqual(
    readdirSync(dir).filter((n) => n === 'gone'),
    [],
  );
});

test('identity names come from the certificate CN and every SAN', () => {
  assert.deepEqual(
    certificateNames({ subject: { CN: 'sender-a' }, subjectaltname: 'DNS:sender-a, URI:spiffe://site/b, IP Address:10.0.0.1, email:ops@example.com' }),
    ['sender-a', 'spiffe://site/b', '10.0.0.1', 'ops@example.com'],
  );
  assert.deepEqual(certificateNames(undefined), []);
  assert.deepEqual(parseHostPort('[::1]:7443', 'x'), { host: '::1', port: 7443 });
  assert.deepEqual(parseHostPort('backup.example:7443', 'x'), { host: 'backup.example', port: 7443 });
  assert.throws(() => parseHostPort('nohost', 'x'), /HOST:PORT/);
  assert.ok(isLoopbackHost('127.0.0.5') && isLoopbackHost('::1') && isLoopbackHost('localhost'));
  assert.ok(!isLoopbackHost('0.0.0.0') && !isLoopbackHost('10.0.0.1') && !isLoopbackHost('127.example.com'));
});

test('target authorisation: allowed names resolve, escapes are PERMISSION_DENIED', async () => {
  const allowed = join(dir, 'allowed');
  const outside = join(dir, 'outside');
  mkdirSync(join(allowed, 'sub'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret.img'), 'x');
  writeFileSync(join(allowed, 'exists.img'), 'x');
  symlinkSync(outside, join(allowed, 'out-link'));
  symlinkSync(join(allowed, 'exists.img'), join(allowed, 'inner-link.img'));
  symlinkSync(join(outside, 'secret.img'), join(allowed, 'secret-link.img'));
  const policy: AccessPolicy = await parseAccessRules(
    {
      a: {
        directories: [allowed],
        lvm: [
          { vg: 'vg0', lv: 'backup-*' },
          { vg: 'vg1', pool: 'pool0', lv: 'vm?' },
        ],
      },
    },
    'test',
  );
  const a = { name: 'a', names: ['a'] };
  const ok = async (t: string) => authorizeTarget(policy, a, t);
  const denied = async (t: string, who = a) =>
    assert.rejects(authorizeTarget(policy, who, t), (e: ThinshipError) => {
      assert.equal(e.code, 'PERMISSION_DENIED', `${t}: ${e.message}`);
      return true;
    });
  assert.deepEqual(await ok(join(allowed, 'new.img')), {
    kind: 'path',
    name: join(allowed, 'new.img'),
    realPath: join(allowed, 'new.img'),
    exists: false,
    key: join(allowed, 'new.img'),
    dir: allowed,
    rel: 'new.img',
  });
  assert.equal((await ok(join(allowed, 'sub', 'new.img'))).kind, 'path');
  assert.equal(
    ((await ok(join(allowed, 'inner-link.img'))) as { realPath: string }).realPath,
    join(allowed, 'exists.img'),
    'a symlink inside resolves to its real path',
  );
  assert.deepEqual(await ok('vg0/backup-db'), { kind: 'lvm', name: 'vg0/backup-db', vg: 'vg0', lv: 'backup-db', pool: undefined, key: 'lvm:vg0/backup-db' });
  assert.equal(((await ok('vg1/vm7')) as { pool?: string }).pool, 'pool0');
  for (const t of [
    join(allowed, 'out-link', 'x.img'),
    join(allowed, 'secret-link.img'),
    `${allowed}/../outside/secret.img`,
    `${allowed}/./x.img`,
    `${allowed}//x.img`,
    `${allowed}/`,
    allowed,
    join(outside, 'secret.img'),
    join(allowed, 'nodir', 'x.img'),
    'vg0/other',
    'vg1/vm10',
    'vg2/backup-x',
    'vg0/../x',
    'relative.img',
    '/dev/sda',
  ])
    await denied(t);
  await denied(join(allowed, 'new.img'), { name: 'b', names: ['b'] });
  await assert.rejects(authorizeTarget(policy, a, ''), /target name/);
  await assert.rejects(parseAccessRules({ a: { directories: ['rel/dir'] } }, 'cfg'), /absolute, normalised/);
  await assert.rejects(parseAccessRules({ a: { directories: [join(dir, 'missing')] } }, 'cfg'), /does not exist/);
  await assert.rejects(parseAccessRules({ a: { files: [] } }, 'cfg'), /unknown key "files"/);
});

test('the compression pool: order kept by the caller, memory comes back, zeros and incompressible chunks recognised', async () => {
  const pool = new CompressPool({ workers: 2 });
  try {
    const text = Buffer.allocUnsafe(1024 * 1024).fill('thin pool snapshot ');
    const rand = randomBytes(1024 * 1024);
    const inputs = [Buffer.from(text), Buffer.alloc(1024 * 1024), Buffer.from(rand), Buffer.from(text.subarray(0, 3000))];
    const copies = inputs.map((b) => Buffer.from(b));
    const results = await Promise.all(inputs.map((b) => pool.process(b, 'sha256')));
    assert.equal(inputs[0]!.length, 0, 'a whole-ArrayBuffer chunk was transferred, not copied');
    const dz = new ChunkDecompressor();
    for (const [i, r] of results.entries()) {
      assert.deepEqual(r.raw, copies[i], `chunk ${i} came back intact`);
      assert.deepEqual(r.checksum, createHash('sha256').update(copies[i]!).digest());
    }
    assert.ok(results[0]!.frame && results[0]!.frame.length < 100_000);
    assert.deepEqual(dz.decompress(results[0]!.frame, { offsetBytes: 0, lengthBytes: text.length }), text);
    assert.equal(results[1]!.zero, true);
    assert.equal(results[1]!.frame, undefined);
    assert.equal(results[2]!.frame, undefined, 'random data: raw');
    assert.ok(results[3]!.frame, 'a small pooled buffer is copied and still compressed');
  } finally {
    await pool.close();
  }
  const plain = new CompressPool({ workers: 1, compress: false });
  try {
    const r = await plain.process(Buffer.alloc(65536, 1), 'sha256');
    assert.equal(r.frame, undefined);
    assert.equal(r.zero, false);
  } finally {
    await plain.close();
  }
});
