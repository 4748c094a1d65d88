/**
 * Peak memory and throughput of `thinship serve` under concurrent transfers
 * (not a test; run by hand after `npm run build`):
 *
 *   node dist/bench/receiver-memory.js [--transfers 16] [--chunks 40] [--chunk-mib 4] [--runs 5]
 *        [--serve-nice N] [--dir DIR] [--cli PATH/thinship.js] [--config-json '{"maxBufferedBytes":...}'] [--stall-seconds 900]
 *
 * Each run starts one serve process (mTLS on loopback, the default config
 * unless --config-json adds keys) and sends `transfers` concurrent transfers
 * of `chunks` incompressible RAW chunks (sha256 per chunk), one connection
 * each, from this process, as fast as HTTP/2 flow control lets them go, into
 * sparse files under DIR. It prints, per run, serve's VmHWM (peak RSS of the
 * whole process, workers included), the main thread's process.memoryUsage()
 * at its RSS peak (sampled by bench/memory-sampler.ts) and the aggregate
 * MiB/s; then min / median / max of the peaks and of the rates.
 *
 * --serve-nice N lowers serve's CPU priority, so the receiver rather than the
 * senders is the bottleneck: every transfer waits on the receiver with full
 * windows, the case the memory budget is for. --transfers 1 --chunks 256
 * measures one 1 GiB transfer's throughput.
 */
import { mkdtempSync, mkdirSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { ReceiverClient } from '../src/rpc/client.js';
import { StreamDigest } from '../src/stream/digest.js';
import { makeTestCerts, writeConfig, startServe, stopServe, type TestCerts } from '../test/service/helpers.js';
import { beginMsg, sha } from '../test/service/receiver-helpers.js';
import { cliPath } from '../test/helpers/cli.js';
import { spread, fmtSpread } from './stats.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : dflt;
};
const MIB = 1024 * 1024;
const TRANSFERS = Number(opt('--transfers', '16'));
const CHUNKS = Number(opt('--chunks', '40'));
const CHUNK_BYTES = Number(opt('--chunk-mib', '4')) * MIB;
const RUNS = Number(opt('--runs', '5'));
const NICE = Number(opt('--serve-nice', '0'));
const CLI = opt('--cli', cliPath);
const STALL_S = Number(opt('--stall-seconds', '900'));
const EXTRA_CONFIG = JSON.parse(opt('--config-json', '{}')) as Record<string, unknown>;
const sampler = fileURLToPath(new URL('./memory-sampler.js', import.meta.url));

function vmHwmMiB(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

async function oneTransfer(client: ReceiverClient, id: string, target: string, payloads: { data: Buffer; sum: Buffer }[]): Promise<void> {
  const { call, response } = client.applyStream();
  const outcome = response.catch((e: Error & { code?: number }) => {
    throw new Error(`transfer ${id}: the call failed (gRPC code ${e.code}): ${e.message}`);
  });
  outcome.catch(() => undefined);
  const volume = CHUNKS * CHUNK_BYTES;
  call.write(beginMsg(id, target, { volumeSizeBytes: volume, plannedDataBytes: volume, compression: 'COMPRESSION_NONE' }));
  const digest = new StreamDigest();
  for (let i = 0; i < CHUNKS; i++) {
    const p = payloads[i % payloads.length]!;
    digest.addData(i * CHUNK_BYTES, CHUNK_BYTES, p.sum);
    const ok = call.write({
      kind: 'data',
      data: { offsetBytes: i * CHUNK_BYTES, lengthBytes: CHUNK_BYTES, payload: p.data, encoding: 'ENCODING_RAW', checksum: p.sum },
    });
    // A failed call never drains: its error (through `response`) ends the wait, and the run.
    if (!ok) await Promise.race([new Promise<void>((r) => call.once('drain', () => r())), outcome]);
  }
  call.write({ kind: 'end', end: { records: CHUNKS + 2, dataRecords: CHUNKS, unmapRecords: 0, dataBytes: volume, unmapBytes: 0, digest: digest.state } });
  call.end();
  const r = await outcome;
  if (r.state?.status !== 'TRANSFER_STATUS_COMPLETE') throw new Error(`transfer ${id} did not complete: ${JSON.stringify(r.state)}`);
}

async function run(dir: string, certs: TestCerts, n: number): Promise<{ peakMiB: number; mibPerS: number; sample: string }> {
  const targets = join(dir, `targets-${n}`);
  mkdirSync(targets);
  const samples = join(dir, `samples-${n}.jsonl`);
  const cfg = writeConfig(join(dir, `rx-${n}.json`), {
    tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
    stateDir: join(dir, `state-${n}`),
    identities: { 'sender-a': { directories: [targets] }, 'sender-b': { directories: [targets] } },
    ...EXTRA_CONFIG,
  });
  const s = await startServe(['--listen', '127.0.0.1:0', '--config', cfg], { NODE_OPTIONS: `--import ${sampler}`, THINSHIP_MEMORY_SAMPLES: samples }, CLI);
  if (NICE) setPriority(s.child.pid!, NICE);
  const payloads = Array.from({ length: 4 }, () => {
    const data = randomBytes(CHUNK_BYTES);
    return { data, sum: sha(data) };
  });
  const address = `127.0.0.1:${s.port}`;
  const clients = await Promise.all(
    Array.from({ length: TRANSFERS }, (_, i) => ReceiverClient.connect({ address, tls: i % 2 === 0 ? certs.clientA : certs.clientB, serverName: 'localhost' })),
  );
  try {
    const t0 = performance.now();
    // A stalled run says so (with serve's last log lines) instead of hanging.
    let stall: NodeJS.Timeout | undefined;
    // serve logs what each transfer waits for on SIGUSR2 (its last log line here).
    const stalled = new Promise<never>((_, reject) => {
      stall = setTimeout(() => {
        s.child.kill('SIGUSR2');
        setTimeout(() => reject(new Error(`run ${n + 1} did not finish within ${STALL_S} s; serve's log ends:\n${s.stderr().slice(-20000)}`)), 3000);
      }, STALL_S * 1000);
    });
    await Promise.race([Promise.all(clients.map((c, i) => oneTransfer(c, `mem-${n}-${i}`, join(targets, `t${i}.img`), payloads))), stalled]).finally(() =>
      clearTimeout(stall),
    );
    const secs = (performance.now() - t0) / 1000;
    const peakMiB = vmHwmMiB(s.child.pid!);
    return { peakMiB, mibPerS: (TRANSFERS * CHUNKS * CHUNK_BYTES) / MIB / secs, sample: samples };
  } finally {
    for (const c of clients) c.close();
    await stopServe(s);
    rmSync(targets, { recursive: true, force: true });
    rmSync(join(dir, `state-${n}`), { recursive: true, force: true });
  }
}

const dir = mkdtempSync(join(opt('--dir', tmpdir()), 'thinship-rxmem-'));
try {
  const certs = await makeTestCerts(join(dir, 'certs'));
  process.stdout.write(
    `serve ${CLI}: ${TRANSFERS} concurrent transfers x ${CHUNKS} chunks of ${CHUNK_BYTES / MIB} MiB, ${RUNS} runs, serve nice ${NICE}, extra config ${JSON.stringify(EXTRA_CONFIG)}\n`,
  );
  const peaks: number[] = [];
  const rates: number[] = [];
  for (let n = 0; n < RUNS; n++) {
    const r = await run(dir, certs, n);
    peaks.push(r.peakMiB);
    rates.push(r.mibPerS);
    const sample = existsSync(r.sample) ? readFileSync(r.sample, 'utf8').trim() : '(no sample)';
    process.stdout.write(`run ${n + 1}: serve VmHWM ${r.peakMiB.toFixed(0)} MiB, ${r.mibPerS.toFixed(0)} MiB/s; main thread ${sample}\n`);
  }
  process.stdout.write(
    `peak RSS MiB min/median/max: ${Math.min(...peaks).toFixed(0)} / ${spread(peaks).median.toFixed(0)} / ${Math.max(...peaks).toFixed(0)}\n`,
  );
  process.stdout.write(`MiB/s median (min-max): ${fmtSpread(spread(rates))}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
