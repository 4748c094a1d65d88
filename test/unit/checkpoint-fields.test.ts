/**
 * receiver/checkpoint.ts field by field (a checkpoint is read back from disk:
 * every field is checked, at its limit and one past it), the MAC against an
 * independent HMAC of the canonical fields, the key file, format-1 migration,
 * and what list(), save() and remove() do with files that are not checkpoints.
 * Written for the StrykerJS run of the module (docs/testing.md).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync, readlinkSync, mkdirSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { createHash, createHmac } from 'node:crypto';
import {
  CheckpointStore,
  checkpointFileName,
  checkTransferId,
  CHECKPOINT_FORMAT,
  MAX_ID_FIELD_BYTES,
  MAX_TARGET_BYTES,
  MAX_IDENTITY_BYTES,
  type TransferCheckpoint,
} from '../../src/receiver/checkpoint.js';
import { ThinshipError } from '../../src/errors.js';

let dir: string;
let store: CheckpointStore;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-cpfields-'));
  store = new CheckpointStore(join(dir, 'state'));
  await store.init();
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const cp = (id: string, over: Partial<TransferCheckpoint> = {}): TransferCheckpoint => ({
  format: 2,
  transferId: id,
  status: 'in_progress',
  identity: 'a',
  target: '/srv/t.img',
  targetKey: '/srv/t.img',
  mode: 'full',
  sourceId: 's',
  baseId: '',
  volumeSizeBytes: 1000,
  blockSizeBytes: 10,
  checksum: 'sha256',
  durableOffsetBytes: 500,
  digestState: 'ab'.repeat(32),
  dataRecords: 3,
  unmapRecords: 4,
  dataBytes: 30,
  unmapBytes: 40,
  createdUnixMs: 5,
  updatedUnixMs: 6,
  ...over,
});

const fileOf = (s: CheckpointStore, identity: string, id: string) => join(s.dir, checkpointFileName(identity, id));

/** Writes `body` (no MAC) as the file of ('a', id) and expects load() to refuse naming the file and `field`. */
async function refusedField(id: string, body: Record<string, unknown>, field: string): Promise<void> {
  const f = fileOf(store, 'a', id);
  writeFileSync(f, JSON.stringify(body));
  await assert.rejects(store.load('a', id), (e: unknown) => {
    assert.ok(e instanceof ThinshipError, String(e));
    assert.equal(e.code, 'INTERNAL');
    assert.equal(e.message, `checkpoint ${f}: field "${field}" is missing or invalid`, JSON.stringify(body).slice(0, 200));
    return true;
  });
}

test('every field is checked: wrong types, negative, fractional and unsafe numbers, unknown enum values, malformed hex', async () => {
  let n = 0;
  const id = () => `f${n++}`;
  const bad = (over: Record<string, unknown>) => {
    const i = id();
    return [i, { ...cp(i), ...over }] as const;
  };
  for (const f of ['transferId', 'identity', 'target', 'targetKey', 'sourceId', 'baseId']) {
    for (const v of [42, null, undefined, ['x']]) {
      const [i, b] = bad({ [f]: v });
      await refusedField(i, b, f);
    }
  }
  for (const f of [
    'volumeSizeBytes',
    'blockSizeBytes',
    'durableOffsetBytes',
    'dataRecords',
    'unmapRecords',
    'dataBytes',
    'unmapBytes',
    'createdUnixMs',
    'updatedUnixMs',
  ]) {
    for (const v of [-1, 1.5, '7', 2 ** 53, null, undefined]) {
      const [i, b] = bad({ [f]: v });
      await refusedField(i, b, f);
    }
  }
  for (const v of ['done', '', undefined]) {
    const [i, b] = bad({ status: v });
    await refusedField(i, b, 'status');
  }
  for (const v of ['diff', '', undefined]) {
    const [i, b] = bad({ mode: v });
    await refusedField(i, b, 'mode');
  }
  for (const v of ['md5', '', undefined]) {
    const [i, b] = bad({ checksum: v });
    await refusedField(i, b, 'checksum');
  }
  for (const v of ['AB'.repeat(32), 'a'.repeat(63), 'a'.repeat(65), `x${'a'.repeat(64)}`, `${'a'.repeat(64)}\n`, 42, undefined, ['a'.repeat(64)]]) {
    const [i, b] = bad({ digestState: v });
    await refusedField(i, b, 'digestState');
  }
  for (const v of ['.hidden', 'a/b', 'x'.repeat(129), '']) {
    const [i, b] = bad({ transferId: v });
    await refusedField(i, b, 'transferId');
  }
  for (const v of [3, 1.5, '2', undefined]) {
    const [i, b] = bad({ format: v });
    await refusedField(i, b, 'format');
  }
});

test('field sizes are counted in UTF-8 bytes and refused one byte past the limit; the durable offset at most the volume size', async () => {
  const e2 = '\u00e9'; // 2 bytes of UTF-8, 1 UTF-16 unit
  const cases: [field: keyof TransferCheckpoint, limit: number][] = [
    ['sourceId', MAX_ID_FIELD_BYTES],
    ['baseId', MAX_ID_FIELD_BYTES],
    ['target', MAX_TARGET_BYTES],
    ['targetKey', MAX_TARGET_BYTES + 16],
    ['identity', MAX_IDENTITY_BYTES],
  ];
  let n = 0;
  for (const [field, limit] of cases) {
    // At the limit: saved and loaded back unchanged.
    const okId = `s${n++}`;
    const ok = cp(okId, { [field]: e2.repeat(limit / 2) });
    await store.save(ok);
    assert.deepEqual(await store.load(ok.identity, okId), ok, `${field} of ${limit} bytes`);
    // One byte more (half as many characters): refused, naming the field ("target" for both target names).
    const badId = `s${n++}`;
    await refusedField(badId, { ...cp(badId), identity: 'a', [field]: `${e2.repeat(limit / 2)}x` }, field === 'targetKey' ? 'target' : field);
  }
  const full = cp('d-eq', { durableOffsetBytes: 1000 });
  await store.save(full);
  assert.deepEqual(await store.load('a', 'd-eq'), full);
  await refusedField('d-over', { ...cp('d-over'), durableOffsetBytes: 1001 }, 'durableOffsetBytes');
});

test('lastData: null or absent is none; each of its fields is checked, and it must end at or below the durable offset', async () => {
  const h = 'cd'.repeat(32);
  const atEnd = cp('l-ok', { lastData: { offsetBytes: 490, lengthBytes: 10, checksum: h } });
  await store.save(atEnd);
  assert.deepEqual(await store.load('a', 'l-ok'), atEnd);
  const none = cp('l-none');
  await store.save(none);
  const f = fileOf(store, 'a', 'l-none');
  const saved = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
  assert.equal('lastData' in saved, false, 'an absent lastData is not written');
  writeFileSync(f, JSON.stringify({ ...saved, lastData: null }));
  assert.deepEqual(await store.load('a', 'l-none'), none, 'null: no last record (same MAC as absent)');
  let n = 0;
  for (const l of [
    5,
    'x',
    { offsetBytes: -1, lengthBytes: 10, sha256: h },
    { offsetBytes: 0.5, lengthBytes: 10, sha256: h },
    { offsetBytes: 0, lengthBytes: 0, sha256: h },
    { offsetBytes: 0, lengthBytes: -10, sha256: h },
    { offsetBytes: 0, lengthBytes: 10, sha256: 'CD'.repeat(32) },
    { offsetBytes: 0, lengthBytes: 10, sha256: 'cd'.repeat(31) },
    { offsetBytes: 0, lengthBytes: 10, sha256: 7 },
    { offsetBytes: 0, lengthBytes: 10, sha256: [h] },
    { offsetBytes: 0, lengthBytes: 10, sha256: `x${h}` },
    { offsetBytes: 0, lengthBytes: 10, sha256: `${h}x` },
    { offsetBytes: 491, lengthBytes: 10, sha256: h },
    { lengthBytes: 10, sha256: h },
    { offsetBytes: 0, sha256: h },
  ]) {
    const id = `l${n++}`;
    await refusedField(id, { ...cp(id), lastData: l }, 'lastData');
  }
});

test('the MAC is HMAC-SHA256 with checkpoint.key over the fields in their canonical order; the file holds exactly the fields, format 2 and the MAC', async () => {
  const key = readFileSync(join(dir, 'state', 'checkpoint.key'));
  assert.equal(key.length, 32);
  assert.equal(statSync(join(dir, 'state', 'checkpoint.key')).mode & 0o777, 0o600);
  assert.equal(statSync(store.dir).mode & 0o777, 0o700);
  const order = [
    'format',
    'transferId',
    'status',
    'identity',
    'target',
    'targetKey',
    'targetIdentity',
    'mode',
    'sourceId',
    'baseId',
    'volumeSizeBytes',
    'blockSizeBytes',
    'checksum',
    'durableOffsetBytes',
    'digestState',
    'dataRecords',
    'unmapRecords',
    'dataBytes',
    'unmapBytes',
    'createdUnixMs',
    'updatedUnixMs',
  ] as const;
  for (const c of [
    cp('m-1'),
    cp('m-2', { targetIdentity: 'file dev=1 ino=2', status: 'complete', lastData: { offsetBytes: 100, lengthBytes: 20, checksum: 'ef'.repeat(32) } }),
  ]) {
    await store.save({ ...c, format: 7 as 2 });
    const f = fileOf(store, 'a', c.transferId);
    const text = readFileSync(f, 'utf8');
    assert.ok(text.endsWith('}\n'), 'one JSON object and a newline');
    assert.equal(statSync(f).mode & 0o777, 0o600);
    const body = JSON.parse(text) as Record<string, unknown>;
    const last = c.lastData ? [c.lastData.offsetBytes, c.lastData.lengthBytes, c.lastData.checksum] : null;
    const canonical = JSON.stringify([...order.map((k) => (k === 'format' ? CHECKPOINT_FORMAT : c[k])), last]);
    assert.equal(body.mac, createHmac('sha256', key).update(canonical).digest('hex'), 'independent HMAC');
    const { mac: _mac, ...fields } = body;
    assert.deepEqual(fields, { ...c, format: 2 });
    assert.deepEqual(await store.load('a', c.transferId), { ...c, format: 2 });
  }
});

test('a MAC that is missing, not lowercase hex, from another key, or over other values is a mismatch; a file under another name is refused', async () => {
  const c = cp('mac-1', { lastData: { offsetBytes: 0, lengthBytes: 10, checksum: 'ef'.repeat(32) } });
  await store.save(c);
  const f = fileOf(store, 'a', 'mac-1');
  const good = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
  const mac = good.mac as string;
  const variants: [string, Record<string, unknown>][] = [
    ['no mac', { ...good, mac: undefined }],
    ['upper-case mac', { ...good, mac: mac.toUpperCase() }],
    ['short mac', { ...good, mac: mac.slice(0, 62) }],
    ['mac as a number', { ...good, mac: 5 }],
    ['mac with a suffix', { ...good, mac: `${mac}00` }],
    ['mac with a non-hex suffix', { ...good, mac: `${mac}x` }],
    ['mac with a non-hex prefix', { ...good, mac: `x${mac}` }],
    ['another mac', { ...good, mac: `${mac.slice(0, 63)}${mac.endsWith('0') ? '1' : '0'}` }],
    ['durable offset changed', { ...good, durableOffsetBytes: 400 }],
    ['lastData changed', { ...good, lastData: { offsetBytes: 0, lengthBytes: 10, sha256: 'ee'.repeat(32) } }],
    ['identity changed', { ...good, identity: 'b' }],
  ];
  for (const [what, body] of variants) {
    writeFileSync(f, JSON.stringify(body));
    await assert.rejects(
      store.load('a', 'mac-1'),
      (e: ThinshipError) =>
        e.code === 'INTERNAL' && e.message === `checkpoint ${f}: checksum (mac) mismatch: the file was changed or comes from another state directory`,
      what,
    );
  }
  // The same file under another identity's name: its MAC is right, its name is not.
  writeFileSync(f, JSON.stringify(good));
  const other = fileOf(store, 'b', 'mac-1');
  writeFileSync(other, JSON.stringify(good));
  await assert.rejects(
    store.load('b', 'mac-1'),
    (e: ThinshipError) => e.code === 'INTERNAL' && e.message === `checkpoint ${other} is not named after its identity and transfer id (copied or renamed)`,
  );
  rmSync(other);
  // Another state directory (another key) does not accept it.
  const elsewhere = new CheckpointStore(join(dir, 'elsewhere'));
  await elsewhere.init();
  writeFileSync(fileOf(elsewhere, 'a', 'mac-1'), JSON.stringify(good));
  await assert.rejects(elsewhere.load('a', 'mac-1'), /checksum \(mac\) mismatch/);
  // A second store on the same directory keeps the key and reads it.
  const again = new CheckpointStore(join(dir, 'state'));
  await again.init();
  assert.deepEqual(await again.load('a', 'mac-1'), c);
});

test('files that are not checkpoints: bad JSON and non-objects refused; load of a directory fails with its I/O error', async () => {
  let n = 0;
  for (const [text, why] of [
    ['{"half":', 'is not valid JSON: '],
    ['null', 'is not a JSON object'],
    ['[1,2]', 'is not a JSON object'],
    ['"text"', 'is not a JSON object'],
    ['7', 'is not a JSON object'],
  ] as const) {
    const id = `j${n++}`;
    const f = fileOf(store, 'a', id);
    writeFileSync(f, text);
    await assert.rejects(store.load('a', id), (e: ThinshipError) => e.code === 'INTERNAL' && e.message.startsWith(`checkpoint ${f} ${why}`), text);
  }
  mkdirSync(fileOf(store, 'a', 'as-dir'));
  await assert.rejects(store.load('a', 'as-dir'), (e: NodeJS.ErrnoException) => e.code === 'EISDIR');
  await assert.rejects(store.remove('a', 'as-dir'), (e: NodeJS.ErrnoException) => e.code === 'EISDIR' || e.code === 'EPERM');
  assert.ok(existsSync(fileOf(store, 'a', 'as-dir')));
  rmSync(fileOf(store, 'a', 'as-dir'), { recursive: true });
  await store.remove('a', 'never-saved'); // ENOENT: nothing to do
  for (let i = 0; i < n; i++) rmSync(fileOf(store, 'a', `j${i}`));
});

test('save: a rename that fails leaves no temporary behind and reports the error', async () => {
  const s = new CheckpointStore(join(dir, 'rename-fails'));
  await s.init();
  const f = fileOf(s, 'a', 'r-1');
  mkdirSync(f);
  writeFileSync(join(f, 'keep'), 'x'); // a non-empty directory cannot be renamed over
  await assert.rejects(s.save(cp('r-1')), (e: NodeJS.ErrnoException) => e.code === 'EISDIR' || e.code === 'ENOTEMPTY');
  assert.deepEqual(readdirSync(s.dir).sort(), [checkpointFileName('a', 'r-1')]);
});

test('list(): temporaries removed, other files left alone, a directory quarantined, format-1 files migrated only in a new state directory', async () => {
  const s = new CheckpointStore(join(dir, 'legacy'));
  // A state directory of a version before checksums: format-1 files named <transferId>.json.
  mkdirSync(s.dir, { recursive: true });
  const v1 = (id: string) => ({ ...cp(id), format: 1 });
  writeFileSync(join(s.dir, 'old-1.json'), JSON.stringify(v1('old-1')));
  writeFileSync(join(s.dir, 'misnamed.json'), JSON.stringify(v1('old-2')));
  writeFileSync(join(s.dir, '.old-3.tmp-1-ab'), '{');
  writeFileSync(join(s.dir, 'notes.tmp-1'), 'kept: not a temporary of ours (no leading dot)');
  writeFileSync(join(s.dir, '.hidden'), 'kept: no .tmp-');
  writeFileSync(join(s.dir, 'README'), 'kept: not .json');
  mkdirSync(join(s.dir, 'dir.json'));
  await s.init();
  const listed = await s.list();
  assert.deepEqual(listed.migrated, ['old-1']);
  assert.deepEqual(listed.checkpoints, [{ ...cp('old-1'), format: 2 }]);
  assert.deepEqual(listed.quarantined.map((q) => [q.file, q.reason]).sort(), [
    [join(s.dir, 'dir.json'), `checkpoint ${join(s.dir, 'dir.json')} is not a regular file`],
    [join(s.dir, 'misnamed.json'), `checkpoint ${join(s.dir, 'misnamed.json')} is not named after its transfer id old-2`],
  ]);
  for (const q of listed.quarantined) {
    assert.ok(q.movedTo.startsWith(join(s.quarantineDir, `${q.file.slice(s.dir.length + 1)}.`)), q.movedTo);
    assert.ok(existsSync(q.movedTo));
  }
  assert.deepEqual(readdirSync(s.dir).sort(), ['.hidden', 'README', checkpointFileName('a', 'old-1'), 'notes.tmp-1', 'quarantine'].sort());
  assert.deepEqual(await s.load('a', 'old-1'), { ...cp('old-1'), format: 2 }, 'migrated: format 2 with a MAC, under its hashed name');

  // Once the key exists, a format-1 file is unverifiable: quarantined, not migrated.
  const again = new CheckpointStore(join(dir, 'legacy'));
  await again.init();
  writeFileSync(join(s.dir, 'late.json'), JSON.stringify(v1('late')));
  const second = await again.list();
  assert.deepEqual(second.migrated, []);
  assert.deepEqual(
    second.quarantined.map((q) => q.reason),
    [`checkpoint ${join(s.dir, 'late.json')} is format 1 (no checksum), but this state directory already has checksummed checkpoints`],
  );
  assert.deepEqual(
    second.checkpoints.map((c) => c.transferId),
    ['old-1'],
  );
});

test('the key file: a wrong length is refused naming it; an unreadable one (a directory) is an error, not a new key', async () => {
  const short = join(dir, 'short-key');
  mkdirSync(short);
  writeFileSync(join(short, 'checkpoint.key'), Buffer.alloc(31));
  await assert.rejects(
    new CheckpointStore(short).init(),
    (e: ThinshipError) =>
      e.code === 'INTERNAL' &&
      e.message ===
        `${join(short, 'checkpoint.key')} is 31 bytes, not 32: it keys every checkpoint's checksum; restore it, or move the state directory aside to start with no transfers`,
  );
  const dirKey = join(dir, 'dir-key');
  mkdirSync(join(dirKey, 'checkpoint.key'), { recursive: true });
  await assert.rejects(new CheckpointStore(dirKey).init(), (e: NodeJS.ErrnoException) => e.code === 'EISDIR');
  const noInit = new CheckpointStore(join(dir, 'no-init'));
  mkdirSync(noInit.dir, { recursive: true });
  await assert.rejects(noInit.save(cp('x')), (e: ThinshipError) => e.code === 'INTERNAL' && e.message === 'checkpoint store used before init()');
});

test('transfer ids: a string of 1 to 128 of [A-Za-z0-9._-] not starting with "."; file names hash identity and id', () => {
  for (const ok of ['a', 'A-9_z.y', '_x', '-', 'x'.repeat(128)]) assert.equal(checkTransferId(ok), ok);
  for (const bad of ['', '.a', '..', 'a/b', 'a b', 'x'.repeat(129), 'é']) {
    assert.throws(
      () => checkTransferId(bad),
      (e: ThinshipError) =>
        e.code === 'BAD_STREAM' &&
        e.message === `transfer id ${JSON.stringify(bad.slice(0, 140))} is not 1 to 128 characters from [A-Za-z0-9._-] (not starting with '.')`,
    );
  }
  assert.throws(
    () => checkTransferId(42 as unknown as string),
    (e: ThinshipError) => e.code === 'BAD_STREAM' && e.message.startsWith('transfer id "42" is not'),
    'a number is not an id even when its digits would be',
  );
  assert.throws(
    () => checkTransferId('y'.repeat(300)),
    (e: ThinshipError) => e.message.startsWith(`transfer id "${'y'.repeat(140)}" is not`),
    'the message quotes 140 characters',
  );
  const name = checkpointFileName('idn', 't-1');
  assert.equal(
    name,
    `${createHash('sha256')
      .update(JSON.stringify(['idn', 't-1']))
      .digest('hex')
      .slice(0, 40)}.json`,
  );
  assert.notEqual(checkpointFileName('idn', 't-1'), checkpointFileName('id', 'nt-1'));
});

test('both modes and both checksum settings round-trip', async () => {
  const s = new CheckpointStore(join(dir, 'round-trip'));
  await s.init();
  for (const [i, over] of (
    [{ mode: 'incremental', baseId: 'b' }, { checksum: 'none' }, { mode: 'incremental', checksum: 'none', status: 'complete' }] as Partial<TransferCheckpoint>[]
  ).entries()) {
    const c = cp(`rt${i}`, over);
    await s.save(c);
    assert.deepEqual(await s.load('a', c.transferId), c);
    assert.deepEqual((await s.list()).quarantined, [], 'listed as usable too');
  }
});

test('the missing state directory error keeps the open error as its cause', async () => {
  const s = new CheckpointStore(join(dir, 'vanishing'));
  await s.init();
  rmSync(join(dir, 'vanishing'), { recursive: true });
  await assert.rejects(s.save(cp('v-1')), (e: ThinshipError) => e.code === 'IO_ERROR' && (e.cause as NodeJS.ErrnoException).code === 'ENOENT');
});

test('init, save, load, list and remove leave no file of the state directory open', async () => {
  const stateDir = join(dir, 'fds');
  const openUnder = () =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith(stateDir);
      } catch {
        return false;
      }
    });
  const s = new CheckpointStore(stateDir);
  await s.init();
  assert.deepEqual(openUnder(), [], 'after init (the new key was synced and closed)');
  for (let i = 0; i < 3; i++) await s.save(cp('fd-1', { durableOffsetBytes: i }));
  assert.deepEqual(openUnder(), [], 'after saves (temporary and directory closed)');
  await s.load('a', 'fd-1');
  writeFileSync(join(s.dir, 'junk.json'), '{');
  await s.list();
  await s.remove('a', 'fd-1');
  assert.deepEqual(openUnder(), [], 'after load, list (with a quarantine) and remove');
});

test('list(): an I/O error while migrating a format-1 checkpoint is reported, not taken for a bad file: nothing is quarantined, the file stays and migrates once the fault is gone', async () => {
  const s = new CheckpointStore(join(dir, 'migrate-eio'));
  mkdirSync(s.dir, { recursive: true });
  writeFileSync(join(s.dir, 'old-io.json'), JSON.stringify({ ...cp('old-io'), format: 1 }));
  await s.init();
  // The store imports rename from node:fs/promises; syncBuiltinESMExports re-points that binding.
  // Renames into the state directory fail (a disk error); renames into quarantine/ would work.
  const fsp = createRequire(import.meta.url)('node:fs/promises') as Record<string, unknown>;
  const real = fsp.rename as (a: string, b: string) => Promise<void>;
  fsp.rename = async (a: string, b: string) => {
    if (!String(b).startsWith(s.quarantineDir)) throw Object.assign(new Error(`EIO: i/o error, rename '${a}' -> '${b}'`), { code: 'EIO' });
    return real(a, b);
  };
  syncBuiltinESMExports();
  try {
    await assert.rejects(s.list(), (e: NodeJS.ErrnoException) => e.code === 'EIO');
  } finally {
    fsp.rename = real;
    syncBuiltinESMExports();
  }
  assert.ok(existsSync(join(s.dir, 'old-io.json')), 'the format-1 file is where it was');
  assert.ok(!existsSync(s.quarantineDir) || readdirSync(s.quarantineDir).length === 0, 'nothing quarantined');
  const listed = await s.list();
  assert.deepEqual(listed.migrated, ['old-io']);
  assert.deepEqual(listed.quarantined, []);
});
