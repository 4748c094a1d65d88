/**
 * Between sites (issue 6): a full send of a volume through the delay relay
 * (src/testing/delay-relay.ts) at several round-trip times, gRPC against the
 * classic pipeline, same relay, same run.
 *
 *   node dist/bench/wan/wan-bench.js [--size 1G] [--rtts 0,50,100] [--rate 1gbit] [--reps 3]
 *        [--paths grpc,socat] [--work DIR] [--json FILE] [--receive-window BYTES]
 *        [--connection-window BYTES] [--queue BYTES] [--verify all|first|none] [--no-snapshot]
 *        [--relay-sched fifo|other]
 *
 * Paths, each into a sparse file target through its own relay process:
 *   grpc   `thinship send --to RELAY` → relay → `thinship serve` (mTLS, zstd -1 per 1 MiB chunk)
 *   socat  `thinship send | zstd -1 | socat -u STDIN TCP:RELAY` → relay → `socat -u TCP-LISTEN | zstd -d | thinship recv`
 * The source is the transfer benchmark's offline pool (bench/pool-gen.ts, ~2.1:1
 * under zstd -1, 85% mapped), cached in --work, dropped from the page cache
 * before every run. Repetitions interleave paths and RTTs (the order of the
 * paths alternates), so a ratio compares runs made a few seconds apart under
 * the same load; the ratio reported is the median over repetitions of
 * grpc ÷ socat in the same repetition. Each target is compared with the
 * pool's image sha256 (--verify). CPU of every process (GNU time; the serve
 * daemon and the relay through /proc) and the 1-minute load are recorded.
 * The relay runs under SCHED_FIFO (chrt; --relay-sched other to not): it
 * stands for a link, which does not wait for a CPU when the shared machine is
 * busy. Its own CPU time and its time spent waiting for a CPU are reported.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool } from '../../src/exec/run.js';
import { DEFAULT_POOL_PARAMS, ensureBenchPool, type BenchPool } from '../pool-gen.js';
import { dropCache, freePort, procCpuSeconds, procHwmKiB, readTimed, sha256File, copyBuild, startBash, timed, waitListening, type ProcUsage } from '../proc.js';
import { fmtSpread, spread, textTable } from '../stats.js';
import { REALTIME, startRelayProcess, type RelayProcess } from './relay-proc.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const GiB = 2 ** 30;
const MiB = 2 ** 20;
const PATHS = ['grpc', 'socat'] as const;
type PathName = (typeof PATHS)[number];
const LABEL: Record<PathName, string> = { grpc: 'gRPC mTLS zstd-1', socat: 'zstd -1 + socat' };

interface Options {
  sizeBytes: number;
  rttsMs: number[];
  rate: string;
  reps: number;
  paths: PathName[];
  work: string;
  json: string;
  receiveWindow?: string;
  connectionWindow?: string;
  queue?: string;
  verify: 'all' | 'first' | 'none';
  snapshot: boolean;
  /** Give up on one run after this long (a stuck transfer must not stall the benchmark). */
  runTimeoutS: number;
  /** How the relay is scheduled: real-time FIFO (default: a link does not wait for a CPU) or plain. */
  relaySched: 'fifo' | 'other';
}

function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s.trim());
  if (!m) throw new Error(`bad size "${s}" (examples: 1G, 256M, 33554432)`);
  return Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    sizeBytes: GiB,
    rttsMs: [0, 50, 100],
    rate: '1gbit',
    reps: 3,
    paths: [...PATHS],
    work: '/var/tmp/thinship-wan',
    json: join(REPO_ROOT, 'bench/wan/results/latest.json'),
    verify: 'all',
    snapshot: true,
    runTimeoutS: 600,
    relaySched: 'fifo',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--size') o.sizeBytes = parseSize(v());
    else if (a === '--rtts') o.rttsMs = v().split(',').map(Number);
    else if (a === '--rate') o.rate = v();
    else if (a === '--reps') o.reps = Number(v());
    else if (a === '--paths') {
      const p = v().split(',');
      for (const x of p) if (!(PATHS as readonly string[]).includes(x)) throw new Error(`--paths: unknown path ${x} (known: ${PATHS.join(', ')})`);
      o.paths = p as PathName[];
    } else if (a === '--work') o.work = resolve(v());
    else if (a === '--json') o.json = resolve(v());
    else if (a === '--receive-window') o.receiveWindow = v();
    else if (a === '--connection-window') o.connectionWindow = v();
    else if (a === '--queue') o.queue = v();
    else if (a === '--verify') {
      const x = v();
      if (x !== 'all' && x !== 'first' && x !== 'none') throw new Error('--verify: all, first or none');
      o.verify = x;
    } else if (a === '--no-snapshot') o.snapshot = false;
    else if (a === '--run-timeout') o.runTimeoutS = Number(v());
    else if (a === '--relay-sched') {
      const x = v();
      if (x !== 'fifo' && x !== 'other') throw new Error('--relay-sched: fifo or other');
      o.relaySched = x;
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(`${fileHelp()}\n`);
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  if (!Number.isInteger(o.reps) || o.reps < 1) throw new Error('--reps must be a positive integer');
  if (o.rttsMs.some((r) => !(r >= 0))) throw new Error('--rtts: round-trip times in ms, >= 0');
  return o;
}

function fileHelp(): string {
  return (
    'usage: node dist/bench/wan/wan-bench.js [--size 1G] [--rtts 0,50,100] [--rate 1gbit] [--reps 3] [--paths grpc,socat]\n' +
    '  [--work DIR] [--json FILE] [--receive-window BYTES] [--connection-window BYTES] [--queue BYTES] [--verify all|first|none] [--no-snapshot] [--run-timeout S] [--relay-sched fifo|other]'
  );
}

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

interface App {
  main: string;
  relay: string;
}

/** A private copy of the build, so that others rebuilding dist/ during the run change nothing here. */
async function prepareApp(o: Options): Promise<App> {
  if (!o.snapshot) return { main: join(REPO_ROOT, 'dist/bin/thinship.js'), relay: join(REPO_ROOT, 'dist/src/cli/delay-relay.js') };
  const root = join(o.work, 'app');
  await copyBuild(REPO_ROOT, root);
  return { main: join(root, 'dist/bin/thinship.js'), relay: join(root, 'dist/src/cli/delay-relay.js') };
}

interface Ctx {
  o: Options;
  app: App;
  pool: BenchPool;
  certs: string;
  tmp: string;
  target: string;
  tag: string;
}

interface RunRecord {
  rttMs: number;
  path: PathName;
  rep: number;
  ok: boolean;
  error?: string;
  wallS: number;
  dataBytes: number;
  dataMBps: number;
  /** Bytes through the relay, client → server (compressed stream plus framing). */
  wireBytes?: number;
  procs: ProcUsage[];
  relayCpuS: number;
  /** The relay's main thread, runnable but not running (a starved link emulator delays everything). */
  relayWaitS: number;
  relay?: Record<string, unknown>;
  load1Before: number;
  load1After: number;
  verified?: boolean;
}

function poolArgs(c: Ctx): string[] {
  return ['--pool-metadata', c.pool.metadataPath, '--pool-data', c.pool.dataPath, '--volume-size', String(c.pool.params.volumeBytes), String(c.pool.devA)];
}

function relayExtra(c: Ctx): string[] {
  return c.o.queue ? ['--queue', c.o.queue] : [];
}

function startRelay(c: Ctx, to: string, rttMs: number): Promise<RelayProcess> {
  return startRelayProcess(to, rttMs / 2, c.o.rate, relayExtra(c), c.app.relay, c.o.relaySched === 'fifo' ? REALTIME : []);
}

function check(what: string, r: { code: number | null; signal: string | null; stderr: string }): void {
  if (r.code !== 0) throw new Error(`${what} failed (status ${r.code ?? r.signal}): ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`);
}

/** Kills `kill` if `p` has not settled after the run timeout. */
async function withTimeout<T>(c: Ctx, p: Promise<T>, kill: () => void, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => {
      kill();
      reject(new Error(`${what}: no end after ${c.o.runTimeoutS} s`));
    }, c.o.runTimeoutS * 1000);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(t);
  }
}

interface PathResult {
  wallS: number;
  procs: ProcUsage[];
  relay: RelayProcess;
  relayCpuS: number;
  relayWaitS: number;
}

/** Seconds the process's main thread has spent runnable but waiting for a CPU (/proc/PID/schedstat, field 2). */
async function runQueueWaitS(pid: number): Promise<number> {
  const t = await readFile(`/proc/${pid}/schedstat`, 'utf8').catch(() => '');
  return Number(t.split(' ')[1] ?? NaN) / 1e9;
}

async function runGrpc(c: Ctx, rttMs: number): Promise<PathResult> {
  const port = await freePort();
  const grpcDir = join(c.tmp, `${c.tag}-grpc`);
  await mkdir(grpcDir, { recursive: true });
  const config = join(grpcDir, 'receiver.json');
  await writeFile(
    config,
    JSON.stringify(
      {
        tls: { ca: join(c.certs, 'ca.crt'), cert: join(c.certs, 'server.crt'), key: join(c.certs, 'server.key') },
        stateDir: join(grpcDir, 'state'),
        identities: { 'thinship-sender': { directories: [dirname(c.target)] } },
        // Through the config file (the serve flags say the same): unset keeps thinship's defaults.
        ...(c.o.receiveWindow ? { receiveWindowBytes: parseSize(c.o.receiveWindow) } : {}),
        ...(c.o.connectionWindow ? { connectionWindowBytes: parseSize(c.o.connectionWindow) } : {}),
      },
      null,
      2,
    ),
  );
  const server = spawn(process.execPath, [c.app.main, 'serve', '--listen', `127.0.0.1:${port}`, '--config', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, THINSHIP_LOG: 'warn' },
  });
  let serverErr = '';
  server.stderr.on('data', (b: Buffer) => {
    if (serverErr.length < 64 * 1024) serverErr += b.toString();
  });
  const exited = new Promise<number | null>((r) => server.on('exit', (code) => r(code)));
  let alive = true;
  void exited.then(() => {
    alive = false;
  });
  let relay: RelayProcess | undefined;
  try {
    await waitListening(port, 20_000, () => alive);
    relay = await startRelay(c, `127.0.0.1:${port}`, rttMs);
    const serveCpu0 = await procCpuSeconds(server.pid!);
    const relayCpu0 = await procCpuSeconds(relay.pid);
    const relayWait0 = await runQueueWaitS(relay.pid);
    const f = join(c.tmp, `${c.tag}-send.time`);
    const t0 = performance.now();
    const tx = startBash(
      timed(f, [
        process.execPath,
        c.app.main,
        'send',
        ...poolArgs(c),
        '--to',
        `127.0.0.1:${relay.port}`,
        '--server-name',
        'localhost',
        '--target',
        c.target,
        '--tls-dir',
        c.certs,
        '--transfer-id',
        `wan-${c.tag}`,
        '--retries',
        '0',
        '--json',
      ]),
    );
    const r = await withTimeout(c, tx.done, () => tx.child.kill('SIGKILL'), 'thinship send --to');
    const wallS = (performance.now() - t0) / 1000;
    const relayCpuS = (await procCpuSeconds(relay.pid)) - relayCpu0;
    const relayWaitS = (await runQueueWaitS(relay.pid)) - relayWait0;
    if (!alive) throw new Error(`thinship serve exited during the send: ${serverErr.trim()}`);
    const serveCpuS = (await procCpuSeconds(server.pid!)) - serveCpu0;
    const serveHwmKiB = await procHwmKiB(server.pid!);
    check('thinship send --to', r);
    const send = await readTimed(f, 'thinship send --to', 'sender');
    return {
      wallS,
      relay,
      relayCpuS,
      relayWaitS,
      procs: [send, { name: 'thinship serve', side: 'receiver', wallS, userS: serveCpuS, sysS: 0, maxRssKiB: serveHwmKiB, exitCode: 0 }],
    };
  } catch (e) {
    await relay?.stop();
    throw e;
  } finally {
    if (alive) {
      server.kill('SIGTERM');
      const t = setTimeout(() => server.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    }
  }
}

async function runSocat(c: Ctx, rttMs: number): Promise<PathResult> {
  const f = (n: string) => join(c.tmp, `${c.tag}-${n}.time`);
  const port = await freePort();
  // As LINSTOR runs thin_send/thin_recv: default zstd and socat settings.
  const rx = startBash(
    [
      timed(f('rx-socat'), ['socat', '-u', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, 'STDOUT']),
      timed(f('rx-zstd'), ['zstd', '-d', '-q', '-c']),
      timed(f('recv'), [process.execPath, c.app.main, 'recv', '-q', c.target]),
    ].join(' | '),
  );
  let rxExited = false;
  void rx.done.then(() => {
    rxExited = true;
  });
  let relay: RelayProcess | undefined;
  try {
    await waitListening(port, 10_000, () => !rxExited);
    relay = await startRelay(c, `127.0.0.1:${port}`, rttMs);
    const relayCpu0 = await procCpuSeconds(relay.pid);
    const relayWait0 = await runQueueWaitS(relay.pid);
    const t0 = performance.now();
    const tx = startBash(
      [
        timed(f('send'), [process.execPath, c.app.main, 'send', '-q', ...poolArgs(c)]),
        timed(f('tx-zstd'), ['zstd', '-1', '-q', '-c']),
        timed(f('tx-socat'), ['socat', '-u', 'STDIN', `TCP:127.0.0.1:${relay.port}`]),
      ].join(' | '),
    );
    const both = Promise.all([tx.done, rx.done]);
    const [txr, rxr] = await withTimeout(
      c,
      both,
      () => {
        tx.child.kill('SIGKILL');
        rx.child.kill('SIGKILL');
      },
      'socat pipeline',
    );
    const wallS = (performance.now() - t0) / 1000;
    const relayCpuS = (await procCpuSeconds(relay.pid)) - relayCpu0;
    const relayWaitS = (await runQueueWaitS(relay.pid)) - relayWait0;
    check('send | zstd -1 | socat', txr);
    check('socat | zstd -d | recv', rxr);
    return {
      wallS,
      relay,
      relayCpuS,
      relayWaitS,
      procs: [
        await readTimed(f('send'), 'thinship send', 'sender'),
        await readTimed(f('tx-zstd'), 'zstd -1', 'sender'),
        await readTimed(f('tx-socat'), 'socat (send)', 'sender'),
        await readTimed(f('rx-socat'), 'socat (recv)', 'receiver'),
        await readTimed(f('rx-zstd'), 'zstd -d', 'receiver'),
        await readTimed(f('recv'), 'thinship recv', 'receiver'),
      ],
    };
  } catch (e) {
    await relay?.stop();
    if (!rxExited) rx.child.kill();
    throw e;
  }
}

async function measure(c: Ctx, path: PathName, rttMs: number, rep: number, verify: boolean): Promise<RunRecord> {
  const dataBytes = c.pool.mappedBlocksA * c.pool.params.blockBytes;
  await rm(c.target, { force: true });
  await dropCache(c.pool.dataPath);
  await dropCache(c.pool.metadataPath);
  const rec: RunRecord = {
    rttMs,
    path,
    rep,
    ok: false,
    wallS: NaN,
    dataBytes,
    dataMBps: NaN,
    procs: [],
    relayCpuS: NaN,
    relayWaitS: NaN,
    load1Before: loadavg()[0]!,
    load1After: NaN,
  };
  try {
    const r = await (path === 'grpc' ? runGrpc(c, rttMs) : runSocat(c, rttMs));
    const st = (await r.relay.stop()) as { up?: { bytes: number } };
    rec.relay = st;
    rec.wireBytes = st.up?.bytes;
    rec.wallS = r.wallS;
    rec.procs = r.procs;
    rec.relayCpuS = r.relayCpuS;
    rec.relayWaitS = r.relayWaitS;
    rec.dataMBps = dataBytes / 1e6 / r.wallS;
    rec.ok = true;
    if (verify) {
      rec.verified = (await sha256File(c.target)) === c.pool.imageSha256A;
      if (!rec.verified) {
        rec.ok = false;
        rec.error = `target ${c.target} differs from the source image`;
      }
    }
  } catch (e) {
    rec.error = (e as Error).message;
  }
  rec.load1After = loadavg()[0]!;
  const cpu = (side: string) => rec.procs.filter((p) => p.side === side).reduce((s, p) => s + p.userS + p.sysS, 0);
  const up = rec.relay?.up as { lateMsMean?: number; lateMsMax?: number; pauses?: number; heldBytesMax?: number } | undefined;
  log(
    `  rtt ${String(rttMs).padStart(3)} ms ${path.padEnd(5)} rep ${rep}: ${
      rec.ok
        ? `${rec.wallS.toFixed(2)} s, ${rec.dataMBps.toFixed(0)} MB/s data, ${((rec.wireBytes ?? NaN) / 1e6 / rec.wallS).toFixed(0)} MB/s through the relay, cpu send ${cpu('sender').toFixed(1)} s recv ${cpu('receiver').toFixed(1)} s relay ${rec.relayCpuS.toFixed(1)} s (waited for a CPU ${rec.relayWaitS.toFixed(2)} s), relay late ${up?.lateMsMean?.toFixed(2)}/${up?.lateMsMax?.toFixed(1)} ms held max ${((up?.heldBytesMax ?? NaN) / MiB).toFixed(1)} MiB, peak RSS MiB ${rec.procs.map((p) => `${p.name} ${(p.maxRssKiB / 1024).toFixed(0)}`).join(', ')}${rec.verified ? ', target verified' : ''}`
        : `FAILED: ${rec.error}`
    }; load ${rec.load1Before.toFixed(2)}→${rec.load1After.toFixed(2)}`,
  );
  return rec;
}

interface Summary {
  rttMs: number;
  path: PathName;
  runs: number;
  failures: number;
  dataMBps: ReturnType<typeof spread>;
  wireMBps: ReturnType<typeof spread>;
  ratioToSocat: ReturnType<typeof spread>;
  senderCpuS: ReturnType<typeof spread>;
  receiverCpuS: ReturnType<typeof spread>;
  relayCpuS: ReturnType<typeof spread>;
  load1: ReturnType<typeof spread>;
}

function summarize(runs: RunRecord[]): Summary[] {
  const out: Summary[] = [];
  for (const rtt of [...new Set(runs.map((r) => r.rttMs))]) {
    for (const path of [...new Set(runs.map((r) => r.path))]) {
      const all = runs.filter((r) => r.rttMs === rtt && r.path === path);
      const ok = all.filter((r) => r.ok);
      const ratios = ok.map((r) => {
        const s = runs.find((x) => x.ok && x.rttMs === rtt && x.path === 'socat' && x.rep === r.rep);
        return s ? r.dataMBps / s.dataMBps : NaN;
      });
      const cpu = (r: RunRecord, side: string) => r.procs.filter((p) => p.side === side).reduce((s, p) => s + p.userS + p.sysS, 0);
      out.push({
        rttMs: rtt,
        path,
        runs: all.length,
        failures: all.length - ok.length,
        dataMBps: spread(ok.map((r) => r.dataMBps)),
        wireMBps: spread(ok.map((r) => (r.wireBytes ?? NaN) / 1e6 / r.wallS)),
        ratioToSocat: spread(ratios),
        senderCpuS: spread(ok.map((r) => cpu(r, 'sender'))),
        receiverCpuS: spread(ok.map((r) => cpu(r, 'receiver'))),
        relayCpuS: spread(ok.map((r) => r.relayCpuS)),
        load1: spread(all.flatMap((r) => [r.load1Before, r.load1After])),
      });
    }
  }
  return out;
}

function table(s: Summary[]): string {
  return textTable(
    ['RTT', 'path', 'data MB/s', 'relay MB/s', '÷ socat', 'send CPU s', 'recv CPU s', 'relay CPU s', 'load', 'ok'],
    s.map((x) => [
      `${x.rttMs} ms`,
      LABEL[x.path],
      fmtSpread(x.dataMBps),
      fmtSpread(x.wireMBps),
      x.path === 'socat' ? '1' : fmtSpread(x.ratioToSocat, 2),
      fmtSpread(x.senderCpuS, 1),
      fmtSpread(x.receiverCpuS, 1),
      fmtSpread(x.relayCpuS, 1),
      fmtSpread(x.load1, 1),
      `${x.runs - x.failures}/${x.runs}`,
    ]),
  );
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  await mkdir(o.work, { recursive: true });
  const tmp = join(o.work, `run-${process.pid}`);
  await mkdir(join(tmp, 'targets'), { recursive: true });
  const app = await prepareApp(o);
  const certs = join(o.work, 'certs');
  if (
    !(await readFile(join(certs, 'client.crt'), 'utf8').then(
      () => true,
      () => false,
    ))
  )
    await runTool(process.execPath, [app.main, 'certs', '--out', certs]);
  const pool = await ensureBenchPool(o.work, { ...DEFAULT_POOL_PARAMS, volumeBytes: o.sizeBytes }, log);
  const c = { o, app, pool, certs, tmp, target: join(tmp, 'targets', 'target.img'), tag: '' };
  const dataBytes = pool.mappedBlocksA * pool.params.blockBytes;
  log(
    `wan-bench: ${(o.sizeBytes / GiB).toFixed(2)} GiB volume, ${(dataBytes / 1e6).toFixed(0)} MB of data (zstd -1 ratio ${pool.sampleZstd1Ratio.toFixed(2)}), rate ${o.rate}, RTTs ${o.rttsMs.join(', ')} ms, ${o.reps} reps; ${cpus().length} CPUs, load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  const runs: RunRecord[] = [];
  const t0 = Date.now();
  for (let rep = 1; rep <= o.reps; rep++) {
    for (const rtt of o.rttsMs) {
      const order = rep % 2 === 1 ? o.paths : [...o.paths].reverse();
      for (const path of order) {
        c.tag = `${rtt}-${path}-${rep}`;
        const verify = o.verify === 'all' || (o.verify === 'first' && rep === 1);
        runs.push(await measure(c, path, rtt, rep, verify));
      }
    }
  }
  const s = summarize(runs);
  const text = table(s);
  process.stdout.write(`\n${text}\n\n`);
  const result = {
    when: new Date(t0).toISOString(),
    minutes: (Date.now() - t0) / 60000,
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', kernel: release(), node: process.version },
    options: { ...o, json: undefined },
    pool: { volumeBytes: pool.params.volumeBytes, dataBytes, zstd1Ratio: pool.sampleZstd1Ratio },
    summary: s,
    table: text,
    runs,
  };
  await mkdir(dirname(o.json), { recursive: true });
  await writeFile(o.json, JSON.stringify(result, null, 1));
  log(`wrote ${o.json}`);
  await rm(tmp, { recursive: true, force: true });
  if (runs.some((r) => !r.ok)) process.exitCode = 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`wan-bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
