/**
 * How closely `send --bwlimit` holds its rate, measured where the bytes arrive
 * (a reader of the sender's stdout). For each limit: the mean rate over the
 * whole transfer (first burst excluded) as a ratio of the limit, and the most
 * bytes seen in any 1-second window as a ratio of one second at the limit.
 * Target (issue: operations): steady within ±5 % over ≥ 10 s, no burst beyond
 * one chunk.
 *
 * Then the receiver's per-identity maxBytesPerSecond: a receiver and a gRPC
 * sender in this process (loopback, plaintext, identity "anonymous" limited),
 * the bytes measured as they arrive at the receiver (its wire-bytes counter,
 * sampled every 50 ms on its metrics listener), the same two ratios.
 *
 *   npm run build && node dist/bench/bwlimit-bench.js [--limits 8M,20M] [--reps 3] [--size-mib 256] [--receiver-limits 8M] [--receiver-size-mib 128]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { createFlatPool, type FlatPool } from '../test/helpers/flat-pool.js';
import { parseReceiverConfig } from '../src/rpc/server-config.js';
import { startReceiver } from '../src/rpc/server.js';
import { ReceiverClient, sendPlanOverGrpc } from '../src/rpc/client.js';
import { planSend } from '../src/thin/planner.js';
import { openSourceReader } from '../src/sender/volume-reader.js';

const MiB = 1024 * 1024;
const cli = fileURLToPath(new URL('../bin/thinship.js', import.meta.url));
const { values } = parseArgs({
  options: {
    limits: { type: 'string', default: '8M,20M' },
    reps: { type: 'string', default: '3' },
    'size-mib': { type: 'string', default: '256' },
    'receiver-limits': { type: 'string', default: '8M' },
    'receiver-size-mib': { type: 'string', default: '128' },
  },
});

/** One transfer to an in-process receiver whose identity is limited to rateBps; [ms, wire bytes received] samples. */
async function receiverRunOnce(pool: FlatPool, rateBps: number, work: string, run: string): Promise<[number, number][]> {
  // A directory of its own per run: a second send of the same plan to the same target would be "already complete".
  const targets = join(work, `t-${run}`);
  mkdirSync(targets, { recursive: true });
  const config = await parseReceiverConfig(
    {
      stateDir: join(work, `state-${run}`),
      metricsListen: '127.0.0.1:0',
      identities: { anonymous: { directories: [targets], maxBytesPerSecond: rateBps } },
    },
    join(work, 'rx.json'),
  );
  const rx = await startReceiver({ listen: '127.0.0.1:0', config, insecure: true, log: pino({ level: 'silent' }) });
  const client = await ReceiverClient.connect({ address: `127.0.0.1:${rx.port}`, insecure: true });
  const samples: [number, number][] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const text = await (await fetch(`http://127.0.0.1:${rx.metricsPort}/metrics`)).text();
      samples.push([performance.now(), Number(/^thinship_receiver_wire_bytes_total (\S+)$/m.exec(text)?.[1] ?? 0)]);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    const p = await planSend(
      { kind: 'offline', metadataPath: pool.metadataPath, dataPath: pool.dataPath, snapDevId: pool.devId, volumeSizeBytes: pool.volumeSizeBytes },
      { withMappings: true },
    );
    try {
      const reader = await openSourceReader(p);
      try {
        await sendPlanOverGrpc(client, p, reader, { target: join(targets, 'v.img'), compress: false });
      } finally {
        await reader.close();
      }
    } finally {
      await p.close();
    }
  } finally {
    sampling = false;
    await sampler;
    client.close();
    await rx.close();
  }
  return samples;
}

/**
 * Mean rate after the first arrival, and the most bytes between two samples at
 * most 1 s apart (a window of up to 1 s, so a late sample never stretches it), as ratios of the limit.
 */
function ratios(a: [number, number][], rateBps: number): { seconds: number; mean: number; peak: number } {
  const first = a.findIndex(([, b]) => b > 0);
  const last = a.findIndex(([, b]) => b === a.at(-1)![1]);
  const [t0, b0] = a[first]!;
  const [t1, b1] = a[last]!;
  let peak = 0;
  let j = 0;
  for (let i = 0; i < a.length; i++) {
    while (a[i]![0] - a[j]![0] > 1000) j++;
    peak = Math.max(peak, a[i]![1] - a[j]![1]);
  }
  return { seconds: (t1 - t0) / 1000, mean: ((b1 - b0) * 1000) / (t1 - t0) / rateBps, peak: peak / rateBps };
}

function runOnce(args: string[]): Promise<[number, number][]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    const arrivals: [number, number][] = [];
    let bytes = 0;
    child.stdout.on('data', (d: Buffer) => {
      bytes += d.length;
      arrivals.push([performance.now(), bytes]);
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(arrivals) : reject(new Error(`send exited ${code}`))));
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

const dir = mkdtempSync(join(tmpdir(), 'thinship-bwbench-'));
try {
  const sizeBytes = Number(values['size-mib']) * MiB;
  const pool = createFlatPool(dir, sizeBytes);
  const base = ['send', '-q', '--pool-metadata', pool.metadataPath, '--pool-data', pool.dataPath, '--volume-size', String(sizeBytes), String(pool.devId)];
  console.log(`volume ${values['size-mib']} MiB, incompressible, pipe mode to a reader of stdout; ${values.reps} repetitions per limit`);
  console.log('limit      seconds   mean rate / limit   max 1 s window / limit');
  for (const limit of values.limits.split(',').filter(Boolean)) {
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
    console.log(
      `${limit.padEnd(10)} ${median(secs).toFixed(1).padStart(7)}   ${median(means).toFixed(3)} (${Math.min(...means).toFixed(3)}–${Math.max(...means).toFixed(3)})   ${median(peaks).toFixed(3)} (${Math.min(...peaks).toFixed(3)}–${Math.max(...peaks).toFixed(3)})`,
    );
  }
  if (values['receiver-limits'] !== '') {
    const rxBytes = Number(values['receiver-size-mib']) * MiB;
    const rxDir = join(dir, 'rx');
    mkdirSync(rxDir);
    const rxPool = createFlatPool(rxDir, rxBytes);
    console.log(
      `\nreceiver maxBytesPerSecond: volume ${values['receiver-size-mib']} MiB, incompressible, sent raw over gRPC on loopback, measured at the receiver`,
    );
    console.log('limit      seconds   mean rate / limit   max 1 s window / limit');
    for (const limit of values['receiver-limits'].split(',').filter(Boolean)) {
      const rateBps = Number(limit.replace(/M$/, '')) * MiB;
      const runs = [];
      for (let rep = 0; rep < Number(values.reps); rep++) runs.push(ratios(await receiverRunOnce(rxPool, rateBps, rxDir, `${limit}-${rep}`), rateBps));
      const means = runs.map((r) => r.mean);
      const peaks = runs.map((r) => r.peak);
      console.log(
        `${(limit + ' rx').padEnd(10)} ${median(runs.map((r) => r.seconds))
          .toFixed(1)
          .padStart(
            7,
          )}   ${median(means).toFixed(3)} (${Math.min(...means).toFixed(3)}–${Math.max(...means).toFixed(3)})   ${median(peaks).toFixed(3)} (${Math.min(...peaks).toFixed(3)}–${Math.max(...peaks).toFixed(3)})`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
