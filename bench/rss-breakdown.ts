/**
 * `npm run bench:rss`: where the gRPC sender's peak RSS goes (issue 14 asks
 * for `send --to` ≤ 128 MiB). Not part of `npm test`.
 *
 *   node dist/bench/rss-breakdown.js [--size 1G] [--reps 3] [--work DIR] [--app DIR] [--interval-ms 50] [--json FILE]
 *
 * It runs the build in --app (default: this one) in place; `--no-snapshot`
 * is accepted for the other bench scripts' sake and changes nothing.
 *
 * Each repetition is one full send of a bench pool (bench/pool-gen.ts, cached
 * in --work, as `npm run bench` makes it) to a fresh `thinship serve` over
 * mTLS on loopback, the same command line as the bench's gRPC row. While the
 * sender runs, its /proc/PID/status is read every --interval-ms; whenever its
 * RSS reaches a new high, /proc/PID/smaps is read and the resident pages are
 * grouped by what holds them:
 *   node binary    file pages of the node executable (its code and read-only data)
 *   other files    shared libraries, native addons
 *   malloc [heap]  the main thread's malloc arena (brk): ArrayBuffers, OpenSSL, nghttp2
 *   V8 pages       anonymous mappings of exactly 256 KiB: V8's regular heap pages, all isolates
 *                  (a heuristic: a malloc'd block of that size would count here too)
 *   other anon     other threads' malloc arenas, large mmap'd buffers, V8 large objects, stacks
 * The peak itself is GNU time's (ru_maxrss, the kernel's high-water mark); the
 * breakdown is of the highest sample, which can miss the peak by what changed
 * between two samples (and the two are counted a little differently).
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs as parseCommandLine } from 'node:util';
import { fileURLToPath } from 'node:url';
import { runTool } from '../src/exec/run.js';
import { DEFAULT_POOL_PARAMS, ensureBenchPool } from './pool-gen.js';
import { freePort, readTimed, startBenchDaemon, timedArgv } from './proc.js';
import { spread, fmtSpread, textTable } from './stats.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MiB = 2 ** 20;
/** V8's regular page size (MemoryChunk), the size of every non-large heap page of every isolate. */
const V8_PAGE_BYTES = 256 * 1024;
/** Of each child's stderr, what an error message quotes at most. */
const STDERR_KEPT_CHARS = 64 * 1024;

const GROUPS = ['node binary', 'other files', 'malloc [heap]', 'V8 pages', 'other anon'] as const;
type Group = (typeof GROUPS)[number];
type Breakdown = Record<Group, number>; // bytes

interface Options {
  sizeBytes: number;
  reps: number;
  work: string;
  app: string;
  intervalMs: number;
  json?: string;
}

// node:util's parser (strict: an unknown option or a missing value is an error naming it).
function parseArgs(argv: string[]): Options {
  const { values: v } = parseCommandLine({
    args: argv,
    options: {
      size: { type: 'string', default: '1G' },
      reps: { type: 'string', default: '3' },
      work: { type: 'string', default: '/var/tmp/thinship-bench' },
      app: { type: 'string', default: REPO_ROOT },
      'interval-ms': { type: 'string', default: '50' },
      json: { type: 'string' },
      'no-snapshot': { type: 'boolean' },
    },
  });
  const m = /^(\d+)([MG])$/i.exec(v.size);
  if (!m) throw new Error('--size: e.g. 512M or 1G');
  const o: Options = {
    sizeBytes: Number(m[1]) * (m[2]!.toUpperCase() === 'G' ? 2 ** 30 : MiB),
    reps: Number(v.reps),
    work: resolve(v.work),
    app: resolve(v.app),
    intervalMs: Number(v['interval-ms']),
    json: v.json === undefined ? undefined : resolve(v.json),
  };
  if (!Number.isInteger(o.reps) || o.reps < 1) throw new Error('--reps must be a positive integer');
  if (!(o.intervalMs >= 10)) throw new Error('--interval-ms must be at least 10');
  if (o.sizeBytes < 64 * MiB || o.sizeBytes % (64 * 1024) !== 0) throw new Error('--size: a multiple of 64 KiB, at least 64M');
  return o;
}

/** The resident bytes of one /proc/PID/smaps text, grouped as the header comment says. */
export function classifySmaps(smaps: string, nodeBinary: string): Breakdown {
  const out: Breakdown = { 'node binary': 0, 'other files': 0, 'malloc [heap]': 0, 'V8 pages': 0, 'other anon': 0 };
  let group: Group = 'other anon';
  for (const line of smaps.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[3]!.trim();
      const bytes = parseInt(head[2]!, 16) - parseInt(head[1]!, 16);
      if (name === nodeBinary) group = 'node binary';
      else if (name.startsWith('/')) group = 'other files';
      else if (name === '[heap]') group = 'malloc [heap]';
      else if (name === '' && bytes === V8_PAGE_BYTES) group = 'V8 pages';
      else group = 'other anon';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) out[group] += Number(rss[1]) * 1024;
  }
  return out;
}

async function childPid(parent: number): Promise<number | undefined> {
  const text = await readFile(`/proc/${parent}/task/${parent}/children`, 'utf8').catch(() => '');
  const pid = Number(text.trim().split(/\s+/)[0]);
  return pid > 0 ? pid : undefined;
}

interface RepResult {
  peakRssBytes: number;
  sampledPeakBytes: number;
  breakdown: Breakdown;
  wallS: number;
  cpuS: number;
}

async function oneSend(o: Options, pool: Awaited<ReturnType<typeof ensureBenchPool>>, certs: string, dir: string, rep: number): Promise<RepResult> {
  const main = join(o.app, 'dist/bin/thinship.js');
  const nodeBinary = await realpath(process.execPath);
  const port = await freePort();
  const state = join(dir, `state-${rep}`);
  const targets = join(dir, 'targets');
  await mkdir(targets, { recursive: true });
  const target = join(targets, `t-${rep}`);
  const config = join(dir, `receiver-${rep}.json`);
  await writeFile(
    config,
    JSON.stringify({
      tls: { ca: join(certs, 'ca.crt'), cert: join(certs, 'server.crt'), key: join(certs, 'server.key') },
      stateDir: state,
      identities: { 'thinship-sender': { directories: [targets] } },
    }),
  );
  const serve = await startBenchDaemon([process.execPath, main, 'serve', '--listen', `127.0.0.1:${port}`, '--config', config], port, 'thinship serve');
  try {
    const timeFile = join(dir, `send-${rep}.time`);
    const sendArgs = [
      ...['send', '--pool-metadata', pool.metadataPath, '--pool-data', pool.dataPath, '--volume-size', String(pool.params.volumeBytes), String(pool.devA)],
      ...['--to', `127.0.0.1:${port}`, '--target', target, '--tls-dir', certs, '--server-name', 'localhost', '--transfer-id', `rss-${rep}-${Date.now()}`, '-q'],
    ];
    const t0 = performance.now();
    const [timeCmd, ...timeArgs] = timedArgv(timeFile, [process.execPath, main, ...sendArgs]);
    const time = spawn(timeCmd!, timeArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
    let sendErr = '';
    time.stderr.on('data', (b: Buffer) => {
      if (sendErr.length < STDERR_KEPT_CHARS) sendErr += b.toString();
    });
    let running = true;
    const exited = new Promise<void>((r) => time.on('exit', () => r()));
    void exited.then(() => (running = false));
    let best = 0;
    let breakdown: Breakdown | undefined;
    let pid: number | undefined;
    while (running) {
      pid ??= await childPid(time.pid!);
      if (pid !== undefined) {
        const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
        const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
        if (rss > best) {
          const smaps = await readFile(`/proc/${pid}/smaps`, 'utf8').catch(() => undefined);
          if (smaps !== undefined) {
            best = rss;
            breakdown = classifySmaps(smaps, nodeBinary);
          }
        }
      }
      await Promise.race([exited, new Promise((r) => setTimeout(r, o.intervalMs))]);
    }
    const wallS = (performance.now() - t0) / 1000;
    const usage = await readTimed(timeFile, 'thinship send --to', 'sender');
    if (usage.exitCode !== 0) throw new Error(`thinship send --to exited ${usage.exitCode}: ${sendErr.trim()}`);
    if (!breakdown) throw new Error('the sender ended before a sample of its memory was taken');
    return { peakRssBytes: usage.maxRssKiB * 1024, sampledPeakBytes: best, breakdown, wallS, cpuS: usage.userS + usage.sysS };
  } finally {
    await serve.stop();
    await rm(target, { force: true });
    await rm(state, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  await mkdir(o.work, { recursive: true });
  const pool = await ensureBenchPool(o.work, { ...DEFAULT_POOL_PARAMS, volumeBytes: o.sizeBytes }, (s) => process.stderr.write(`${s}\n`));
  const certs = join(o.work, 'certs');
  if (
    !(await readFile(join(certs, 'client.crt')).then(
      () => true,
      () => false,
    ))
  )
    await runTool(process.execPath, [join(o.app, 'dist/bin/thinship.js'), 'certs', '--out', certs]);
  const dir = await mkdtemp(join(o.work, 'rss-'));
  const reps: RepResult[] = [];
  try {
    for (let rep = 1; rep <= o.reps; rep++) {
      const r = await oneSend(o, pool, certs, dir, rep);
      reps.push(r);
      const parts = GROUPS.map((g) => `${g} ${(r.breakdown[g] / MiB).toFixed(1)}`).join(', ');
      process.stderr.write(
        `rep ${rep}: peak ${(r.peakRssBytes / MiB).toFixed(1)} MiB (sampled ${(r.sampledPeakBytes / MiB).toFixed(1)}: ${parts}), ${r.wallS.toFixed(1)} s, CPU ${r.cpuS.toFixed(1)} s\n`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const mib = (xs: number[]) => fmtSpread(spread(xs.map((x) => x / MiB)), 1);
  const rows = [
    ['peak RSS (GNU time)', mib(reps.map((r) => r.peakRssBytes))],
    ['highest sample', mib(reps.map((r) => r.sampledPeakBytes))],
    ...GROUPS.map((g) => [`  ${g}`, mib(reps.map((r) => r.breakdown[g]))]),
  ];
  process.stdout.write(
    `thinship send --to, ${o.sizeBytes / MiB} MiB volume, ${o.reps} repetitions (median (min–max), MiB), build ${o.app}\n` +
      textTable(['what', 'MiB'], rows) +
      '\n',
  );
  if (o.json) await writeFile(o.json, JSON.stringify({ command: process.argv.slice(1).join(' '), options: o, runs: reps }, null, 2));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e: unknown) => {
    process.stderr.write(`rss-breakdown: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
