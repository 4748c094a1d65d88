/**
 * applyMessages with DATA records in pieces (what the LINBIT decoder delivers for
 * records over 4 MiB), on a real file: pieces are written where they belong; the
 * whole record's range is checked at its first piece, so a record past the end of
 * the target is refused before any of it is written; pieces out of sequence and a
 * stream that ends inside a record are refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinshipError } from '../../src/errors.js';
import { openVolume } from '../../src/device/volume.js';
import { applyMessages } from '../../src/receiver/receiver.js';
import type { StreamMessage } from '../../src/stream/messages.js';

const SIZE = 64 * 1024;

async function withTarget(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'thinship-pieces-'));
  try {
    const path = join(dir, 't.img');
    await writeFile(path, Buffer.alloc(SIZE, 0xee));
    await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function apply(path: string, msgs: StreamMessage[]) {
  const target = await openVolume(path, { mode: 'write' });
  try {
    return await applyMessages(
      (async function* () {
        yield* msgs;
      })(),
      target,
    );
  } finally {
    await target.close();
  }
}

const begin: StreamMessage = { type: 'begin', info: {} };
const end = (dataRecords: number): StreamMessage => ({ type: 'end', dataRecords, unmapRecords: 0 });
function piece(recordOffsetBytes: number, recordLengthBytes: number, at: number, bytes: number, fill: number): StreamMessage {
  return {
    type: 'data',
    offsetBytes: recordOffsetBytes + at,
    data: Buffer.alloc(bytes, fill),
    piece: { recordOffsetBytes, recordLengthBytes, last: at + bytes === recordLengthBytes },
  };
}

test('a record in three pieces is written in place and counted as one record', async () => {
  await withTarget(async (path) => {
    const s = await apply(path, [begin, piece(4096, 10_000, 0, 4000, 1), piece(4096, 10_000, 4000, 4000, 2), piece(4096, 10_000, 8000, 2000, 3), end(1)]);
    assert.deepEqual([s.records, s.dataRecords, s.bytesWritten], [3, 1, 10_000]);
    const want = Buffer.alloc(SIZE, 0xee);
    want.fill(1, 4096, 8096).fill(2, 8096, 12_096).fill(3, 12_096, 14_096);
    assert.ok((await readFile(path)).equals(want));
  });
});

test('a record in pieces that goes past the target is refused at its first piece: nothing written', async () => {
  await withTarget(async (path) => {
    await assert.rejects(apply(path, [begin, piece(SIZE - 4096, 8192, 0, 4096, 1), piece(SIZE - 4096, 8192, 4096, 4096, 2), end(1)]), (e: unknown) => {
      assert.ok(e instanceof ThinshipError && e.code === 'BAD_STREAM', String(e));
      assert.match(e.message, /data record beyond the target \(record 2, volume offset 61440, length 8192\).*nothing was applied to the target/);
      return true;
    });
    assert.ok((await readFile(path)).equals(Buffer.alloc(SIZE, 0xee)));
  });
});

test('pieces out of sequence, a first piece that is not at the record start, and a stream ending inside a record are refused', async () => {
  await withTarget(async (path) => {
    await assert.rejects(
      apply(path, [begin, piece(0, 8192, 0, 4096, 1), piece(0, 8192, 4000, 4096, 2), end(1)]),
      /record 2: a piece of the DATA record ending at 8192 was expected at volume offset 4096, got data at 4000 \(4096 bytes\); applied before the error: 1 data records \(4096 bytes written\)/,
    );
    await assert.rejects(
      apply(path, [begin, piece(0, 8192, 0, 4096, 1), { type: 'unmap', offsetBytes: 0, lengthBytes: 4096 }, end(1)]),
      /a piece of the DATA record ending at 8192 was expected at volume offset 4096, got unmap/,
    );
    await assert.rejects(
      apply(path, [begin, piece(0, 8192, 4096, 4096, 1), end(1)]),
      /record 2: the first piece of a DATA record \[0, \+8192\) must start at its offset .* got 4096 bytes at 4096, marked last; nothing was applied/,
    );
    await assert.rejects(apply(path, [begin, piece(0, 8192, 0, 4096, 1)]), /the stream ended without its end record/);
    await assert.rejects(
      apply(path, [begin, piece(0, 8192, 0, 4096, 1), end(1)]),
      /a piece of the DATA record ending at 8192 was expected at volume offset 4096, got end/,
    );
  });
});
