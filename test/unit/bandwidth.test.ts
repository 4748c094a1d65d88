/**
 * The token bucket on a controlled clock: the bytes let through by any time t
 * stay within rate × t + one burst, steady senders get exactly the rate, and
 * idling does not save up more than one burst.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBucket } from '../../src/stream/bandwidth.js';
import { prng } from '../helpers/prng.js';

const MiB = 1024 * 1024;

/** Simulates a sender that sends as soon as the bucket allows; returns [time ms, bytes sent so far] after each chunk. */
function simulate(bucket: TokenBucket, clock: { t: number }, chunks: number[]): [number, number][] {
  const out: [number, number][] = [];
  let sent = 0;
  for (const n of chunks) {
    clock.t += bucket.reserve(n);
    sent += n;
    out.push([clock.t, sent]);
  }
  return out;
}

test('a steady sender gets the rate: 10 MiB/s for 100 chunks of 1 MiB takes 9.9 s after the first burst', () => {
  const clock = { t: 1000 };
  const b = new TokenBucket(10 * MiB, MiB, () => clock.t);
  const trace = simulate(
    b,
    clock,
    Array.from({ length: 100 }, () => MiB),
  );
  const [endMs, bytes] = trace.at(-1)!;
  assert.equal(bytes, 100 * MiB);
  assert.ok(Math.abs(endMs - 1000 - 9900) < 1e-6, `ended at ${endMs - 1000} ms`);
});

test('at no point does a sender get more than rate × elapsed + one burst (random chunk sizes and pauses)', () => {
  const rnd = prng(7);
  for (let round = 0; round < 50; round++) {
    const clock = { t: 0 };
    const rate = (1 + Math.floor(rnd() * 100)) * MiB;
    const burst = (64 + Math.floor(rnd() * 4096)) * 1024;
    const b = new TokenBucket(rate, burst, () => clock.t);
    let sent = 0;
    for (let i = 0; i < 300; i++) {
      if (rnd() < 0.1) clock.t += rnd() * 2000; // the sender idles
      const n = 1 + Math.floor(rnd() * 2 * burst);
      clock.t += b.reserve(n);
      sent += n;
      assert.ok(sent <= (rate * clock.t) / 1000 + burst + 1e-6 * rate, `round ${round} chunk ${i}: ${sent} bytes by ${clock.t} ms at ${rate} B/s`);
    }
  }
});

test('idling saves up one burst, no more', () => {
  const clock = { t: 0 };
  const b = new TokenBucket(MiB, 256 * 1024, () => clock.t);
  clock.t += 60_000; // a minute idle
  assert.equal(b.reserve(256 * 1024), 0, 'one burst goes at once');
  assert.ok(Math.abs(b.reserve(256 * 1024) - 250) < 1e-6, 'the next waits its 250 ms');
});

test('concurrent takers share the rate (reservations are synchronous)', () => {
  const clock = { t: 0 };
  const b = new TokenBucket(4 * MiB, MiB, () => clock.t);
  const waits = [b.reserve(MiB), b.reserve(MiB), b.reserve(MiB)];
  assert.deepEqual(
    waits.map((w) => Math.round(w)),
    [0, 250, 500],
  );
});

test('a rate of zero, negative or not a number is refused', () => {
  for (const r of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => new TokenBucket(r, MiB), RangeError);
});
