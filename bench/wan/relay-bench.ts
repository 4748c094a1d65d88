/**
 * The delay relay's own ceiling and accuracy (docs/wan.md):
 *
 *   node dist/bench/wan/relay-bench.js [--bytes 2G] [--reps 3] [--cases 0:unlimited,25:1gbit]
 *
 * For each case DELAY_MS:RATE, the relay (src/testing/delay-relay.ts) runs as
 * its own process, as it does in the WAN benchmark; this process pushes
 * --bytes through it to a sink as fast as TCP lets it and reports the
 * throughput, the relay's CPU seconds per GiB (/proc) and its delivery
 * lateness. Source and sink share this process's core; the relay has the
 * other one on an idle machine.
 */
import * as net from 'node:net';
import { loadavg } from 'node:os';
import { procCpuSeconds } from '../proc.js';
import { spread, fmtSpread } from '../stats.js';
import { parseRate } from '../../src/testing/delay-relay.js';
import { startRelayProcess } from './relay-proc.js';

function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s.trim());
  if (!m) throw new Error(`bad size "${s}"`);
  return Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] || ' ').toUpperCase());
}

/** Pushes `bytes` through relayPort to a sink listening on sinkPort; resolves with seconds. */
async function push(relayPort: number, sink: net.Server, bytes: number): Promise<number> {
  const got = new Promise<number>((resolve, reject) => {
    sink.once('connection', (s) => {
      let n = 0;
      s.on('data', (b: Buffer) => {
        n += b.length;
      });
      s.on('end', () => {
        s.end();
        if (n === bytes) resolve(n);
        else reject(new Error(`sink got ${n} of ${bytes} bytes`));
      });
      s.on('error', reject);
    });
  });
  const block = Buffer.alloc(256 * 1024, 0x5a);
  const t0 = performance.now();
  const c = net.connect({ port: relayPort, host: '127.0.0.1', noDelay: true });
  await new Promise<void>((r, j) => {
    c.once('connect', r);
    c.once('error', j);
  });
  let sent = 0;
  while (sent < bytes) {
    const n = Math.min(block.length, bytes - sent);
    sent += n;
    if (!c.write(n === block.length ? block : block.subarray(0, n))) await new Promise((r) => c.once('drain', r));
  }
  c.end();
  await got;
  const s = (performance.now() - t0) / 1000;
  c.destroy();
  return s;
}

async function main(argv: string[]): Promise<void> {
  let bytes = 2 * 1024 ** 3;
  let reps = 3;
  let cases = '0:unlimited,0:1gbit,25:1gbit,50:1gbit';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => argv[++i] ?? '';
    if (a === '--bytes') bytes = parseSize(v());
    else if (a === '--reps') reps = Number(v());
    else if (a === '--cases') cases = v();
    else throw new Error(`unknown argument ${a}`);
  }
  const sink = net.createServer({ noDelay: true });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const sinkPort = (sink.address() as net.AddressInfo).port;
  process.stdout.write(
    `relay ceiling: ${(bytes / 2 ** 30).toFixed(2)} GiB per run, ${reps} reps, load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}\n`,
  );
  for (const c of cases.split(',')) {
    const [d, r] = c.split(':') as [string, string];
    const delayMs = Number(d);
    const rateBits = parseRate(r);
    const extra = !Number.isFinite(rateBits) && delayMs > 0 ? ['--capacity', '64M'] : [];
    const mbps: number[] = [];
    const cpu: number[] = [];
    let late = '';
    for (let k = 0; k < reps; k++) {
      const relay = await startRelayProcess(`127.0.0.1:${sinkPort}`, delayMs, r, extra);
      const c0 = await procCpuSeconds(relay.pid);
      const s = await push(relay.port, sink, bytes);
      const c1 = await procCpuSeconds(relay.pid);
      const st = (await relay.stop()) as {
        up?: { lateMsMax: number; lateMsMean: number; heldBytesMax: number; bytes: number; chunks: number; pauses: number };
      };
      mbps.push(bytes / 1e6 / s);
      cpu.push((c1 - c0) / (bytes / 2 ** 30));
      if (st.up)
        late = `late mean ${st.up.lateMsMean.toFixed(2)} ms max ${st.up.lateMsMax.toFixed(1)} ms, held max ${(st.up.heldBytesMax / 2 ** 20).toFixed(1)} MiB, ${(st.up.bytes / st.up.chunks / 1024).toFixed(0)} KiB a read, ${st.up.pauses} pauses`;
    }
    process.stdout.write(
      `  delay ${String(delayMs).padStart(3)} ms one-way, rate ${r.padEnd(9)}: ${fmtSpread(spread(mbps))} MB/s, relay CPU ${fmtSpread(spread(cpu), 2)} s/GiB; last run ${late}; load ${loadavg()[0]!.toFixed(2)}\n`,
    );
  }
  sink.close();
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  });
}
