/**
 * The transports alone through the delay relay, without thinship's disk,
 * compression or checksums (which are CPU-bound on this machine well below
 * 1 Gbit/s): does HTTP/2 flow control let one gRPC stream fill a long link?
 *
 *   node dist/bench/wan/transport-bench.js [--bytes 512M] [--rtts 0,50,100] [--rate 1gbit]
 *        [--windows 64K,8M,32M] [--reps 3] [--work DIR] [--stripes N] [--stripe-over streams|connections]
 *        [--relay-sched fifo|other]
 * The relay runs under SCHED_FIFO as in wan-bench.ts (relay-proc.ts says why).
 *
 * For every RTT and repetition (interleaved, the order alternating):
 *   tcp       `socat -u -b 256K STDIN TCP:RELAY` → relay → `socat -u -b 256K TCP-LISTEN STDOUT | wc -c`: one TCP stream
 *   grpc-W    a grpc-js client stream of 1 MiB messages over mTLS → relay → a
 *             grpc-js server that counts and drops them, its receive windows
 *             (stream and connection) set to W by src/rpc/http2-window.ts
 *             (64K: HTTP/2's default, untouched)
 * With --stripes N, each gRPC transfer is N client streams on one connection
 * (--stripe-over streams) or on N connections (--stripe-over connections).
 * Prints MB/s (10^6 bytes of payload per second) as median (min–max), and
 * each gRPC figure ÷ tcp in the same repetition.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { raiseReceiveWindow } from '../../src/rpc/http2-window.js';
import { runTool } from '../../src/exec/run.js';
import { freePort, startBash, waitListening } from '../proc.js';
import { fmtSpread, spread, textTable } from '../stats.js';
import { REALTIME, startRelayProcess, type RelayProcess } from './relay-proc.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MESSAGE_BYTES = 1024 * 1024;
/** socat's default 8 KiB blocks cost more CPU than the relay here: the TCP reference uses 256 KiB. */
const SOCAT_BUFFER_BYTES = 256 * 1024;
const ident = (b: Buffer) => b;
const SERVICE = {
  up: {
    path: '/thinship.bench.Wan/Up',
    requestStream: true,
    responseStream: false,
    requestSerialize: ident,
    requestDeserialize: ident,
    responseSerialize: ident,
    responseDeserialize: ident,
    originalName: 'up',
  },
} as const;

// ---- the receiving end, a child process: `transport-bench.js --sink WINDOW CERTDIR` --------------
async function sink(windowBytes: number, certs: string): Promise<void> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 2 * MESSAGE_BYTES });
  if (windowBytes > 65535) raiseReceiveWindow(server, windowBytes);
  server.addService(SERVICE, {
    up: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      let n = 0;
      call.on('data', (b: Buffer) => {
        n += b.length;
      });
      call.on('end', () => cb(null, Buffer.from(String(n))));
    },
  });
  const creds = grpc.ServerCredentials.createSsl(
    readFileSync(join(certs, 'ca.crt')),
    [{ cert_chain: readFileSync(join(certs, 'server.crt')), private_key: readFileSync(join(certs, 'server.key')) }],
    true,
  );
  server.bindAsync('127.0.0.1:0', creds, (e, port) => {
    if (e) throw e;
    process.send!({ port });
  });
}

interface Options {
  bytes: number;
  rttsMs: number[];
  rate: string;
  windows: number[];
  reps: number;
  work: string;
  relaySched: 'fifo' | 'other';
  stripes: number;
  stripeOver: 'streams' | 'connections';
}

function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s.trim());
  if (!m) throw new Error(`bad size "${s}"`);
  return Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
}

function sizeName(b: number): string {
  return b % 2 ** 20 === 0 ? `${b / 2 ** 20}M` : b % 1024 === 0 ? `${b / 1024}K` : String(b);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    bytes: 512 * 2 ** 20,
    rttsMs: [0, 50, 100],
    rate: '1gbit',
    windows: [65535, 8 * 2 ** 20, 32 * 2 ** 20],
    reps: 3,
    work: '/var/tmp/thinship-wan',
    relaySched: 'fifo',
    stripes: 1,
    stripeOver: 'streams',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--bytes') o.bytes = parseSize(v());
    else if (a === '--rtts') o.rttsMs = v().split(',').map(Number);
    else if (a === '--rate') o.rate = v();
    else if (a === '--windows')
      o.windows = v()
        .split(',')
        .map((w) => (w.toUpperCase() === '64K' ? 65535 : parseSize(w)));
    else if (a === '--reps') o.reps = Number(v());
    else if (a === '--work') o.work = resolve(v());
    else if (a === '--relay-sched') o.relaySched = v() === 'other' ? 'other' : 'fifo';
    else if (a === '--stripes') o.stripes = Number(v());
    else if (a === '--stripe-over') {
      const x = v();
      if (x !== 'streams' && x !== 'connections') throw new Error('--stripe-over: streams or connections');
      o.stripeOver = x;
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

function relayTo(o: Options, port: number, rttMs: number): Promise<RelayProcess> {
  return startRelayProcess(`127.0.0.1:${port}`, rttMs / 2, o.rate, [], undefined, o.relaySched === 'fifo' ? REALTIME : []);
}

/** One TCP stream of `bytes` through the relay, socat at both ends. */
async function runTcp(o: Options, rttMs: number): Promise<number> {
  const port = await freePort();
  const rx = startBash(`socat -u -b ${SOCAT_BUFFER_BYTES} TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr STDOUT | wc -c`);
  let rxDone = false;
  void rx.done.then(() => {
    rxDone = true;
  });
  await waitListening(port, 10_000, () => !rxDone);
  const relay = await relayTo(o, port, rttMs);
  try {
    const t0 = performance.now();
    const tx = await startBash(`head -c ${o.bytes} /dev/zero | socat -u -b ${SOCAT_BUFFER_BYTES} STDIN TCP:127.0.0.1:${relay.port}`).done;
    const r = await rx.done;
    const s = (performance.now() - t0) / 1000;
    if (tx.code !== 0 || r.code !== 0 || Number(r.stdout.trim()) !== o.bytes)
      throw new Error(`tcp run failed: ${tx.stderr} ${r.stderr} got ${r.stdout.trim()} bytes`);
    return o.bytes / 1e6 / s;
  } finally {
    await relay.stop();
  }
}

type UpClient = grpc.Client & { up(cb: (e: grpc.ServiceError | null, r?: Buffer) => void): grpc.ClientWritableStream<Buffer> };

/**
 * `bytes` through the relay to a sink child with receive window `windowBytes`:
 * one client stream, or o.stripes of them (each 1/N of the bytes) on one
 * connection (streams) or on one connection each (connections).
 */
async function runGrpc(o: Options, rttMs: number, windowBytes: number, certs: string): Promise<number> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--sink', String(windowBytes), certs], { stdio: 'inherit' });
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  const relay = await relayTo(o, port, rttMs);
  const Client = grpc.makeGenericClientConstructor(SERVICE, 'Wan');
  const creds = grpc.credentials.createSsl(
    readFileSync(join(certs, 'ca.crt')),
    readFileSync(join(certs, 'client.key')),
    readFileSync(join(certs, 'client.crt')),
  );
  const n = Math.max(1, o.stripes);
  // grpc-js shares a connection between channels with equal options: a distinct option value per stripe gives each its own.
  const clients = Array.from(
    { length: o.stripeOver === 'connections' ? n : 1 },
    (_, i) =>
      new Client(`127.0.0.1:${relay.port}`, creds, {
        'grpc.max_send_message_length': 2 * MESSAGE_BYTES,
        'grpc.ssl_target_name_override': 'localhost',
        'thinship.bench.stripe': i,
      }) as unknown as UpClient,
  );
  try {
    const msg = Buffer.alloc(MESSAGE_BYTES, 0x5a); // identity serializer, never modified: safe to hand over repeatedly
    const perStripe = Math.ceil(o.bytes / MESSAGE_BYTES / n) * MESSAGE_BYTES;
    const t0 = performance.now();
    const one = async (client: UpClient): Promise<number> => {
      let answer!: Promise<Buffer>;
      const call = await new Promise<grpc.ClientWritableStream<Buffer>>((resolveCall) => {
        answer = new Promise<Buffer>((res, rej) => {
          resolveCall(client.up((e, r) => (e ? rej(e) : res(r!))));
        });
      });
      for (let sent = 0; sent < perStripe; sent += MESSAGE_BYTES) {
        if (!call.write(msg)) await once(call, 'drain');
      }
      call.end();
      return Number((await answer).toString());
    };
    const got = (await Promise.all(Array.from({ length: n }, (_, i) => one(clients[i % clients.length]!)))).reduce((x, y) => x + y, 0);
    const s = (performance.now() - t0) / 1000;
    if (got !== perStripe * n) throw new Error(`the sink counted ${got} bytes, sent ${perStripe * n}`);
    return got / 1e6 / s;
  } finally {
    for (const c of clients) c.close();
    await relay.stop();
    child.kill();
    await once(child, 'exit').catch(() => undefined);
  }
}

async function main(o: Options): Promise<void> {
  await mkdir(o.work, { recursive: true });
  const certs = join(o.work, 'certs');
  if (
    !(await readFile(join(certs, 'client.crt'), 'utf8').then(
      () => true,
      () => false,
    ))
  )
    await runTool(process.execPath, [join(REPO_ROOT, 'dist/bin/thinship.js'), 'certs', '--out', certs]);
  const paths = ['tcp', ...o.windows.map((w) => `grpc-${sizeName(w)}`)];
  process.stderr.write(
    `transport-bench: ${sizeName(o.bytes)} per run, rate ${o.rate}, RTTs ${o.rttsMs.join(', ')} ms, ${o.reps} reps, load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}\n`,
  );
  const res = new Map<string, number[]>();
  const loads: number[] = [];
  for (let rep = 1; rep <= o.reps; rep++) {
    for (const rtt of o.rttsMs) {
      const order = rep % 2 ? paths : [...paths].reverse();
      for (const p of order) {
        const w = p === 'tcp' ? 0 : o.windows[paths.indexOf(p) - 1]!;
        // HTTP/2's default window at a long RTT moves < 1 MB/s: 8 MiB of it tells the story.
        const opt = p !== 'tcp' && w <= 65535 && rtt > 0 ? { ...o, bytes: Math.min(o.bytes, 8 * 2 ** 20) } : o;
        loads.push(loadavg()[0]!);
        const mbps = p === 'tcp' ? await runTcp(opt, rtt) : await runGrpc(opt, rtt, w, certs);
        process.stderr.write(`  rtt ${String(rtt).padStart(3)} ms ${p.padEnd(9)} rep ${rep}: ${mbps.toFixed(1)} MB/s; load ${loadavg()[0]!.toFixed(2)}\n`);
        const k = `${rtt}|${p}|${rep}`;
        res.set(k, [mbps]);
      }
    }
  }
  const rows: string[][] = [];
  for (const rtt of o.rttsMs) {
    for (const p of paths) {
      const xs: number[] = [];
      const ratios: number[] = [];
      for (let rep = 1; rep <= o.reps; rep++) {
        const x = res.get(`${rtt}|${p}|${rep}`)?.[0] ?? NaN;
        xs.push(x);
        ratios.push(x / (res.get(`${rtt}|tcp|${rep}`)?.[0] ?? NaN));
      }
      rows.push([
        `${rtt} ms`,
        p === 'tcp' ? 'TCP (socat -b 256K)' : `gRPC mTLS, window ${p.slice(5)}${o.stripes > 1 ? `, ${o.stripes} ${o.stripeOver}` : ''}`,
        fmtSpread(spread(xs), 1),
        p === 'tcp' ? '1' : fmtSpread(spread(ratios), 2),
      ]);
    }
  }
  process.stdout.write(`\n${textTable(['RTT', 'transport', 'MB/s', '÷ TCP'], rows)}\nload during the runs: ${fmtSpread(spread(loads), 1)}\n`);
}

const argv = process.argv.slice(2);
if (argv[0] === '--sink') {
  await sink(Number(argv[1]), argv[2]!);
} else if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(parseArgs(argv)).catch((e: unknown) => {
    process.stderr.write(`transport-bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
