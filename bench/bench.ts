/**
 * `npm run bench`: thinship's transfer paths side by side on this machine
 * (issue 5). Not part of `npm test`.
 *
 *   node dist/bench/bench.js [--sizes 1G,8G] [--reps 5] [--only socat,grpc,pipe,incr,plan,wan]
 *                            [--work DIR] [--json FILE] [--cpu-prof DIR] [--plan-sizes 2000000,10000000]
 *                            [--plan-reps N] [--no-snapshot] [--verify first|all|none]
 *
 * For each volume size, an offline pool (bench/pool-gen.ts, cached in --work)
 * is sent in full, into a sparse file target, by each path:
 *   socat  the classic pipeline: `thinship send | zstd -1 | socat` → `socat | zstd -d | thinship recv`, loopback TCP
 *   grpc   `thinship send --to` → `thinship serve`, mTLS, zstd level 1, loopback
 *   pipe   `thinship send | thinship recv`, no compression
 *   daemon a WARM sender daemon (`thinship sender serve`, issue 16) sends to a
 *          `thinship serve`, both started once per volume size and kept for
 *          every repetition; this process is the orchestrator: StartTransfer,
 *          then WatchTransfer to DONE over one kept mTLS channel. Its first
 *          full send warms it (receiver connection, compression workers).
 * and the C reference rows (issue 14), the same bytes without thinship:
 *   dd     `dd iflag=direct bs=1M | dd bs=1M conv=fsync` of the pool's data file (the mapped data's size): a plain copy
 *   czstd  `dd iflag=direct | zstd -1 | socat` → `socat | zstd -d | dd conv=fsync`, loopback TCP
 * and, with `incr`, each full send is followed by the incremental (device 1 →
 * 2, ~1% of the blocks rewritten) on the same target and path. Repetitions
 * interleave the paths (the order rotates each repetition), so every ratio
 * compares runs made minutes apart under the same load. Before every run the
 * source data file is dropped from the page cache; after it, fincore says how
 * much of it the send left there. Each process is wrapped in GNU time (CPU,
 * peak RSS); the gRPC receiver is a daemon, measured through /proc. `plan`
 * runs bench/plan-bench.ts (thin_dump / thin_delta parsing) as a child, and
 * `wan` runs bench/wan/wan-bench.ts (gRPC and the classic pipeline through the
 * delay-line relay at 0, 50 and 100 ms RTT, 1 Gbit/s; issue 6) as a child.
 *
 * The thinship build is copied to --work/app first (unless --no-snapshot), so
 * other people rebuilding dist/ during a long run cannot change what runs.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool } from '../src/exec/run.js';
import { DEFAULT_POOL_PARAMS, ensureBenchPool, type BenchPool } from './pool-gen.js';
import {
  cachedBytes,
  dropCache,
  freePort,
  procCpuTimes,
  procHwmKiB,
  readTimed,
  sha256File,
  copyBuild,
  startBash,
  timed,
  waitListening,
  startBenchDaemon,
  type BenchDaemon,
  type ProcUsage,
} from './proc.js';
import { fmtSpread, spread, textTable, type Spread } from './stats.js';
import { formatProfile, summarizeProfile, type ProfileSummary } from './cpuprofile.js';
import { SenderClient } from '../src/rpc/sender-client.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const GiB = 2 ** 30;
const MiB = 2 ** 20;

const TRANSPORTS = ['socat', 'grpc', 'pipe', 'daemon', 'dd', 'czstd'] as const;
type Transport = (typeof TRANSPORTS)[number];
/** The C reference rows: no thinship in them, only a full send of the same bytes (no incremental, no target check). */
const C_REFERENCE: ReadonlySet<Transport> = new Set(['dd', 'czstd']);
const ITEMS = [...TRANSPORTS, 'incr', 'plan', 'wan'] as const;
type Item = (typeof ITEMS)[number];
type Kind = 'full' | 'incr';

const LABEL: Record<Transport, string> = {
  socat: 'zstd -1 + socat (classic)',
  grpc: 'gRPC mTLS zstd-1',
  pipe: 'pipe, no compression',
  daemon: 'warm sender daemon → serve',
  dd: 'C: dd direct | dd fsync',
  czstd: 'C: dd | zstd -1 | socat',
};

interface Options {
  sizes: number[];
  reps: number;
  only: Set<Item>;
  work: string;
  json: string;
  cpuProf: string | undefined;
  planSizes: number[];
  planReps: number;
  /** The between-sites case (wan): volume size and round-trip times through the relay. */
  wanSize: string;
  wanRttsMs: number[];
  snapshot: boolean;
  /** Run this copy of the build (DIR/dist, DIR/build, DIR/node_modules) instead of the repository's: to measure a prototype fix. */
  app: string | undefined;
  verify: 'first' | 'all' | 'none';
}

function parseSize(s: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(s.trim());
  if (!m) throw new Error(`bad size "${s}" (examples: 1G, 512M)`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

function sizeName(b: number): string {
  return b % GiB === 0 ? `${b / GiB}G` : b % MiB === 0 ? `${b / MiB}M` : String(b);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    sizes: [GiB, 8 * GiB],
    reps: 5,
    only: new Set(ITEMS),
    work: '/var/tmp/thinship-bench',
    json: join(REPO_ROOT, 'bench/results/latest.json'),
    cpuProf: undefined,
    planSizes: [2_000_000, 10_000_000],
    planReps: 5,
    wanSize: '1G',
    wanRttsMs: [0, 50, 100],
    snapshot: true,
    app: undefined,
    verify: 'first',
  };
  let planRepsSet = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--sizes') o.sizes = v().split(',').map(parseSize);
    else if (a === '--reps') o.reps = Number(v());
    else if (a === '--only') {
      const items = v()
        .split(',')
        .map((s) => s.trim());
      for (const it of items) if (!(ITEMS as readonly string[]).includes(it)) throw new Error(`--only: unknown item "${it}" (known: ${ITEMS.join(', ')})`);
      o.only = new Set(items as Item[]);
    } else if (a === '--work') o.work = resolve(v());
    else if (a === '--json') o.json = resolve(v());
    else if (a === '--cpu-prof') o.cpuProf = resolve(v());
    else if (a === '--plan-sizes') o.planSizes = v().split(',').map(Number);
    else if (a === '--plan-reps') {
      o.planReps = Number(v());
      planRepsSet = true;
    } else if (a === '--wan-size') {
      o.wanSize = v();
      parseSize(o.wanSize);
    } else if (a === '--wan-rtts') o.wanRttsMs = v().split(',').map(Number);
    else if (a === '--no-snapshot') o.snapshot = false;
    else if (a === '--app') o.app = resolve(v());
    else if (a === '--verify') {
      const x = v();
      if (x !== 'first' && x !== 'all' && x !== 'none') throw new Error('--verify must be first, all or none');
      o.verify = x;
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(fileHelp());
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  if (!planRepsSet) o.planReps = o.reps;
  if (!Number.isInteger(o.reps) || o.reps < 1) throw new Error('--reps must be a positive integer');
  if (o.sizes.some((s) => !Number.isSafeInteger(s) || s < 64 * MiB || s % (64 * 1024) !== 0))
    throw new Error('--sizes: each size must be a multiple of 64 KiB, at least 64M');
  return o;
}

function fileHelp(): string {
  return `usage: node dist/bench/bench.js [options]
  --sizes 1G,8G          volume sizes (default 1G,8G)
  --reps N               repetitions of every figure (default 5)
  --only LIST            any of ${ITEMS.join(',')} (default: all)
  --work DIR             cached pools, targets, certificates (default /var/tmp/thinship-bench)
  --json FILE            results (default bench/results/latest.json)
  --cpu-prof DIR         after the measured runs, one profiled full send per path (first size): node --cpu-prof of sender and receiver
  --plan-sizes LIST      mappings for the plan benchmark (default 2000000,10000000)
  --plan-reps N          its repetitions (default: --reps)
  --wan-size SIZE        volume sent through the delay relay for wan (default 1G)
  --wan-rtts LIST        round-trip times in ms for wan (default 0,50,100; 1 Gbit/s)
  --no-snapshot          run dist/ in place instead of a copy in --work/app
  --app DIR              run the build in DIR (DIR/dist/bin/thinship.js, with DIR/build and DIR/node_modules), e.g. a patched copy
  --verify first|all|none  sha256 of the target against the pool's image after the first (default), every or no repetition
  --report FILE          print the tables of a results file again (nothing is measured)
`;
}

// ---------------------------------------------------------------------------
// Environment

interface App {
  root: string;
  main: string;
  planBench: string;
  wanBench: string;
}

function appAt(root: string): App {
  return {
    root,
    main: join(root, 'dist/bin/thinship.js'),
    planBench: join(root, 'dist/bench/plan-bench.js'),
    wanBench: join(root, 'dist/bench/wan/wan-bench.js'),
  };
}

/** A private copy of the build, so rebuilds of dist/ by others during the run change nothing here. */
async function prepareApp(o: Options, runDir: string): Promise<App> {
  if (o.app) return appAt(o.app);
  if (!o.snapshot) return appAt(REPO_ROOT);
  const root = join(runDir, 'app');
  await copyBuild(REPO_ROOT, root);
  return appAt(root);
}

async function gitInfo(): Promise<{ head: string; changedFiles: number }> {
  try {
    const head = (await runTool('git', ['-C', REPO_ROOT, 'rev-parse', 'HEAD'])).stdout.trim();
    const st = (await runTool('git', ['-C', REPO_ROOT, 'status', '--porcelain'])).stdout.trim();
    return { head, changedFiles: st ? st.split('\n').length : 0 };
  } catch {
    return { head: 'unknown', changedFiles: -1 };
  }
}

async function machineInfo() {
  const c = cpus();
  return { cpus: c.length, cpuModel: c[0]?.model ?? '', memTotalGiB: +(totalmem() / GiB).toFixed(1), kernel: release(), node: process.version };
}

async function ensureCerts(app: App, dir: string): Promise<void> {
  if (
    await readFile(join(dir, 'client.crt'), 'utf8').then(
      () => true,
      () => false,
    )
  )
    return;
  await runTool(process.execPath, [app.main, 'certs', '--out', dir]);
}

function log(s: string): void {
  process.stderr.write(`${s}\n`);
}

// ---------------------------------------------------------------------------
// One run of one path

interface RunRecord {
  size: string;
  volumeBytes: number;
  transport: Transport;
  kind: Kind;
  rep: number;
  ok: boolean;
  error?: string;
  wallS: number;
  /** Volume data carried (mapped bytes sent); the MB/s figures are of this. */
  dataBytes: number;
  dataMBps: number;
  procs: ProcUsage[];
  senderCpuS: number;
  receiverCpuS: number;
  cacheBeforeBytes: number;
  cacheAfterBytes: number;
  load1Before: number;
  load1After: number;
  verified?: boolean;
  /** gRPC: bytes of chunk payload on the wire, from the sender's summary. */
  wireBytes?: number;
}

interface RunCtx {
  app: App;
  /** This invocation's own directory under --work (targets, receiver state, time files): concurrent runs never share one. */
  runDir: string;
  pool: BenchPool;
  target: string;
  kind: Kind;
  certs: string;
  grpcDir: string;
  tmp: string;
  /** node --cpu-prof into DIR/sender and DIR/receiver. */
  profDir?: string;
  tag: string;
}

function poolArgs(c: RunCtx): string[] {
  const devs = c.kind === 'full' ? [String(c.pool.devA)] : [String(c.pool.devA), String(c.pool.devB)];
  return ['--pool-metadata', c.pool.metadataPath, '--pool-data', c.pool.dataPath, '--volume-size', String(c.pool.params.volumeBytes), ...devs];
}

function nodeArgv(c: RunCtx, side: 'sender' | 'receiver', ...rest: string[]): string[] {
  const prof = c.profDir ? ['--cpu-prof', '--cpu-prof-dir', join(c.profDir, side)] : [];
  return [process.execPath, ...prof, c.app.main, ...rest];
}

interface PathResult {
  wallS: number;
  procs: ProcUsage[];
  wireBytes?: number;
}

function checkBash(what: string, r: { code: number | null; signal: string | null; stderr: string }): void {
  if (r.code !== 0) throw new Error(`${what} failed (status ${r.code ?? r.signal}): ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`);
}

async function runPipe(c: RunCtx): Promise<PathResult> {
  const f = (n: string) => join(c.tmp, `${c.tag}-${n}.time`);
  const script = `${timed(f('send'), nodeArgv(c, 'sender', 'send', '-q', ...poolArgs(c)))} | ${timed(f('recv'), nodeArgv(c, 'receiver', 'recv', '-q', c.target))}`;
  const t0 = performance.now();
  const r = await startBash(script).done;
  const wallS = (performance.now() - t0) / 1000;
  checkBash('send | recv', r);
  return { wallS, procs: [await readTimed(f('send'), 'thinship send', 'sender'), await readTimed(f('recv'), 'thinship recv', 'receiver')] };
}

/**
 * The zstd + socat pipeline around a sender and a receiver command, as LINSTOR runs
 * thin_send/thin_recv (default zstd and socat settings): `SEND | zstd -1 | socat` →
 * `socat | zstd -d | RECV` over loopback TCP, every process timed.
 */
async function runZstdSocat(c: RunCtx, send: { argv: string[]; name: string }, recv: { argv: string[]; name: string }): Promise<PathResult> {
  const f = (n: string) => join(c.tmp, `${c.tag}-${n}.time`);
  const port = await freePort();
  const rx = startBash(
    [
      timed(f('rx-socat'), ['socat', '-u', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, 'STDOUT']),
      timed(f('rx-zstd'), ['zstd', '-d', '-q', '-c']),
      timed(f('recv'), recv.argv),
    ].join(' | '),
  );
  let rxExited = false;
  void rx.done.then(() => {
    rxExited = true;
  });
  try {
    await waitListening(port, 10_000, () => !rxExited);
  } catch (e) {
    rx.child.kill();
    const r = await rx.done;
    throw new Error(`${(e as Error).message}: ${r.stderr.trim()}`, { cause: e });
  }
  const t0 = performance.now();
  const tx = startBash(
    [
      timed(f('send'), send.argv),
      timed(f('tx-zstd'), ['zstd', '-1', '-q', '-c']),
      timed(f('tx-socat'), ['socat', '-u', 'STDIN', `TCP:127.0.0.1:${port}`]),
    ].join(' | '),
  );
  const txr = await tx.done;
  if (txr.code !== 0) rx.child.kill();
  const rxr = await rx.done;
  const wallS = (performance.now() - t0) / 1000;
  checkBash(`${send.name} | zstd -1 | socat`, txr);
  checkBash(`socat | zstd -d | ${recv.name}`, rxr);
  return {
    wallS,
    procs: [
      await readTimed(f('send'), send.name, 'sender'),
      await readTimed(f('tx-zstd'), 'zstd -1', 'sender'),
      await readTimed(f('tx-socat'), 'socat (send)', 'sender'),
      await readTimed(f('rx-socat'), 'socat (recv)', 'receiver'),
      await readTimed(f('rx-zstd'), 'zstd -d', 'receiver'),
      await readTimed(f('recv'), recv.name, 'receiver'),
    ],
  };
}

function runSocat(c: RunCtx): Promise<PathResult> {
  return runZstdSocat(
    c,
    { argv: nodeArgv(c, 'sender', 'send', '-q', ...poolArgs(c)), name: 'thinship send' },
    { argv: nodeArgv(c, 'receiver', 'recv', '-q', c.target), name: 'thinship recv' },
  );
}

async function runGrpc(c: RunCtx): Promise<PathResult> {
  const port = await freePort();
  const stateDir = join(c.grpcDir, 'state');
  const config = join(c.grpcDir, 'receiver.json');
  await writeFile(
    config,
    JSON.stringify(
      {
        tls: { ca: join(c.certs, 'ca.crt'), cert: join(c.certs, 'server.crt'), key: join(c.certs, 'server.key') },
        stateDir,
        identities: { 'thinship-sender': { directories: [dirname(c.target)] } },
      },
      null,
      2,
    ),
  );
  // A fresh daemon per run: its peak RSS and CPU then belong to this run alone.
  const server = await startBenchDaemon(nodeArgv(c, 'receiver', 'serve', '--listen', `127.0.0.1:${port}`, '--config', config), port, 'thinship serve');
  try {
    const pid = server.pid;
    const cpu0 = await procCpuTimes(pid);
    const f = join(c.tmp, `${c.tag}-send.time`);
    const transferId = `bench-${c.tag}-${Date.now()}`;
    const t0 = performance.now();
    const tx = await startBash(
      timed(
        f,
        nodeArgv(
          c,
          'sender',
          'send',
          ...poolArgs(c),
          '--to',
          `127.0.0.1:${port}`,
          '--target',
          c.target,
          '--tls-dir',
          c.certs,
          '--server-name',
          'localhost',
          '--transfer-id',
          transferId,
          '--json',
        ),
      ),
    ).done;
    const wallS = (performance.now() - t0) / 1000;
    if (!server.alive()) throw new Error(`thinship serve exited during the send: ${server.stderr().trim()}`);
    const cpu1 = await procCpuTimes(pid);
    const hwm = await procHwmKiB(pid);
    checkBash('thinship send --to', tx);
    const summary = JSON.parse(tx.stdout.trim().split('\n').pop() ?? '{}') as { payloadBytes?: number; dataBytes?: number };
    const send = await readTimed(f, 'thinship send --to', 'sender');
    // CPU of the daemon during the send (its start-up before is not counted).
    const serve: ProcUsage = {
      name: 'thinship serve',
      side: 'receiver',
      wallS,
      userS: cpu1.userS - cpu0.userS,
      sysS: cpu1.sysS - cpu0.sysS,
      maxRssKiB: hwm,
      exitCode: 0,
    };
    return { wallS, procs: [send, serve], wireBytes: summary.payloadBytes };
  } finally {
    await server.stop();
  }
}

/** The warm pair of the daemon path: a receiver and a sender daemon, and the orchestrator's channel to the latter. */
interface WarmDaemons {
  poolKey: string;
  rx: BenchDaemon;
  sender: BenchDaemon;
  rxAddress: string;
  client: SenderClient;
}
let warm: WarmDaemons | undefined;

async function stopWarmDaemons(): Promise<void> {
  const w = warm;
  warm = undefined;
  if (!w) return;
  w.client.close();
  await w.sender.stop();
  await w.rx.stop();
}

async function warmDaemonsFor(c: RunCtx): Promise<WarmDaemons> {
  const poolKey = c.pool.metadataPath;
  if (warm?.poolKey === poolKey && warm.rx.alive() && warm.sender.alive()) return warm;
  await stopWarmDaemons();
  const dir = join(c.grpcDir, 'daemon');
  await mkdir(dir, { recursive: true });
  const tls = { ca: join(c.certs, 'ca.crt'), cert: join(c.certs, 'server.crt'), key: join(c.certs, 'server.key') };
  const clientTls = { ca: join(c.certs, 'ca.crt'), cert: join(c.certs, 'client.crt'), key: join(c.certs, 'client.key') };
  const rxPort = await freePort();
  const rxAddress = `127.0.0.1:${rxPort}`;
  await writeFile(
    join(dir, 'receiver.json'),
    JSON.stringify({ tls, stateDir: join(dir, 'rx-state'), identities: { 'thinship-sender': { directories: [dirname(c.target)] } } }, null, 2),
  );
  const rx = await startBenchDaemon(nodeArgv(c, 'receiver', 'serve', '--listen', rxAddress, '--config', join(dir, 'receiver.json')), rxPort, 'thinship serve');
  try {
    const senderPort = await freePort();
    await writeFile(
      join(dir, 'sender.json'),
      JSON.stringify(
        {
          tls,
          receiverTls: clientTls,
          stateDir: join(dir, 'sender-state'),
          identities: {
            'thinship-sender': {
              sources: { offlineDirectories: [dirname(c.pool.metadataPath), dirname(c.pool.dataPath)] },
              destinations: [{ receiver: rxAddress, target: `${dirname(c.target)}/*` }],
            },
          },
        },
        null,
        2,
      ),
    );
    const sender = await startBenchDaemon(
      nodeArgv(c, 'sender', 'sender', 'serve', '--listen', `127.0.0.1:${senderPort}`, '--config', join(dir, 'sender.json')),
      senderPort,
      'thinship sender serve',
    );
    const client = await SenderClient.connect({ address: `127.0.0.1:${senderPort}`, tls: clientTls, serverName: 'localhost' });
    warm = { poolKey, rx, sender, rxAddress, client };
    return warm;
  } catch (e) {
    await rx.stop();
    throw e;
  }
}

/** The daemon path: what an orchestrator waits for, from StartTransfer to the DONE state, on warm daemons. */
async function runDaemon(c: RunCtx): Promise<PathResult> {
  const w = await warmDaemonsFor(c);
  const [s0, r0] = [await procCpuTimes(w.sender.pid), await procCpuTimes(w.rx.pid)];
  const source = {
    snapshot: String(c.kind === 'full' ? c.pool.devA : c.pool.devB),
    base: c.kind === 'full' ? '' : String(c.pool.devA),
    offlinePool: { metadataPath: c.pool.metadataPath, dataPath: c.pool.dataPath, volumeSizeBytes: c.pool.params.volumeBytes },
  };
  const t0 = performance.now();
  const started = await w.client.start({
    requestId: `bench-${c.tag}-${Date.now()}`,
    source,
    destination: { receiverAddress: w.rxAddress, serverName: 'localhost', target: c.target },
  });
  const final = await w.client.watch(started.transferId, () => undefined);
  const wallS = (performance.now() - t0) / 1000;
  if (final.state !== 'STATE_DONE') throw new Error(`transfer ${final.transferId} ended ${final.state}: ${final.errorCode} ${final.errorMessage}`);
  const [s1, r1] = [await procCpuTimes(w.sender.pid), await procCpuTimes(w.rx.pid)];
  const usage = (name: string, side: ProcUsage['side'], a: typeof s0, b: typeof s0, hwm: number): ProcUsage => ({
    name,
    side,
    wallS,
    userS: b.userS - a.userS,
    sysS: b.sysS - a.sysS,
    maxRssKiB: hwm,
    exitCode: 0,
  });
  return {
    wallS,
    procs: [
      usage('thinship sender serve', 'sender', s0, s1, await procHwmKiB(w.sender.pid)),
      usage('thinship serve', 'receiver', r0, r1, await procHwmKiB(w.rx.pid)),
    ],
  };
}

/** The pool's data file, the first `dataBytes` of it (as many bytes as the full send carries), read with O_DIRECT as thin_send reads. */
function ddSource(c: RunCtx, dataBytes: number): string[] {
  return ['dd', `if=${c.pool.dataPath}`, 'bs=1M', `count=${dataBytes}`, 'iflag=direct,count_bytes', 'status=none'];
}

/** Writes stdin to the target and makes it durable, as thinship recv does. */
function ddTarget(c: RunCtx): string[] {
  return ['dd', `of=${c.target}`, 'bs=1M', 'iflag=fullblock', 'conv=fsync', 'status=none'];
}

const fullDataBytes = (c: RunCtx) => c.pool.mappedBlocksA * c.pool.params.blockBytes;

async function runDdCopy(c: RunCtx): Promise<PathResult> {
  const f = (n: string) => join(c.tmp, `${c.tag}-${n}.time`);
  const script = `${timed(f('send'), ddSource(c, fullDataBytes(c)))} | ${timed(f('recv'), ddTarget(c))}`;
  const t0 = performance.now();
  const r = await startBash(script).done;
  const wallS = (performance.now() - t0) / 1000;
  checkBash('dd | dd', r);
  return { wallS, procs: [await readTimed(f('send'), 'dd iflag=direct', 'sender'), await readTimed(f('recv'), 'dd conv=fsync', 'receiver')] };
}

function runCZstd(c: RunCtx): Promise<PathResult> {
  return runZstdSocat(c, { argv: ddSource(c, fullDataBytes(c)), name: 'dd iflag=direct' }, { argv: ddTarget(c), name: 'dd conv=fsync' });
}

const RUNNERS: Record<Transport, (c: RunCtx) => Promise<PathResult>> = {
  pipe: runPipe,
  socat: runSocat,
  grpc: runGrpc,
  daemon: runDaemon,
  dd: runDdCopy,
  czstd: runCZstd,
};

async function measure(transport: Transport, c: RunCtx, rep: number, verify: boolean): Promise<RunRecord> {
  const dataBytes = (c.kind === 'full' ? c.pool.mappedBlocksA : c.pool.changedBlocks) * c.pool.params.blockBytes;
  await dropCache(c.pool.dataPath);
  await dropCache(c.pool.metadataPath);
  const rec: RunRecord = {
    size: sizeName(c.pool.params.volumeBytes),
    volumeBytes: c.pool.params.volumeBytes,
    transport,
    kind: c.kind,
    rep,
    ok: false,
    wallS: NaN,
    dataBytes,
    dataMBps: NaN,
    procs: [],
    senderCpuS: NaN,
    receiverCpuS: NaN,
    cacheBeforeBytes: await cachedBytes(c.pool.dataPath),
    cacheAfterBytes: NaN,
    load1Before: loadavg()[0]!,
    load1After: NaN,
  };
  try {
    const r = await RUNNERS[transport](c);
    rec.cacheAfterBytes = await cachedBytes(c.pool.dataPath);
    rec.wallS = r.wallS;
    rec.procs = r.procs;
    rec.wireBytes = r.wireBytes;
    rec.dataMBps = dataBytes / 1e6 / r.wallS;
    const cpu = (side: string) => r.procs.filter((p) => p.side === side).reduce((s, p) => s + p.userS + p.sysS, 0);
    rec.senderCpuS = cpu('sender');
    rec.receiverCpuS = cpu('receiver');
    rec.ok = true;
    if (verify && !C_REFERENCE.has(transport)) {
      const want = c.kind === 'full' ? c.pool.imageSha256A : c.pool.imageSha256B;
      rec.verified = (await sha256File(c.target)) === want;
      if (!rec.verified) {
        rec.ok = false;
        rec.error = `target ${c.target} does not match the ${c.kind === 'full' ? 'source' : 'new snapshot'} image`;
      }
    }
  } catch (e) {
    rec.error = (e as Error).message;
  }
  rec.load1After = loadavg()[0]!;
  const rss = rec.procs.map((p) => `${p.name} ${(p.maxRssKiB / 1024).toFixed(0)}`).join(', ');
  log(
    `  ${rec.size} ${c.kind} ${transport.padEnd(5)} rep ${rep}: ${rec.ok ? `${rec.wallS.toFixed(2)} s, ${rec.dataMBps.toFixed(0)} MB/s, cpu send ${rec.senderCpuS.toFixed(2)} s recv ${rec.receiverCpuS.toFixed(2)} s, RSS MiB ${rss}, cache ${(rec.cacheAfterBytes / MiB).toFixed(0)} MiB${rec.verified === undefined ? '' : rec.verified ? ', target verified' : ''}` : `FAILED: ${rec.error}`}; load ${rec.load1Before.toFixed(2)}`,
  );
  return rec;
}

// ---------------------------------------------------------------------------
// Summaries

interface PathSummary {
  size: string;
  volumeBytes: number;
  transport: Transport;
  kind: Kind;
  runs: number;
  failures: number;
  wallS: Spread;
  dataMBps: Spread;
  /** Per repetition: this path's MB/s ÷ the classic pipeline's MB/s in the same repetition. */
  ratioToClassic: Spread;
  /** Per repetition: MB/s ÷ the C copy's (`dd iflag=direct | dd conv=fsync`) and ÷ the C zstd pipeline's, same repetition. */
  ratioToDd: Spread;
  ratioToCZstd: Spread;
  senderCpuSPerGiB: Spread;
  receiverCpuSPerGiB: Spread;
  /** Every process of the path, sender and receiver together. */
  allCpuSPerGiB: Spread;
  /** Per process name: peak RSS over the repetitions, in MiB. */
  peakRssMiB: Record<string, Spread>;
  /** Source data left in the page cache after the send, % of the volume size (runs where the cache was clean before). */
  cacheLeftPct: Spread;
  /** Runs left out of cacheLeftPct: the source was cached again right after it was dropped (someone else reading the pool). */
  cacheRunsExcluded: number;
  load1: Spread;
}

/** The source was (nearly) out of the page cache when the run started: its cache figure means something. */
const cleanBefore = (r: RunRecord) => r.cacheBeforeBytes <= 0.005 * r.volumeBytes;

function summarize(runs: RunRecord[]): PathSummary[] {
  const out: PathSummary[] = [];
  const keys = [...new Set(runs.map((r) => `${r.size}|${r.kind}|${r.transport}`))];
  for (const k of keys) {
    const [size, kind, transport] = k.split('|') as [string, Kind, Transport];
    const all = runs.filter((r) => r.size === size && r.kind === kind && r.transport === transport);
    const ok = all.filter((r) => r.ok);
    /** This path's MB/s ÷ the reference path's in the same repetition (NaN when it was not run or failed). */
    const ratioTo = (ref: Transport) =>
      ok.map((r) => {
        const c = runs.find((x) => x.ok && x.size === size && x.kind === kind && x.transport === ref && x.rep === r.rep);
        return c ? r.dataMBps / c.dataMBps : NaN;
      });
    const names = [...new Set(ok.flatMap((r) => r.procs.map((p) => p.name)))];
    out.push({
      size,
      volumeBytes: all[0]!.volumeBytes,
      transport,
      kind,
      runs: ok.length,
      failures: all.length - ok.length,
      wallS: spread(ok.map((r) => r.wallS)),
      dataMBps: spread(ok.map((r) => r.dataMBps)),
      ratioToClassic: spread(ratioTo('socat')),
      ratioToDd: spread(ratioTo('dd')),
      ratioToCZstd: spread(ratioTo('czstd')),
      senderCpuSPerGiB: spread(ok.map((r) => r.senderCpuS / (r.dataBytes / GiB))),
      receiverCpuSPerGiB: spread(ok.map((r) => r.receiverCpuS / (r.dataBytes / GiB))),
      allCpuSPerGiB: spread(ok.map((r) => (r.senderCpuS + r.receiverCpuS) / (r.dataBytes / GiB))),
      peakRssMiB: Object.fromEntries(names.map((n) => [n, spread(ok.map((r) => (r.procs.find((p) => p.name === n)?.maxRssKiB ?? NaN) / 1024))])),
      cacheLeftPct: spread(ok.filter(cleanBefore).map((r) => (100 * r.cacheAfterBytes) / r.volumeBytes)),
      cacheRunsExcluded: ok.filter((r) => !cleanBefore(r)).length,
      load1: spread(all.map((r) => r.load1Before)),
    });
  }
  return out;
}

interface IncrementalCheck {
  size: string;
  transport: Transport;
  changedBytes: number;
  incrWallS: Spread;
  fullMBps: number;
  /** changed bytes ÷ the same path's full-send throughput (median). */
  expectedS: number;
  /** Per repetition: incremental wall ÷ expectedS. Target: ≤ 2. */
  ratio: Spread;
}

function incrementalChecks(sums: PathSummary[], runs: RunRecord[]): IncrementalCheck[] {
  const out: IncrementalCheck[] = [];
  for (const s of sums.filter((x) => x.kind === 'incr' && x.runs > 0)) {
    const full = sums.find((x) => x.kind === 'full' && x.size === s.size && x.transport === s.transport);
    if (!full || full.runs === 0) continue;
    const inc = runs.filter((r) => r.ok && r.kind === 'incr' && r.size === s.size && r.transport === s.transport);
    const changedBytes = inc[0]!.dataBytes;
    const expectedS = changedBytes / 1e6 / full.dataMBps.median;
    out.push({
      size: s.size,
      transport: s.transport,
      changedBytes,
      incrWallS: s.wallS,
      fullMBps: full.dataMBps.median,
      expectedS,
      ratio: spread(inc.map((r) => r.wallS / expectedS)),
    });
  }
  return out;
}

interface PlanRow {
  mappings: number;
  tool: string;
  transport: string;
  elements: number;
  elementsPerS: Spread;
  peakRssMiB: Spread;
  totalsOk: boolean;
}

/** Runs `node ARGS` with its output on ours; resolves with its exit code. */
function runNodeChild(args: string[]): Promise<number | null> {
  return new Promise((res, rej) => {
    const ch = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    ch.on('error', rej);
    ch.on('exit', (c) => res(c));
  });
}

async function runPlanBench(app: App, o: Options, runDir: string): Promise<{ rows: PlanRow[]; raw: unknown; error?: string }> {
  const out = join(runDir, 'plan-bench.json');
  await rm(out, { force: true });
  const args = [app.planBench, '--sizes', o.planSizes.join(','), '--reps', String(o.planReps), '--json', out, '--dir', o.work];
  log(`plan: node ${args.join(' ')}`);
  const code = await runNodeChild(args);
  const raw = JSON.parse(await readFile(out, 'utf8').catch(() => 'null')) as null | {
    rows: Array<{ mappings: number; kind: string; transport: string; elements: number; planMs: number[]; hwmMiB: number[]; totalsOk: boolean }>;
  };
  if (!raw) return { rows: [], raw, error: `plan-bench exited with ${code} and wrote no JSON` };
  const rows = raw.rows.map((r) => ({
    mappings: r.mappings,
    tool: r.kind === 'dump' ? 'thin_dump' : 'thin_delta',
    transport: r.transport,
    elements: r.elements,
    elementsPerS: spread(r.planMs.map((ms) => r.elements / (ms / 1000))),
    peakRssMiB: spread(r.hwmMiB),
    totalsOk: r.totalsOk,
  }));
  return { rows, raw, error: code === 0 ? undefined : `plan-bench exited with ${code}` };
}

interface WanRow {
  rttMs: number;
  path: string;
  dataMBps: Spread;
  ratioToSocat: Spread;
  runs: number;
  failures: number;
}

/** The between-sites case, run by bench/wan/wan-bench.ts in the build under test (it keeps its own copy of nothing: --no-snapshot). */
async function runWanBench(app: App, o: Options, runDir: string): Promise<{ rows: WanRow[]; table: string; raw: unknown; error?: string }> {
  const out = join(runDir, 'wan-bench.json');
  await rm(out, { force: true });
  const args = [
    app.wanBench,
    '--size',
    o.wanSize,
    '--rtts',
    o.wanRttsMs.join(','),
    '--reps',
    String(o.reps),
    '--verify',
    o.verify,
    '--json',
    out,
    '--work',
    o.work,
    '--no-snapshot',
  ];
  log(`wan: node ${args.join(' ')}`);
  const code = await runNodeChild(args);
  const raw = JSON.parse(await readFile(out, 'utf8').catch(() => 'null')) as null | { table: string; summary: WanRow[] };
  if (!raw) return { rows: [], table: '', raw, error: `wan-bench exited with ${code} and wrote no JSON` };
  const rows = raw.summary.map((r) => ({
    rttMs: r.rttMs,
    path: r.path,
    dataMBps: r.dataMBps,
    ratioToSocat: r.ratioToSocat,
    runs: r.runs,
    failures: r.failures,
  }));
  return { rows, table: raw.table, raw, error: code === 0 ? undefined : `wan-bench exited with ${code}` };
}

interface TargetCheck {
  target: string;
  value: string;
  met: boolean | undefined;
  note?: string;
}

const RSS_LIMIT_MIB = 256;
/** Issue 14's memory targets, by process name: the senders (pipe and gRPC) and the gRPC receiver daemon. */
const ISSUE14_RSS_LIMITS_MIB: ReadonlyArray<[string, number]> = [
  ['thinship send', 128],
  ['thinship send --to', 128],
  ['thinship serve', 256],
];

function targetChecks(sums: PathSummary[], incr: IncrementalCheck[], plan: PlanRow[], wan: WanRow[] = []): TargetCheck[] {
  const t: TargetCheck[] = [];
  // Issue 6: between sites, gRPC within 0.9× of the pipeline through the same relay at 50 and 100 ms.
  for (const w of wan.filter((x) => x.path === 'grpc' && x.rttMs >= 50)) {
    const ok = w.runs > w.failures;
    t.push({
      target: `${w.rttMs} ms RTT, 1 Gbit/s relay: gRPC ≥ 0.9× the zstd+socat pipeline`,
      value: ok ? `${fmtSpread(w.ratioToSocat, 2)}×` : 'no successful run',
      met: ok ? w.ratioToSocat.median >= 0.9 : false,
    });
  }
  // Issue 14: CPU per GiB of all processes, and speed against the C reference rows of the same run.
  const measured = (x: Spread) => !Number.isNaN(x.median);
  for (const s of sums.filter((x) => x.kind === 'full' && x.transport === 'pipe' && x.runs > 0)) {
    t.push({
      target: `${s.size}: pipe mode ≤ 1.5 CPU-s/GiB, send and recv together`,
      value: `${fmtSpread(s.allCpuSPerGiB, 2)} s/GiB`,
      met: s.allCpuSPerGiB.median <= 1.5,
    });
    t.push({
      target: `${s.size}: pipe mode ≥ 0.75× the C copy (dd iflag=direct | dd conv=fsync)`,
      value: measured(s.ratioToDd) ? `${fmtSpread(s.ratioToDd, 2)}×` : 'not measured (--only without dd)',
      met: measured(s.ratioToDd) ? s.ratioToDd.median >= 0.75 : undefined,
    });
  }
  for (const s of sums.filter((x) => x.kind === 'full' && x.transport === 'grpc' && x.runs > 0)) {
    t.push({
      target: `${s.size}: gRPC ≤ 5.5 CPU-s/GiB, sender and receiver together`,
      value: `${fmtSpread(s.allCpuSPerGiB, 2)} s/GiB`,
      met: s.allCpuSPerGiB.median <= 5.5,
    });
    t.push({
      target: `${s.size}: gRPC ≥ 1.3× the C zstd pipeline (dd | zstd -1 | socat)`,
      value: measured(s.ratioToCZstd) ? `${fmtSpread(s.ratioToCZstd, 2)}×` : 'not measured (--only without czstd)',
      met: measured(s.ratioToCZstd) ? s.ratioToCZstd.median >= 1.3 : undefined,
    });
  }
  for (const s of sums.filter((x) => x.kind === 'full' && x.transport === 'grpc')) {
    const ok = s.runs > 0 && measured(s.ratioToClassic);
    t.push({
      target: `${s.size}: gRPC full send ≥ 1.0× the zstd+socat pipeline`,
      value: ok ? `${fmtSpread(s.ratioToClassic, 2)}×` : s.runs ? 'not measured (--only without socat)' : 'not measured',
      met: ok ? s.ratioToClassic.median >= 1.0 : undefined,
    });
  }
  // Issue 14: peak RSS of the sending processes ≤ 128 MiB, of the gRPC receiver ≤ 256 MiB (max over repetitions).
  for (const s of sums.filter((x) => x.kind === 'full' && x.runs > 0)) {
    for (const [name, limitMiB] of ISSUE14_RSS_LIMITS_MIB) {
      const r = s.peakRssMiB[name];
      if (r) t.push({ target: `${s.size} ${s.transport}: ${name} peak RSS ≤ ${limitMiB} MiB`, value: `${r.max.toFixed(0)} MiB (max)`, met: r.max <= limitMiB });
    }
  }
  const own = (n: string) => n.startsWith('thinship');
  let worst = { mib: 0, who: '' };
  for (const s of sums)
    for (const [n, r] of Object.entries(s.peakRssMiB))
      if (own(n) && r.max > worst.mib) worst = { mib: r.max, who: `${n} (${s.size} ${s.kind} ${s.transport})` };
  for (const p of plan) if (p.peakRssMiB.max > worst.mib) worst = { mib: p.peakRssMiB.max, who: `planning ${p.tool} ${p.mappings} mappings` };
  if (worst.who)
    t.push({
      target: `under ${RSS_LIMIT_MIB} MiB RSS per thinship process`,
      value: `largest ${worst.mib.toFixed(0)} MiB: ${worst.who}`,
      met: worst.mib < RSS_LIMIT_MIB,
    });
  for (const s of sums.filter((x) => x.kind === 'full' && x.runs > 0 && !C_REFERENCE.has(x.transport))) {
    t.push({
      target: `${s.size} ${s.transport}: < 10% of the source volume left in the page cache`,
      value: `${fmtSpread(s.cacheLeftPct, 1)}%`,
      met: s.cacheLeftPct.median < 10,
    });
  }
  for (const i of incr)
    t.push({
      target: `${i.size} ${i.transport}: incremental ≤ 2× (changed bytes ÷ full throughput)`,
      value: `${fmtSpread(i.ratio, 2)}× (${fmtSpread(i.incrWallS, 2)} s vs ${i.expectedS.toFixed(2)} s)`,
      met: i.ratio.median <= 2,
    });
  // Issue 16: the warm daemon's incremental beside the one-shot CLI's, and against the CLI's full rate too.
  for (const d of incr.filter((x) => x.transport === 'daemon')) {
    const cli = incr.find((x) => x.transport === 'grpc' && x.size === d.size);
    if (!cli) continue;
    const vsCliFull = d.incrWallS.median / cli.expectedS;
    t.push({
      target: `${d.size}: incremental through the warm sender daemon ≤ 2× (changed bytes ÷ the one-shot send --to full throughput)`,
      value: `${vsCliFull.toFixed(2)}× (${d.incrWallS.median.toFixed(2)} s; one-shot send --to: ${cli.incrWallS.median.toFixed(2)} s, ${cli.ratio.median.toFixed(2)}×)`,
      met: vsCliFull <= 2,
    });
  }
  return t;
}

/** A ratio column: 1 on the reference row itself, blank when the reference was not run. */
function ratioCell(s: PathSummary, ref: Transport, r: Spread): string {
  if (s.transport === ref) return '1';
  return Number.isNaN(r.median) ? '' : fmtSpread(r, 2);
}

function report(sums: PathSummary[], incr: IncrementalCheck[], plan: PlanRow[], targets: TargetCheck[], reps: number, wanTable = ''): string {
  const out: string[] = [];
  const full = sums.filter((s) => s.kind === 'full');
  if (full.length) {
    out.push(
      `Full send (median (min–max) of ${reps} repetitions; MB/s = 10^6 bytes of mapped volume data per second; ratios to the classic pipeline and to the C rows per repetition;`,
    );
    out.push(
      "C rows: the same number of bytes from the pool's data file, `dd iflag=direct bs=1M | dd bs=1M conv=fsync` and `dd iflag=direct | zstd -1 | socat` → `socat | zstd -d | dd conv=fsync`; all CPU = every process of both sides;",
    );
    out.push(
      'cache left = source data still in the page cache after the send, % of the volume; "excl." = runs left out because another process had cached the source again before the run started)',
    );
    out.push(
      textTable(
        ['size', 'path', 'data MB/s', '× classic', '× C dd copy', '× C zstd', 'send CPU s/GiB', 'recv CPU s/GiB', 'all CPU s/GiB', 'cache left %', 'load1'],
        full.map((s) => [
          s.size,
          LABEL[s.transport] + (s.failures ? ` (${s.failures} failed)` : ''),
          fmtSpread(s.dataMBps),
          ratioCell(s, 'socat', s.ratioToClassic),
          ratioCell(s, 'dd', s.ratioToDd),
          ratioCell(s, 'czstd', s.ratioToCZstd),
          fmtSpread(s.senderCpuSPerGiB, 2),
          fmtSpread(s.receiverCpuSPerGiB, 2),
          fmtSpread(s.allCpuSPerGiB, 2),
          C_REFERENCE.has(s.transport) ? '' : fmtSpread(s.cacheLeftPct, 1) + (s.cacheRunsExcluded ? ` [${s.cacheRunsExcluded} excl.]` : ''),
          fmtSpread(s.load1, 1),
        ]),
      ),
    );
    out.push('');
    out.push('Peak RSS per process, MiB (max over repetitions)');
    out.push(
      textTable(
        ['size', 'path', 'processes'],
        full.map((s) => [
          s.size,
          LABEL[s.transport],
          Object.entries(s.peakRssMiB)
            .map(([n, r]) => `${n} ${r.max.toFixed(0)}`)
            .join(', '),
        ]),
      ),
    );
    out.push('');
  }
  if (incr.length) {
    out.push('Incremental (device 1 → 2, ~1% of the mapped blocks rewritten), right after a full send to the same target');
    out.push(
      textTable(
        ['size', 'path', 'changed MiB', 'time s', 'changed ÷ full MB/s', 'ratio', 'send CPU s', 'recv CPU s'],
        incr.map((i) => {
          const s = sums.find((x) => x.kind === 'incr' && x.size === i.size && x.transport === i.transport)!;
          const gib = i.changedBytes / GiB;
          return [
            i.size,
            LABEL[i.transport],
            (i.changedBytes / MiB).toFixed(1),
            fmtSpread(i.incrWallS, 2),
            `${i.expectedS.toFixed(2)} s`,
            fmtSpread(i.ratio, 2),
            (s.senderCpuSPerGiB.median * gib).toFixed(2),
            (s.receiverCpuSPerGiB.median * gib).toFixed(2),
          ];
        }),
      ),
    );
    out.push('');
  }
  if (plan.length) {
    out.push('Planning: thin_dump / thin_delta parsed into a plan (bench/plan-bench.ts)');
    out.push(
      textTable(
        ['mappings', 'tool', 'via', 'elements', 'M elements/s', 'peak RSS MiB', 'totals'],
        plan.map((p) => [
          String(p.mappings),
          p.tool,
          p.transport,
          String(p.elements),
          fmtSpread({ ...p.elementsPerS, median: p.elementsPerS.median / 1e6, min: p.elementsPerS.min / 1e6, max: p.elementsPerS.max / 1e6 }, 2),
          fmtSpread(p.peakRssMiB, 0),
          p.totalsOk ? 'exact' : 'WRONG',
        ]),
      ),
    );
    out.push('');
  }
  if (wanTable) {
    out.push('Between sites: full send through the delay-line relay at 1 Gbit/s (bench/wan/wan-bench.ts; ÷ socat = per repetition, same relay, same run)');
    out.push(wanTable.trimEnd());
    out.push('');
  }
  if (targets.length) {
    out.push('Targets');
    for (const t of targets) out.push(`  ${t.met === undefined ? 'n/a ' : t.met ? 'met ' : 'MISS'}  ${t.target}: ${t.value}${t.note ? ` (${t.note})` : ''}`);
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------

async function profileRuns(
  o: Options,
  pools: BenchPool[],
  base: Omit<RunCtx, 'pool' | 'target' | 'kind' | 'tag' | 'profDir'>,
  transports: Transport[],
): Promise<Array<{ transport: Transport; side: string; summary: ProfileSummary }>> {
  const out: Array<{ transport: Transport; side: string; summary: ProfileSummary }> = [];
  const pool = pools[0]!;
  await rm(o.cpuProf!, { recursive: true, force: true });
  for (const t of transports) {
    const profDir = join(o.cpuProf!, `${sizeName(pool.params.volumeBytes)}-${t}`);
    const target = join(base.runDir, 'targets', `${sizeName(pool.params.volumeBytes)}-${t}.img`);
    await rm(target, { force: true });
    log(`profiling ${t} (${sizeName(pool.params.volumeBytes)} full send) into ${profDir}`);
    const rec = await measure(t, { ...base, pool, target, kind: 'full', tag: `prof-${t}`, profDir }, 0, false);
    await rm(target, { force: true });
    if (!rec.ok) continue;
    for (const side of ['sender', 'receiver']) {
      const files = (await readdir(join(profDir, side)).catch(() => [] as string[])).filter((f) => f.endsWith('.cpuprofile')).sort();
      for (const f of files) {
        const s = await summarizeProfile(join(profDir, side, f), 25);
        // CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; thread 0 is the main thread.
        const tid = f.split('.')[4];
        const thread = tid === '0' ? 'main thread' : `worker thread ${tid}`;
        out.push({ transport: t, side: `${side} ${thread}`, summary: s });
        log(formatProfile(s, `${t} ${side}, ${thread}`));
      }
    }
  }
  return out;
}

/** `--report FILE`: the tables again from a results file (e.g. after the summary rules changed), without measuring. */
async function reportFrom(file: string): Promise<void> {
  const j = JSON.parse(await readFile(file, 'utf8')) as {
    runs: RunRecord[];
    plan?: { rows: PlanRow[] };
    wan?: { rows: WanRow[]; table: string };
    options: { reps: number };
    command: string;
    loadavgStart: number[];
    loadavgEnd: number[];
  };
  const sums = summarize(j.runs);
  const incr = incrementalChecks(sums, j.runs);
  const plan = j.plan?.rows ?? [];
  process.stdout.write(`${j.command}\n\n${report(sums, incr, plan, targetChecks(sums, incr, plan, j.wan?.rows ?? []), j.options.reps, j.wan?.table)}`);
  process.stdout.write(
    `load average at start ${j.loadavgStart.map((x) => x.toFixed(2)).join(' ')}, at end ${j.loadavgEnd.map((x) => x.toFixed(2)).join(' ')}\n`,
  );
}

async function main(): Promise<void> {
  const ri = process.argv.indexOf('--report');
  if (ri >= 0) return reportFrom(resolve(process.argv[ri + 1] ?? ''));
  const o = parseArgs(process.argv.slice(2));
  const started = new Date();
  const loadStart = loadavg();
  await mkdir(o.work, { recursive: true });
  const df = (await runTool('df', ['-B1', '--output=avail', o.work])).stdout.trim().split('\n').pop()!;
  const transports = TRANSPORTS.filter((t) => o.only.has(t));
  // Pool data + one target at a time (targets are removed after each run), with a margin.
  const needBytes = o.sizes.reduce((s, v) => s + v * 1.05, 0) + Math.max(0, ...o.sizes) * 1.1 + 2 * GiB;
  if (transports.length && Number(df) < needBytes)
    throw new Error(
      `${o.work} has ${(Number(df) / GiB).toFixed(1)} GiB free; this run needs about ${(needBytes / GiB).toFixed(1)} GiB (pools + one target). Use --work elsewhere or smaller --sizes.`,
    );
  // Leftovers of runs that were killed (their targets can be GiBs): their process is gone.
  for (const d of await readdir(o.work)) {
    const pid = /^run-(\d+)$/.exec(d)?.[1];
    if (
      pid &&
      !(await stat(`/proc/${pid}`).then(
        () => true,
        () => false,
      ))
    )
      await rm(join(o.work, d), { recursive: true, force: true });
  }
  const runDir = join(o.work, `run-${process.pid}`);
  await rm(runDir, { recursive: true, force: true });
  await mkdir(runDir, { recursive: true });
  const app = await prepareApp(o, runDir);
  log(`thinship build: ${app.root}; work: ${o.work}; this run: ${runDir}; load ${loadStart.map((x) => x.toFixed(2)).join(' ')}`);
  const certs = join(o.work, 'certs');
  const grpcDir = join(runDir, 'grpc');
  const tmp = join(runDir, 'tmp');
  await mkdir(grpcDir, { recursive: true });
  await mkdir(tmp, { recursive: true });
  await mkdir(join(runDir, 'targets'), { recursive: true });
  if (transports.includes('grpc') || transports.includes('daemon')) await ensureCerts(app, certs);

  const pools: BenchPool[] = [];
  const runs: RunRecord[] = [];
  if (transports.length) {
    for (const size of o.sizes) pools.push(await ensureBenchPool(o.work, { ...DEFAULT_POOL_PARAMS, volumeBytes: size }, log));
    for (const pool of pools) {
      const sz = sizeName(pool.params.volumeBytes);
      log(
        `${sz}: ${((pool.mappedBlocksA * pool.params.blockBytes) / MiB).toFixed(0)} MiB mapped of ${(pool.params.volumeBytes / MiB).toFixed(0)} MiB, ${pool.changedBlocks} blocks rewritten for the incremental, zstd -1 sample ratio ${pool.sampleZstd1Ratio.toFixed(2)}`,
      );
      for (let rep = 1; rep <= o.reps; rep++) {
        // Rotate the order so no path always runs first (or right after another's writeback).
        const order = transports.map((_, i) => transports[(i + rep - 1) % transports.length]!);
        for (const t of order) {
          const target = join(runDir, 'targets', `${sz}-${t}.img`);
          await rm(target, { force: true });
          const base = { app, runDir, pool, target, certs, grpcDir, tmp };
          const verify = o.verify === 'all' || (o.verify === 'first' && rep === 1);
          const full = await measure(t, { ...base, kind: 'full', tag: `${sz}-${t}-full-${rep}` }, rep, verify);
          runs.push(full);
          if (full.ok && o.only.has('incr') && !C_REFERENCE.has(t))
            runs.push(await measure(t, { ...base, kind: 'incr', tag: `${sz}-${t}-incr-${rep}` }, rep, verify));
          // Deleting the target also throws away its dirty pages: nothing left to write back during the next run.
          await rm(target, { force: true });
        }
      }
      await stopWarmDaemons();
    }
  }
  const sums = summarize(runs);
  const incr = incrementalChecks(sums, runs);
  let plan: Awaited<ReturnType<typeof runPlanBench>> | undefined;
  if (o.only.has('plan')) plan = await runPlanBench(app, o, runDir);
  let wan: Awaited<ReturnType<typeof runWanBench>> | undefined;
  if (o.only.has('wan')) wan = await runWanBench(app, o, runDir);
  const targets = targetChecks(sums, incr, plan?.rows ?? [], wan?.rows ?? []);
  if (!transports.includes('grpc') && transports.length)
    targets.unshift({ target: 'gRPC full send ≥ 1.0× the zstd+socat pipeline', value: 'not measured (--only without grpc)', met: undefined });
  let profiles: Awaited<ReturnType<typeof profileRuns>> = [];
  if (o.cpuProf && pools.length)
    profiles = await profileRuns(
      o,
      pools,
      { app, runDir, certs, grpcDir, tmp },
      transports.filter((t) => !C_REFERENCE.has(t)),
    );
  await stopWarmDaemons();
  const loadEnd = loadavg();

  const text = report(sums, incr, plan?.rows ?? [], targets, o.reps, wan?.table);
  process.stdout.write(`\n${text}`);
  process.stdout.write(`load average at start ${loadStart.map((x) => x.toFixed(2)).join(' ')}, at end ${loadEnd.map((x) => x.toFixed(2)).join(' ')}\n`);
  if (plan?.error) process.stdout.write(`plan benchmark: ${plan.error}\n`);
  if (wan?.error) process.stdout.write(`wan benchmark: ${wan.error}\n`);

  await mkdir(dirname(o.json), { recursive: true });
  await writeFile(
    o.json,
    JSON.stringify(
      {
        date: started.toISOString(),
        finished: new Date().toISOString(),
        command: `node dist/bench/bench.js ${process.argv.slice(2).join(' ')}`.trim(),
        machine: await machineInfo(),
        git: await gitInfo(),
        options: { ...o, only: [...o.only], json: relative(REPO_ROOT, o.json) },
        loadavgStart: loadStart,
        loadavgEnd: loadEnd,
        pools,
        summary: sums,
        incremental: incr,
        plan: plan ? { rows: plan.rows, error: plan.error, raw: plan.raw } : undefined,
        wan: wan ? { rows: wan.rows, table: wan.table, error: wan.error, raw: wan.raw } : undefined,
        targets,
        profiles: profiles.map((p) => ({ transport: p.transport, side: p.side, ...p.summary })),
        runs,
        table: text,
      },
      null,
      2,
    ) + '\n',
  );
  process.stdout.write(`results: ${o.json}\n`);
  await rm(runDir, { recursive: true, force: true });
  if (runs.some((r) => !r.ok) || plan?.error || wan?.error) process.exitCode = 1;
}

await main();
