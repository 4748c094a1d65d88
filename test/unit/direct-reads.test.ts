/**
 * O_DIRECT reads of the source (src/sender/volume-reader.ts DirectReads) into
 * aligned read slabs (src/sender/chunk-buffers.ts ReadSlabs): the bytes are
 * the file's, unaligned reads are left to the page cache path, and a file
 * system without O_DIRECT (tmpfs) gives no DirectReads at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { DirectReads, DIRECT_ALIGN_BYTES } from '../../src/sender/volume-reader.js';
import { ReadSlabs } from '../../src/sender/chunk-buffers.js';
import { nativeDevice } from '../../src/device/native.js';

const MiB = 1024 * 1024;

test('ReadSlabs hands out aligned views of recycled slabs and takes back only its own', () => {
  const slabs = new ReadSlabs(MiB, 2);
  const a = slabs.take(MiB);
  const b = slabs.take(64 * 1024);
  for (const x of [a, b]) assert.equal((nativeDevice().addressMod(x.buffer as ArrayBuffer, DIRECT_ALIGN_BYTES) + x.byteOffset) % DIRECT_ALIGN_BYTES, 0);
  assert.equal(b.length, 64 * 1024);
  slabs.give(Buffer.alloc(MiB)); // not one of ours
  slabs.give(a.subarray(10)); // a view of our slab still names it
  slabs.give(a); // given twice: ignored
  assert.equal(slabs.keptSlabs, 1);
  assert.equal(slabs.take(4096).buffer, a.buffer, 'the slab is reused');
  slabs.give(b);
  assert.equal(slabs.take(2 * MiB).length, 2 * MiB, 'larger than a slab: a one-off buffer');
});

test('DirectReads reads aligned ranges with O_DIRECT and leaves unaligned ones to the caller', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'thinship-direct-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'data');
  const bytes = randomBytes(4 * MiB);
  writeFileSync(path, bytes);
  const d = await DirectReads.open(path, 'test file');
  if (!d) {
    t.skip(`${dir}: this file system refuses O_DIRECT`);
    return;
  }
  try {
    const slabs = new ReadSlabs(MiB, 4);
    const buf = slabs.take(MiB);
    assert.equal(await d.read(buf, MiB), MiB);
    assert.ok(buf.equals(bytes.subarray(MiB, 2 * MiB)));
    assert.equal(await d.read(buf.subarray(0, 8192), 3 * MiB + 4096), 8192);
    assert.ok(buf.subarray(0, 8192).equals(bytes.subarray(3 * MiB + 4096, 3 * MiB + 12288)));
    // Not aligned: an offset, a length, a buffer address. Nothing read, the caller reads through the cache.
    assert.equal(await d.read(buf, 100), 0);
    assert.equal(await d.read(buf.subarray(0, 1000), 0), 0);
    assert.equal(await d.read(buf.subarray(512, 512 + 4096), 0), 0);
    assert.equal(await d.read(Buffer.from(buf.buffer, buf.byteOffset + 16, 4096), 0), 0);
    // Past the end: what there is (the caller names the early end).
    assert.equal(await d.read(buf, 3 * MiB + MiB / 2), MiB / 2);
  } finally {
    await d.close();
  }
});

test('on tmpfs (O_DIRECT refused at open before Linux 6.6, allowed since): no DirectReads, or one that reads the right bytes', async (t) => {
  if (!existsSync('/dev/shm')) {
    t.skip('no /dev/shm');
    return;
  }
  const dir = mkdtempSync(join('/dev/shm', 'thinship-direct-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'data');
  const bytes = randomBytes(MiB);
  writeFileSync(path, bytes);
  const d = await DirectReads.open(path, 'tmpfs file');
  if (d === undefined) return; // every read goes through the page cache
  try {
    const buf = new ReadSlabs(MiB, 1).take(MiB);
    const n = await d.read(buf, 0);
    assert.ok(n === 0 || n === MiB, `${n} bytes`);
    if (n === MiB) assert.ok(buf.equals(bytes));
  } finally {
    await d.close();
  }
});
