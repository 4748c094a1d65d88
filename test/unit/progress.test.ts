/**
 * The progress line and its JSON form on a controlled clock: rate over the last
 * seconds, ETA from what is left, one JSON line a second plus a final one, and
 * a resumed transfer's head start not counted as speed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProgressLine, formatDuration, parseProgressMode } from '../../src/cli/progress.js';
import { ThinshipError } from '../../src/errors.js';

const MiB = 1024 * 1024;

function rig(mode: 'tty' | 'json' | 'auto', isTTY = false) {
  const clock = { t: 0 };
  const written: string[] = [];
  const p = new ProgressLine('send', 100 * MiB, mode, { write: (s: string) => written.push(s), isTTY }, () => clock.t);
  return { clock, written, p };
}

test('json: one line per second with rate and ETA, and a final line at the end', () => {
  const { clock, written, p } = rig('json');
  for (let ms = 0; ms <= 10_000; ms += 100) {
    clock.t = ms;
    p.update((ms / 1000) * 10 * MiB);
  } // 10 MiB/s
  p.finish();
  const lines = written.map((l) => JSON.parse(l) as Record<string, number | null | string | boolean>);
  assert.equal(lines.length, 12, '0 s … 10 s, then the final line');
  const at5 = lines[5]!;
  assert.equal(at5.progress, 'send');
  assert.equal(at5.doneBytes, 50 * MiB);
  assert.equal(at5.totalBytes, 100 * MiB);
  assert.equal(at5.bytesPerSecond, 10 * MiB);
  assert.equal(at5.elapsedSeconds, 5);
  assert.equal(at5.etaSeconds, 5);
  assert.deepEqual(lines.at(-1), {
    progress: 'send',
    doneBytes: 100 * MiB,
    totalBytes: 100 * MiB,
    bytesPerSecond: 10 * MiB,
    elapsedSeconds: 10,
    etaSeconds: 0,
    final: true,
  });
  for (const l of written) assert.ok(l.endsWith('\n') && !l.slice(0, -1).includes('\n'), 'one object per line');
});

test('the rate follows the last seconds: a resumed transfer starting at 60 % is not "fast", a slowdown shows', () => {
  const { clock, p } = rig('json');
  p.update(60 * MiB); // resumed: the first report already stands at 60 %
  for (let ms = 100; ms <= 2000; ms += 100) {
    clock.t = ms;
    p.update(60 * MiB + (ms / 1000) * MiB);
  }
  assert.equal(Math.round(p.figures().bytesPerSecond!), MiB, '1 MiB/s, not 31 MiB/s');
  for (let ms = 2100; ms <= 12_000; ms += 100) {
    clock.t = ms;
    p.update(62 * MiB + ((ms - 2000) / 1000) * (MiB / 4));
  }
  const f = p.figures();
  assert.ok(Math.abs(f.bytesPerSecond! - MiB / 4) < 1, `rate after the slowdown: ${f.bytesPerSecond}`);
  assert.ok(Math.abs(f.etaSeconds! - (100 * MiB - f.doneBytes) / (MiB / 4)) < 0.01);
});

test('tty: a redrawn line with done, total, percent, rate, elapsed and ETA; cleared at the end', () => {
  const { clock, written, p } = rig('tty');
  clock.t = 0;
  p.update(0);
  clock.t = 2000;
  p.update(20 * MiB);
  assert.equal(written.at(-1), '\r\x1b[Ksend: 20.0 MiB of 100 MiB 20.0% 10.0 MiB/s 0:02 elapsed ETA 0:08');
  clock.t = 2100;
  p.update(21 * MiB);
  assert.equal(written.length, 2, 'at most 4 redraws a second');
  p.finish();
  assert.equal(written.at(-1), '\r\x1b[K');
});

test('auto draws only on a terminal', () => {
  const off = rig('auto', false);
  off.p.update(MiB);
  off.p.finish();
  assert.deepEqual(off.written, []);
  const on = rig('auto', true);
  on.p.update(MiB);
  assert.equal(on.written.length, 1);
});

test('durations and modes', () => {
  assert.equal(formatDuration(5), '0:05');
  assert.equal(formatDuration(3725), '1:02:05');
  assert.equal(parseProgressMode(undefined), 'auto');
  assert.throws(
    () => parseProgressMode('loud'),
    (e: unknown) => e instanceof ThinshipError && e.code === 'USAGE' && /--progress must be one of auto, tty, json, none/.test(e.message),
  );
});
