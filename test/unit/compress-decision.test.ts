/**
 * `--compress auto` (src/sender/compress-decision.ts): the per-chunk decision
 * from the link's and the compressor's measured capacities, driven by hand
 * (rates given as bytes and seconds, LinkMeter on an injected clock; no timers).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompressDecision, HYSTERESIS, LinkMeter, PROBE_EVERY_CHUNKS, RATE_WINDOW_BYTES } from '../../src/sender/compress-decision.js';

const MiB = 1024 * 1024;

/** Feeds one full window of each rate: the compressor at `compressPerWorker` B/s per worker, the link at `link` B/s. */
function feed(d: CompressDecision, compressPerWorker: number, link: number): void {
  d.noteCompressed(RATE_WINDOW_BYTES, RATE_WINDOW_BYTES / compressPerWorker);
  d.noteLink(RATE_WINDOW_BYTES, RATE_WINDOW_BYTES / link);
}

function decide(d: CompressDecision, n: number): boolean[] {
  return Array.from({ length: n }, () => d.next());
}

test('zstd and none do not look at the rates', () => {
  const z = new CompressDecision('zstd', 2);
  const n = new CompressDecision('none', 2);
  for (const d of [z, n]) feed(d, 10 * MiB, 1000 * MiB);
  assert.deepEqual(decide(z, 40), Array(40).fill(true));
  assert.deepEqual(decide(n, 40), Array(40).fill(false));
  assert.deepEqual(n.decided, { compress: 0, raw: 40 });
});

test('auto compresses until both rates are measured, and while the link is slower than the compressor', () => {
  const d = new CompressDecision('auto', 2);
  assert.deepEqual(decide(d, 5), Array(5).fill(true), 'nothing measured: compress');
  const linkOnly = new CompressDecision('auto', 2);
  linkOnly.noteLink(RATE_WINDOW_BYTES, 0.001); // a fast link, but the compressor is not measured yet
  assert.deepEqual(decide(linkOnly, 5), Array(5).fill(true));
  // A 1 Gbit/s link (119 MiB/s) against 2 workers at 300 MiB/s each: compress every chunk.
  feed(d, 300 * MiB, 119 * MiB);
  assert.equal(d.compressorBytesPerSecond, 600 * MiB);
  assert.equal(d.linkBytesPerSecond, 119 * MiB);
  assert.deepEqual(decide(d, 50), Array(50).fill(true));
});

test('auto sends raw when the link is faster than the workers, still compressing one chunk in PROBE_EVERY_CHUNKS, and compresses again when the link slows', () => {
  const d = new CompressDecision('auto', 2);
  // The workers together: 2 x 100 MiB/s; the link takes 1000 MiB/s.
  feed(d, 100 * MiB, 1000 * MiB);
  const raw = decide(d, 4 * PROBE_EVERY_CHUNKS);
  assert.equal(raw.filter((x) => x).length, 4, `one probe in ${PROBE_EVERY_CHUNKS}: ${raw.map(Number).join('')}`);
  assert.equal(raw[PROBE_EVERY_CHUNKS - 1], true);
  assert.equal(raw[0], false);
  // The link slows to 20 MiB/s (a WAN, or a loaded receiver): the average moves over a few windows, then zstd again.
  let windows = 0;
  while (!decide(d, PROBE_EVERY_CHUNKS - 1).every((x) => x)) {
    feed(d, 100 * MiB, 20 * MiB);
    assert.ok(++windows < 20, 'switched back to zstd within 20 windows');
  }
  assert.ok(windows >= 2, `the moving average needs more than one window to cross (took ${windows})`);
  assert.ok(d.linkBytesPerSecond! * HYSTERESIS < d.compressorBytesPerSecond!);
});

test('auto: rates within the hysteresis margin do not flip the choice', () => {
  const d = new CompressDecision('auto', 1);
  feed(d, 100 * MiB, 110 * MiB); // the link 10% faster: less than HYSTERESIS, stays compressing
  assert.deepEqual(decide(d, 20), Array(20).fill(true));
  const e = new CompressDecision('auto', 1);
  feed(e, 100 * MiB, 500 * MiB); // clearly faster: raw
  assert.equal(
    decide(e, 3).some((x) => x),
    false,
  );
  for (let i = 0; i < 30; i++) feed(e, 100 * MiB, 95 * MiB); // now 5% slower: within the margin, stays raw
  const next = decide(e, PROBE_EVERY_CHUNKS);
  assert.equal(next.filter((x) => x).length, 1, `only the probe compresses: ${next.map(Number).join('')}`);
});

test('a rate sample smaller than RATE_WINDOW_BYTES waits for more bytes; bad samples are ignored', () => {
  const d = new CompressDecision('auto', 1);
  d.noteCompressed(RATE_WINDOW_BYTES / 2, 0.001);
  d.noteLink(RATE_WINDOW_BYTES / 2, 0.001);
  assert.equal(d.compressorBytesPerSecond, undefined);
  assert.equal(d.linkBytesPerSecond, undefined);
  d.noteLink(NaN, 1);
  d.noteLink(1, -1);
  d.noteLink(RATE_WINDOW_BYTES / 2, 0.001);
  assert.equal(d.linkBytesPerSecond, RATE_WINDOW_BYTES / 0.002);
});

test('LinkMeter counts the time writes were pending, not the idle gaps between them', () => {
  let now = 1000;
  const samples: Array<[number, number]> = [];
  const m = new LinkMeter(
    (b, s) => samples.push([b, s]),
    () => now,
  );
  m.start(); // busy from 1000
  now = 1010;
  m.start();
  now = 1020;
  m.done(100); // 20 ms since the busy stretch began
  now = 1050;
  m.done(300); // 30 ms more
  now = 5000; // idle for ~4 s: not counted
  m.start();
  now = 5004;
  m.done(40);
  m.done(999); // a done() without a start(): ignored
  assert.deepEqual(samples, [
    [100, 0.02],
    [300, 0.03],
    [40, 0.004],
  ]);
});
