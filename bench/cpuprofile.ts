/**
 * Where the time goes in a V8 .cpuprofile (node --cpu-prof): self time by
 * function and by area (thinship layer, library, Node internals, GC, idle).
 *
 *   node dist/bench/cpuprofile.js FILE.cpuprofile... [--top 20]
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Sampled time not idle (program + GC + JS + native). */
  busyMs: number;
  byArea: Array<{ area: string; ms: number; pct: number }>;
  topFunctions: Array<{ fn: string; where: string; area: string; ms: number; pct: number }>;
}

/** Coarse owner of a frame: which layer of thinship, which library, or which part of Node. */
export function areaOf(url: string, fn: string): string {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'native/program';
  if (url === '') return fn === '' ? 'native/program' : `native: ${fn}`;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  const own = /\/dist\/src\/([^/]+)\//.exec(url);
  if (own) return `thinship ${own[1]}/`;
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([^/]+)/.exec(url);
    return `node:${m?.[1] ?? url}`;
  }
  return basename(url);
}

export async function summarizeProfile(file: string, top = 15): Promise<ProfileSummary> {
  const p = JSON.parse(await readFile(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time since the previous sample: attribute it to sample i.
  for (let i = 0; i < p.samples.length; i++) selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const fns = new Map<string, { fn: string; where: string; area: string; us: number }>();
  const areas = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    const fn = functionName || '(anonymous)';
    const area = areaOf(url, functionName);
    total += us;
    if (area === 'idle') idle += us;
    areas.set(area, (areas.get(area) ?? 0) + us);
    const where = url ? `${url.replace(/^file:\/\/.*\/dist\//, '')}:${lineNumber + 1}` : '';
    const key = `${fn}@${where}`;
    const e = fns.get(key) ?? { fn, where, area, us: 0 };
    e.us += us;
    fns.set(key, e);
  }
  const busy = total - idle;
  const pct = (us: number) => (busy > 0 ? (100 * us) / busy : 0);
  return {
    file,
    totalMs: total / 1000,
    busyMs: busy / 1000,
    byArea: [...areas]
      .filter(([a]) => a !== 'idle')
      .sort((a, b) => b[1] - a[1])
      .map(([area, us]) => ({ area, ms: us / 1000, pct: pct(us) })),
    topFunctions: [...fns.values()]
      .filter((f) => f.area !== 'idle')
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ fn: f.fn, where: f.where, area: f.area, ms: f.us / 1000, pct: pct(f.us) })),
  };
}

export function formatProfile(s: ProfileSummary, label: string, areas = 8, fns = 12): string {
  const out = [`${label}: ${(s.busyMs / 1000).toFixed(2)} s busy of ${(s.totalMs / 1000).toFixed(2)} s sampled (${basename(s.file)})`];
  out.push(
    '  by area (% of busy): ' +
      s.byArea
        .slice(0, areas)
        .map((a) => `${a.area} ${a.pct.toFixed(0)}%`)
        .join(', '),
  );
  for (const f of s.topFunctions.slice(0, fns)) out.push(`  ${f.pct.toFixed(1).padStart(5)}%  ${f.fn}  ${f.where}`);
  return out.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const ti = args.indexOf('--top');
  const top = ti >= 0 ? Number(args.splice(ti, 2)[1]) : 20;
  for (const f of args) process.stdout.write(formatProfile(await summarizeProfile(f, top), basename(f), 12, top) + '\n\n');
}
