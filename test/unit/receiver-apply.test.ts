/**
 * applyMessages (receiver/receiver.ts, the pipe-mode receiver) on a real file,
 * in the corners StrykerJS found untested: what a full stream zeroes (gaps and
 * tail) and what a plain or incremental stream leaves alone, a resumed full
 * stream, the summary's counts and progress, the begin rules, the bounds at
 * exactly the end of the target, and what every refusal says (record, offset,
 * what was applied, staged or not) with the target flushed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinshipError } from '../../src/errors.js';
import { openVolume, type VolumeHandle } from '../../src/device/volume.js';
import { applyMessages, type ApplyOptions, type ApplySummary } from '../../src/receiver/receiver.js';
import type { BeginInfo, DataMessage, StreamMessage, UnmapMessage } from '../../src/stream/messages.js';

const KiB = 1024;
const SIZE = 64 * KiB;
const FILL = 0xee;

/** A target file of SIZE bytes of FILL; the handle's flushes and writes are logged in order. */
async function withTarget(fn: (h: VolumeHandle, log: string[], path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'thinship-apply-'));
  const path = join(dir, 't.img');
  await writeFile(path, Buffer.alloc(SIZE, FILL));
  const h = await openVolume(path, { mode: 'write' });
  const log: string[] = [];
  const writeAt = h.writeAt.bind(h);
  const makeZero = h.makeZero.bind(h);
  const flush = h.flush.bind(h);
  h.writeAt = (b, o) => (log.push(`write ${o}+${b.length}`), writeAt(b, o));
  h.makeZero = (o, l) => (log.push(`zero ${o}+${l}`), makeZero(o, l));
  h.flush = () => (log.push('flush'), flush());
  try {
    await fn(h, log, path);
  } finally {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function apply(h: VolumeHandle, msgs: StreamMessage[], o?: ApplyOptions): Promise<ApplySummary> {
  return applyMessages(
    (async function* () {
      yield* msgs;
    })(),
    h,
    o,
  );
}

/** A refusal: its code, message, details; and (the target is always flushed) its flush. */
async function refused(p: Promise<unknown>, code: string, re: RegExp): Promise<ThinshipError> {
  const e = await p.then(
    () => assert.fail('expected a refusal'),
    (err: unknown) => err,
  );
  assert.ok(e instanceof ThinshipError, String(e));
  assert.equal(e.code, code, e.message);
  assert.match(e.message, re);
  return e;
}

const begin = (info: BeginInfo = {}): StreamMessage => ({ type: 'begin', info });
const full = (over: BeginInfo = {}): StreamMessage => begin({ incremental: false, volumeSizeBytes: SIZE, ...over });
const data = (offsetBytes: number, bytes: number, fill: number): DataMessage => ({ type: 'data', offsetBytes, data: Buffer.alloc(bytes, fill) });
const unmap = (offsetBytes: number, lengthBytes: number): UnmapMessage => ({ type: 'unmap', offsetBytes, lengthBytes });
const end = (dataRecords: number, unmapRecords: number, digest?: Buffer): StreamMessage => ({ type: 'end', dataRecords, unmapRecords, digest });

test('a full stream zeroes the gaps between records and the tail, counts them, and reports running totals', async () => {
  await withTarget(async (h, log, path) => {
    const progress: unknown[] = [];
    const digest = Buffer.alloc(32, 7);
    const t0 = performance.now();
    const s = await apply(h, [full(), data(4 * KiB, 4 * KiB, 1), unmap(16 * KiB, 8 * KiB), data(32 * KiB, 4 * KiB, 2), end(2, 1, digest)], {
      onProgress: (p) => progress.push({ ...p }),
    });
    const wallSeconds = (performance.now() - t0) / 1000;
    const want = Buffer.alloc(SIZE);
    want.fill(1, 4 * KiB, 8 * KiB).fill(2, 32 * KiB, 36 * KiB);
    assert.ok((await readFile(path)).equals(want), 'everything outside the DATA records reads as zeros');
    assert.equal((await stat(path)).size, SIZE);
    const { seconds, begin: b, ...counts } = s;
    assert.ok(seconds >= 0 && seconds <= wallSeconds, `${seconds} s, within the ${wallSeconds} s the call took`);
    assert.deepEqual(b, { incremental: false, volumeSizeBytes: SIZE });
    // 4 KiB before the first record, 8 KiB to the unmap, 8 KiB to the second record, 28 KiB of tail
    assert.deepEqual(counts, {
      records: 5,
      dataRecords: 2,
      unmapRecords: 1,
      bytesWritten: 8 * KiB,
      bytesDiscarded: 8 * KiB,
      gapBytesZeroed: 48 * KiB,
      digest,
    });
    const at = (records: number, dataRecords: number, unmapRecords: number, bytesWritten: number, bytesDiscarded: number, gapBytesZeroed: number) => ({
      records,
      dataRecords,
      unmapRecords,
      bytesWritten,
      bytesDiscarded,
      gapBytesZeroed,
    });
    assert.deepEqual(progress, [at(2, 1, 0, 4 * KiB, 0, 4 * KiB), at(3, 1, 1, 4 * KiB, 8 * KiB, 12 * KiB), at(4, 2, 1, 8 * KiB, 8 * KiB, 20 * KiB)]);
    assert.deepEqual(log, [
      'zero 0+4096',
      'write 4096+4096',
      'zero 8192+8192',
      'zero 16384+8192',
      'zero 24576+8192',
      'write 32768+4096',
      'zero 36864+28672',
      'flush',
    ]);
  });
});

test('a record that starts where the previous ended leaves no gap; a stream that fills the volume zeroes no tail', async () => {
  await withTarget(async (h, log) => {
    const s = await apply(h, [full(), data(0, 32 * KiB, 1), unmap(32 * KiB, 32 * KiB), end(1, 1)]);
    assert.equal(s.gapBytesZeroed, 0);
    assert.equal(s.digest, undefined, 'no digest in the end: none reported');
    assert.deepEqual(log, ['write 0+32768', 'zero 32768+32768', 'flush']);
  });
});

test('a plain LINBIT stream, an incremental one and a full one without a volume size zero nothing outside their records, in any order', async () => {
  for (const b of [begin(), begin({ incremental: true, volumeSizeBytes: SIZE, baseId: 'b' }), begin({ incremental: false })]) {
    await withTarget(async (h, log, path) => {
      const s = await apply(h, [b, data(32 * KiB, 4 * KiB, 1), data(4 * KiB, 4 * KiB, 2), unmap(8 * KiB, 4 * KiB), end(2, 1)]);
      const want = Buffer.alloc(SIZE, FILL);
      want
        .fill(1, 32 * KiB, 36 * KiB)
        .fill(2, 4 * KiB, 8 * KiB)
        .fill(0, 8 * KiB, 12 * KiB);
      assert.ok((await readFile(path)).equals(want), JSON.stringify(b));
      assert.equal(s.gapBytesZeroed, 0);
      assert.deepEqual(log, ['write 32768+4096', 'write 4096+4096', 'zero 8192+4096', 'flush']);
    });
  }
});

test('a resumed full stream zeroes from the resume offset only, and refuses a record below it', async () => {
  await withTarget(async (h, log, path) => {
    const s = await apply(h, [full(), data(20 * KiB, 4 * KiB, 1), end(1, 0)], { resumeFromBytes: 16 * KiB });
    const want = Buffer.alloc(SIZE, FILL);
    want.fill(0, 16 * KiB).fill(1, 20 * KiB, 24 * KiB);
    assert.ok((await readFile(path)).equals(want), 'below the resume offset: untouched');
    assert.equal(s.gapBytesZeroed, 4 * KiB + 40 * KiB);
    assert.deepEqual(log, ['zero 16384+4096', 'write 20480+4096', 'zero 24576+40960', 'flush']);
  });
  await withTarget(async (h, log, path) => {
    const e = await refused(
      apply(h, [full(), data(12 * KiB, 4 * KiB, 1), end(1, 0)], { resumeFromBytes: 16 * KiB }),
      'BAD_STREAM',
      /^data record out of order in a full stream \(record 2, volume offset 12288\): records must come in increasing offset order, and this one starts below 16384; nothing was applied to the target$/,
    );
    assert.deepEqual(e.details, { volumeOffset: 12 * KiB, record: 2, streamPosition: undefined, applied: zeroCounts() });
    assert.ok((await readFile(path)).equals(Buffer.alloc(SIZE, FILL)));
    assert.deepEqual(log, ['flush']);
  });
});

const zeroCounts = () => ({ records: 2, dataRecords: 0, unmapRecords: 0, bytesWritten: 0, bytesDiscarded: 0, gapBytesZeroed: 0 });

test('a full stream refuses records out of order or overlapping, naming record and offset, after what it applied', async () => {
  await withTarget(async (h, log, path) => {
    const e = await refused(
      apply(h, [full(), data(8 * KiB, 4 * KiB, 1), unmap(20 * KiB, 4 * KiB), unmap(22 * KiB, 4 * KiB), end(1, 2)]),
      'BAD_STREAM',
      new RegExp(
        '^unmap record out of order in a full stream \\(record 4, volume offset 22528\\): records must come in increasing offset order, and this one starts below 24576; ' +
          'applied before the error: 1 data records \\(4096 bytes written\\) and 1 unmap records \\(4096 bytes discarded\\); target flushed\\. ' +
          'The target is partly updated: send again to complete it$',
      ),
    );
    assert.equal(e.retryable, false);
    assert.ok(e.cause instanceof ThinshipError && e.cause.code === 'BAD_STREAM');
    assert.deepEqual(e.details, {
      volumeOffset: 22 * KiB,
      record: 4,
      streamPosition: undefined,
      applied: { records: 4, dataRecords: 1, unmapRecords: 1, bytesWritten: 4 * KiB, bytesDiscarded: 4 * KiB, gapBytesZeroed: 8 * KiB + 8 * KiB },
    });
    assert.equal(log.at(-1), 'flush');
    assert.equal((await readFile(path)).subarray(24 * KiB).compare(Buffer.alloc(SIZE - 24 * KiB, FILL)), 0, 'nothing after the refused record');
  });
});

test('the staged note: a failure behind a staging file or undo journal says it was rolled back', async () => {
  await withTarget(async (h) => {
    await refused(
      apply(h, [full(), data(0, 4 * KiB, 1), data(0, 4 * KiB, 1), end(2, 0)], { staged: true }),
      'BAD_STREAM',
      /; applied before the error: 1 data records \(4096 bytes written\) and 0 unmap records \(0 bytes discarded\), to a staging file or behind an undo journal: rolled back, the target holds what it held before$/,
    );
  });
  await withTarget(async (h) => {
    // nothing applied: the same note staged or not
    await refused(apply(h, [full(), data(SIZE, 4 * KiB, 1)], { staged: true }), 'BAD_STREAM', /beyond the target .*; nothing was applied to the target$/);
  });
});

test('bounds: a record ending exactly at the end of the target is applied; one byte more is refused before anything of it is written', async () => {
  await withTarget(async (h, _log, path) => {
    await apply(h, [begin(), data(SIZE - 4 * KiB, 4 * KiB, 1), unmap(0, 4 * KiB), end(1, 1)]);
    const want = Buffer.alloc(SIZE, FILL);
    want.fill(1, SIZE - 4 * KiB).fill(0, 0, 4 * KiB);
    assert.ok((await readFile(path)).equals(want));
  });
  for (const [m, re] of [
    [
      data(SIZE - 4 * KiB, 4 * KiB + 1, 1),
      /^data record beyond the target \(record 2, volume offset 61440, length 4097\): target .*t\.img is 65536 bytes; nothing was applied/,
    ],
    [unmap(SIZE - 4 * KiB, 4 * KiB + 1), /^unmap record beyond the target \(record 2, volume offset 61440, length 4097\): target .*t\.img is 65536 bytes/],
    [unmap(SIZE, 0), /^unmap record beyond the target \(record 2, volume offset 65536, length 0\)/],
  ] as const) {
    await withTarget(async (h, log, path) => {
      const e = await refused(apply(h, [begin(), m, end(1, 0)]), 'BAD_STREAM', re);
      assert.equal(e.details.record, 2);
      assert.equal(e.details.volumeOffset, m.offsetBytes);
      assert.deepEqual(log, ['flush']);
      assert.ok((await readFile(path)).equals(Buffer.alloc(SIZE, FILL)));
      assert.equal((await stat(path)).size, SIZE);
    });
  }
});

test('begin: its info goes to onBegin before the size check; a volume bigger than the target is refused, one of exactly its size is not', async () => {
  await withTarget(async (h, log) => {
    const seen: BeginInfo[] = [];
    const e = await refused(
      apply(h, [full({ volumeSizeBytes: SIZE + 1 }), data(0, 4 * KiB, 1), end(1, 0)], { onBegin: async (i) => void seen.push(i) }),
      'TARGET_TOO_SMALL',
      /^the stream is for a volume of 65537 bytes but target .*t\.img has only 65536 bytes; nothing was written; nothing was applied to the target$/,
    );
    assert.deepEqual(seen, [{ incremental: false, volumeSizeBytes: SIZE + 1 }]);
    assert.deepEqual(e.details.applied, { ...zeroCounts(), records: 1 });
    assert.deepEqual(log, ['flush']);
  });
  await withTarget(async (h) => {
    const s = await apply(h, [begin({ volumeSizeBytes: SIZE }), end(0, 0)]);
    assert.equal(s.records, 2);
  });
  await withTarget(async (h, log) => {
    // onBegin's refusal (an identity or size check) stops everything, with its own code
    await refused(
      apply(h, [full(), data(0, 4 * KiB, 1), end(1, 0)], {
        onBegin: async () => {
          throw new ThinshipError('PERMISSION_DENIED', 'not this one', { retryable: true });
        },
      }),
      'PERMISSION_DENIED',
      /^not this one; nothing was applied to the target$/,
    );
    assert.deepEqual(log, ['flush']);
  });
});

test('stream structure: records before begin, a second begin, records after end, an empty stream and a missing end are refused', async () => {
  const cases: [StreamMessage[], RegExp][] = [
    [[data(0, 4 * KiB, 1), end(1, 0)], /^record 1 \(data\) comes before the begin of the stream; nothing was applied/],
    [[end(0, 0)], /^record 1 \(end\) comes before the begin of the stream/],
    [[begin(), begin()], /^record 2: a second begin; nothing was applied/],
    [[begin(), end(0, 0), unmap(0, 4 * KiB)], /^record 3 \(unmap\) follows the end of the stream; nothing was applied/],
    [[begin(), end(0, 0), end(0, 0)], /^record 3 \(end\) follows the end of the stream/],
    [[], /^empty stream: no records at all \(nothing was written\); nothing was applied/],
    [[begin(), data(0, 4 * KiB, 1)], /^the stream ended without its end record after 2 records; applied before the error: 1 data records/],
  ];
  for (const [msgs, re] of cases) {
    await withTarget(async (h, log) => {
      await refused(apply(h, msgs), 'BAD_STREAM', re);
      assert.equal(log.at(-1), 'flush');
    });
  }
});

test('an I/O error from the target keeps its code and retryable flag, and the target is still flushed', async () => {
  await withTarget(async (h, log) => {
    h.writeAt = async () => {
      throw Object.assign(new Error('write failed'), { code: 'EAGAIN' });
    };
    const e = await refused(apply(h, [begin(), data(0, 4 * KiB, 1), end(1, 0)]), 'IO_ERROR', /^write failed; nothing was applied to the target$/);
    assert.equal(e.retryable, true);
    assert.equal(e.details.errno, 'EAGAIN');
    assert.deepEqual(log, ['flush']);
  });
});

test('a record in pieces in a full stream: one range for order and gaps, each piece written and counted in bytes and progress', async () => {
  await withTarget(async (h, log, path) => {
    const p = (at: number, bytes: number, fill: number): StreamMessage => ({
      type: 'data',
      offsetBytes: 8 * KiB + at,
      data: Buffer.alloc(bytes, fill),
      piece: { recordOffsetBytes: 8 * KiB, recordLengthBytes: 12 * KiB, last: at + bytes === 12 * KiB },
    });
    const progress: number[] = [];
    const s = await apply(h, [full(), p(0, 4 * KiB, 1), p(4 * KiB, 8 * KiB, 2), unmap(20 * KiB, 4 * KiB), end(1, 1)], {
      onProgress: (x) => progress.push(x.bytesWritten),
    });
    assert.deepEqual([s.records, s.dataRecords, s.bytesWritten, s.gapBytesZeroed], [4, 1, 12 * KiB, 8 * KiB + 40 * KiB]);
    assert.deepEqual(progress, [4 * KiB, 12 * KiB, 12 * KiB]);
    assert.deepEqual(log, ['zero 0+8192', 'write 8192+4096', 'write 12288+8192', 'zero 20480+4096', 'zero 24576+40960', 'flush']);
    const want = Buffer.alloc(SIZE);
    want.fill(1, 8 * KiB, 12 * KiB).fill(2, 12 * KiB, 20 * KiB);
    assert.ok((await readFile(path)).equals(want));
  });
});

test('pieces: a first piece longer than its record, marked last too early or not last at the end, and a piece past its record are refused', async () => {
  const p = (offsetBytes: number, bytes: number, recordOffsetBytes: number, recordLengthBytes: number, last: boolean): StreamMessage => ({
    type: 'data',
    offsetBytes,
    data: Buffer.alloc(bytes, 3),
    piece: { recordOffsetBytes, recordLengthBytes, last },
  });
  const first = /^record 2: the first piece of a DATA record \[0, \+8192\) must start at its offset and be marked last only if it is the whole record/;
  const cases: [StreamMessage[], RegExp][] = [
    [
      [begin(), p(0, 12 * KiB, 0, 8 * KiB, true)],
      /^record 2: the first piece of a DATA record \[0, \+8192\) must .*; got 12288 bytes at 0, marked last; nothing was applied/,
    ],
    [[begin(), p(0, 4 * KiB, 0, 8 * KiB, true)], first],
    [[begin(), p(0, 8 * KiB, 0, 8 * KiB, false)], /^record 2: the first piece .*; got 8192 bytes at 0; nothing/],
    [
      [begin(), p(0, 4 * KiB, 0, 8 * KiB, false), p(4 * KiB, 8 * KiB, 0, 8 * KiB, true)],
      /^record 2: a piece of the DATA record ending at 8192 was expected at volume offset 4096, got data at 4096 \(8192 bytes\)/,
    ],
    [
      [begin(), p(0, 4 * KiB, 0, 8 * KiB, false), p(4 * KiB, 2 * KiB, 0, 8 * KiB, true)],
      /^record 2: a piece of the DATA record ending at 8192 was expected at volume offset 4096, got data at 4096 \(2048 bytes\)/,
    ],
    [
      [begin(), p(0, 4 * KiB, 0, 8 * KiB, false), p(4 * KiB, 4 * KiB, 0, 8 * KiB, false)],
      /^record 2: a piece of the DATA record ending at 8192 was expected at volume offset 4096, got data at 4096 \(4096 bytes\)/,
    ],
    // each rule alone: a first piece elsewhere than its record's offset, a first piece longer than its record
    [[begin(), p(4 * KiB, 4 * KiB, 0, 8 * KiB, false)], /^record 2: the first piece .*; got 4096 bytes at 4096; nothing/],
    [[begin(), p(0, 12 * KiB, 0, 8 * KiB, false)], /^record 2: the first piece .*; got 12288 bytes at 0; nothing/],
    // a later piece running past its record (not marked last)
    [
      [begin(), p(0, 4 * KiB, 0, 8 * KiB, false), p(4 * KiB, 8 * KiB, 0, 8 * KiB, false)],
      /^record 2: a piece of the DATA record ending at 8192 was expected at volume offset 4096, got data at 4096 \(8192 bytes\); applied/,
    ],
    [
      [begin(), p(0, 4 * KiB, 0, 8 * KiB, false), unmap(4 * KiB, 4 * KiB)],
      /^record 2: a piece of the DATA record ending at 8192 was expected at volume offset 4096, got unmap; applied/,
    ],
    [
      [begin(), p(0, 4 * KiB, 0, 8 * KiB, false), data(4 * KiB, 4 * KiB, 1)],
      /^record 2: a piece of the DATA record ending at 8192 was expected at volume offset 4096, got data at 4096 \(4096 bytes\)/,
    ],
  ];
  for (const [msgs, re] of cases) {
    await withTarget(async (h) => {
      await refused(apply(h, [...msgs, end(1, 0)]), 'BAD_STREAM', re);
    });
  }
});

test('a whole record as one piece marked last is applied like a record not in pieces', async () => {
  await withTarget(async (h, log) => {
    const s = await apply(h, [
      begin(),
      { type: 'data', offsetBytes: 0, data: Buffer.alloc(8 * KiB, 4), piece: { recordOffsetBytes: 0, recordLengthBytes: 8 * KiB, last: true } },
      unmap(8 * KiB, 4 * KiB),
      end(1, 1),
    ]);
    assert.deepEqual([s.records, s.dataRecords, s.unmapRecords, s.bytesWritten], [4, 1, 1, 8 * KiB]);
    assert.deepEqual(log, ['write 0+8192', 'zero 8192+4096', 'flush']);
  });
});

test('a message that carries its stream position (a LINBIT decoder may) is named by it too', async () => {
  await withTarget(async (h) => {
    const m = { ...data(SIZE, 4 * KiB, 1), streamPosition: 1234 };
    const e = await refused(
      apply(h, [begin(), m, end(1, 0)]),
      'BAD_STREAM',
      /^data record beyond the target \(stream byte 1234, record 2, volume offset 65536, length 4096\)/,
    );
    assert.equal(e.details.streamPosition, 1234);
  });
});
