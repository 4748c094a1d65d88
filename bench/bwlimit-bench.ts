/**
 * How closely `send --bwlimit` holds its rate, measured where the bytes arrive
 * (a reader of the sender's stdout). For each limit: the mean rate over the
 * whole transfer (first burst excluded) as a ratio of the limit, and the most
 * bytes seen in any 1-second window as a ratio of one second at the limit.
 * Target (issue: operations): steady within ±5 % over ≥ 10 s, no burst beyond
 * one chunk.
 *
 *   npm run build && node dist/bench/bwlimit-bench.js [--limits 8M,20M] [--reps 3] [--size-mib 256]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createFlatPool } from '../test/helpers/flat-pool.js';

const MiB = 1024 * 1024;
const cli = fileURLToPath(new URL('../bin/thinship.js', import.meta.url));
const { values } = parseArgs({ options: { limits: { type: 'string', default: '8M,20M' }, reps: { type: 'string', default: '3' }, 'size-mib': { type: 'string', default: '256' } } });

function runOnce(args: string[]): Promise<[number, number][]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    const arrivals: [number, number][] = [];
    let bytes = 0;
    child.stdout.on('data', (d: Buffer) => { bytes += d.length; arrivals.push([performance.now(), bytes]); });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(arrivals) : reject(new Error(`send exited ${code}`))));
  });
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };

const dir = mkdtempSync(join(tmpdir(), 'thinship-bwbench-'));
try {
  const sizeBytes = Number(values['size-mib']) * MiB;
  const pool = createFlatPool(dir, sizeBytes);
  const base = ['send', '-q', '--pool-metadata', pool.metadataPath, '--pool-data', pool.dataPath, '--volume-size', String(sizeBytes), String(pool.devId)];
  console.log(`volume ${values['size-mib']} MiB, incompressible, pipe mode to a reader of stdout; ${values.reps} repetitions per limit`);
  console.log('limit      seconds   mean rate / limit   max 1 s window / limit');
  for (const limit of values.limits.split(',')) {
    const rateBps = Number(limit.replace(/M$/, '')) * MiB;
    const means: number[] = [];
    const peaks: number[] = [];
    const secs: number[] = [];
    for (let rep = 0; rep < Number(values.reps); rep++) {
      const a = await runOnce([...base, '--bwlimit', limit]);
      const [t0, b0] = a[0]!;
      const [t1, b1] = a.at(-1)!;
      secs.push((t1 - t0) / 1000);
      // The first arrival holds the one burst allowed at once: measure the rate after it.
      means.push(((b1 - b0) * 1000) / (t1 - t0) / rateBps);
      let peak = 0;
      let j = 0;
      for (let i = 0; i < a.length; i++) {
        while (a[i]![0] - a[j]![0] > 1000) j++;
        const prev = j === 0 ? 0 : a[j - 1]![1];
        peak = Math.max(peak, a[i]![1] - prev);
      }
      peaks.push(peak / rateBps);
    }
    console.log(`${limit.padEnd(10)} ${median(secs).toFixed(1).padStart(7)}   ${median(means).toFixed(3)} (${Math.min(...means).toFixed(3)}–${Math.max(...means).toFixed(3)})   ${median(peaks).toFixed(3)} (${Math.min(...peaks).toFixed(3)}–${Math.max(...peaks).toFixed(3)})`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
