/**
 * `send --bwlimit` in pipe mode, real processes: the stream read from the
 * sender's stdout never runs ahead of rate × time + one burst (measured where
 * the bytes arrive, so a loaded machine can only make it look slower, never
 * faster), and the bytes are the same as without the limit. How close to the
 * limit it runs is a benchmark's business (bench/bwlimit-bench.ts).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { cliPath, runCli } from '../helpers/cli.js';

const MiB = 1024 * 1024;
let dir: string;
let pool: DemoPool;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-bw-'));
  pool = await createDemoPool(join(dir, 'pool'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const source = () => [
  'send',
  '--pool-metadata',
  pool.metadataPath,
  '--pool-data',
  pool.dataPath,
  '--volume-size',
  String(pool.volumeSizeBytes),
  '-q',
  String(pool.snapDevId),
];

/** Runs a pipe-mode send; returns its stdout and (ms since the first byte, bytes so far) at each arrival. */
function send(extra: string[]): Promise<{ code: number | null; stderr: string; out: Buffer; arrivals: [number, number][] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...source(), ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    const arrivals: [number, number][] = [];
    let t0 = 0;
    let bytes = 0;
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      const now = performance.now();
      if (bytes === 0) t0 = now;
      bytes += d.length;
      chunks.push(d);
      arrivals.push([now - t0, bytes]);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr, out: Buffer.concat(chunks), arrivals }));
  });
}

test('send --bwlimit 16M never runs ahead of 16 MiB/s plus one burst, and sends the same bytes', async () => {
  const free = await send([]);
  assert.equal(free.code, 0, free.stderr);
  const rate = 16 * MiB;
  const limited = await send(['--bwlimit', '16M']);
  assert.equal(limited.code, 0, limited.stderr);
  assert.ok(limited.out.equals(free.out), 'the same stream with and without the limit');
  // One burst (a 1 MiB record and its header) may go at once; the first arrival's own
  // burst is already in t0's bytes.
  const burst = MiB + 4096;
  for (const [ms, bytes] of limited.arrivals) {
    assert.ok(bytes <= (rate * ms) / 1000 + 2 * burst, `${bytes} bytes had arrived ${ms.toFixed(0)} ms after the first: more than 16 MiB/s allows`);
  }
  const [lastMs, total] = limited.arrivals.at(-1)!;
  assert.ok(total > 16 * MiB, `the stream is long enough to show the limit (${total} bytes)`);
  assert.ok(lastMs >= ((total - 2 * burst) * 1000) / rate, `${total} bytes in ${lastMs.toFixed(0)} ms`);
});

test('a --bwlimit that is not a rate is a usage error (exit 2) naming the flag', async () => {
  for (const bad of ['0', 'fast', '-5M', '100']) {
    const r = await runCli([...source(), '--bwlimit', bad]);
    assert.equal(r.code, 2, `--bwlimit ${bad}: ${r.stderr}`);
    assert.match(r.stderr, /--bwlimit/);
  }
});

test('--progress json: send and recv each write JSON lines on stderr, ending with a final line at the total', async () => {
  const target = join(dir, 'progress-target.img');
  const script = `set -o pipefail; "${process.execPath}" "${cliPath}" ${source()
    .map((a) => `'${a}'`)
    .join(' ')} --bwlimit 12M --progress json 2>"${dir}/send.err" | "${process.execPath}" "${cliPath}" recv -q --progress json "${target}" 2>"${dir}/recv.err"`;
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (const side of ['send', 'recv']) {
    const text = readFileSync(join(dir, `${side}.err`), 'utf8');
    const lines = text
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{"progress"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines.length >= 3, `${side}: a line a second over ~2.6 s, and a final one:\n${text}`);
    const last = lines.at(-1)!;
    assert.equal(last.final, true, side);
    assert.equal(last.progress, side);
    assert.ok(typeof last.totalBytes === 'number' && last.totalBytes > 16 * MiB, `${side} knows the total (recv from the stream's begin-info)`);
    assert.equal(last.doneBytes, last.totalBytes, side);
    assert.equal(last.etaSeconds, 0, side);
    const mid = lines[Math.floor(lines.length / 2)]!;
    assert.ok(
      typeof mid.bytesPerSecond === 'number' && mid.bytesPerSecond > 0 && typeof mid.etaSeconds === 'number',
      `${side} mid-transfer: ${JSON.stringify(mid)}`,
    );
  }
});
