/**
 * The benchmark scripts still run (their numbers are not judged here: speed
 * is never asserted in a test). The between-sites benchmark had started the
 * relay's library module instead of its command line for several sessions, so
 * every repetition failed and nothing noticed; each script now runs once per
 * CI at the smallest size, and every repetition must succeed with a verified
 * target.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';

/**
 * Runs a benchmark script with `args` plus its own work directory, --no-snapshot and --json,
 * checks it exited 0, and returns the runs of its results file (its `runs` array).
 */
async function runBench<R>(script: string, args: string[]): Promise<{ runs: R[]; out: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-smoke-'));
  try {
    const json = join(dir, 'results.json');
    const child = spawn(process.execPath, [join(repoRoot, script), ...args, '--no-snapshot', '--work', dir, '--json', json], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, out);
    return { runs: (JSON.parse(await readFile(json, 'utf8')) as { runs: R[] }).runs, out };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('wan-bench: gRPC and the socat pipeline through the delay relay, one repetition at 0 and 20 ms, every target verified', { timeout: 600_000 }, async () => {
  const { runs, out } = await runBench<{ path: string; rttMs: number; ok: boolean; verified?: boolean; error?: string }>('dist/bench/wan/wan-bench.js', [
    '--size',
    '64M',
    '--rtts',
    '0,20',
    '--reps',
    '1',
    '--verify',
    'all',
    '--run-timeout',
    '90',
  ]);
  assert.equal(runs.length, 4, out);
  for (const x of runs) {
    assert.ok(x.ok, `${x.path} at ${x.rttMs} ms: ${x.error ?? 'failed'}`);
    assert.equal(x.verified, true, `${x.path} at ${x.rttMs} ms: the target differs from the source image`);
  }
  assert.deepEqual(new Set(runs.map((x) => x.path)), new Set(['grpc', 'socat']));
});

test(
  'bench: every transfer path and the C reference rows, full and incremental, one repetition at 64 MiB, every target verified',
  { timeout: 600_000 },
  async () => {
    const { runs } = await runBench<{ kind: string; transport: string; ok: boolean; error?: string }>('dist/bench/bench.js', [
      '--sizes',
      '64M',
      '--reps',
      '1',
      '--only',
      'socat,grpc,daemon,pipe,dd,czstd,incr',
      '--verify',
      'all',
    ]);
    const seen = new Set(runs.map((x) => `${x.kind} ${x.transport}`));
    for (const want of ['full socat', 'full grpc', 'full daemon', 'full pipe', 'incr grpc', 'incr pipe'])
      assert.ok(seen.has(want), `${want} not run: ${[...seen].join(', ')}`);
    for (const x of runs) assert.ok(x.ok, `${x.kind} ${x.transport}: ${x.error ?? 'failed'}`);
  },
);

test('rss-breakdown: one gRPC send at 64 MiB, its peak RSS split into groups that add up to the sampled peak', { timeout: 300_000 }, async () => {
  type Rep = { peakRssBytes: number; sampledPeakBytes: number; breakdown: Record<string, number>; cpuS: number };
  const { runs, out } = await runBench<Rep>('dist/bench/rss-breakdown.js', ['--size', '64M', '--reps', '1', '--interval-ms', '20']);
  assert.equal(runs.length, 1, out);
  const r = runs[0]!;
  const sum = Object.values(r.breakdown).reduce((a, b) => a + b, 0);
  // GNU time's peak (the kernel's hiwater mark) and a sampled VmRSS are counted a little differently: within 1 MiB.
  assert.ok(
    r.sampledPeakBytes > 0 && r.sampledPeakBytes <= r.peakRssBytes + 2 ** 20,
    `sampled ${r.sampledPeakBytes} against the peak ${r.peakRssBytes}: ${out}`,
  );
  // smaps and status are read one after the other, so the two can differ by what changed in between.
  assert.ok(Math.abs(sum - r.sampledPeakBytes) < 0.15 * r.sampledPeakBytes, `groups add up to ${sum}, the sample was ${r.sampledPeakBytes}: ${out}`);
  assert.ok(r.breakdown['node binary']! > 8 * 2 ** 20, `node's own file pages: ${r.breakdown['node binary']}: ${out}`);
  assert.ok(r.breakdown['V8 pages']! > 0, out);
  assert.ok(r.cpuS > 0, out);
});
