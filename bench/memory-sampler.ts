/**
 * Loaded into `thinship serve` by bench/receiver-memory.ts (NODE_OPTIONS=--import):
 * samples process.memoryUsage() of the main thread every 20 ms and, when the
 * process exits, appends to $THINSHIP_MEMORY_SAMPLES one JSON line with the
 * largest value of each field and all fields at the moment RSS peaked (MiB).
 * Does nothing in worker threads, in other commands, or without that variable.
 */
import { isMainThread } from 'node:worker_threads';
import { appendFileSync } from 'node:fs';

const out = process.env.THINSHIP_MEMORY_SAMPLES;
if (isMainThread && out && process.argv.includes('serve')) {
  const fields = ['rss', 'heapTotal', 'heapUsed', 'external', 'arrayBuffers'] as const;
  const max: Record<string, number> = Object.fromEntries(fields.map((f) => [f, 0]));
  let atRssPeak: NodeJS.MemoryUsage | undefined;
  setInterval(() => {
    const m = process.memoryUsage();
    for (const f of fields) max[f] = Math.max(max[f]!, m[f]);
    if (m.rss >= max.rss!) atRssPeak = m;
  }, 20).unref();
  const mib = (o: object) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round((v as number) / 1048576)]));
  process.on('exit', () => appendFileSync(out, JSON.stringify({ maxMiB: mib(max), atRssPeakMiB: atRssPeak ? mib(atRssPeak) : undefined }) + '\n'));
}
