/**
 * Loopback throughput of the gRPC transport (not a test; run by hand):
 *
 *   npx tsc -p . && node dist/test/service/bench-grpc.js [--size-mib 512] [--dir /dev/shm] [--runs 2] [--raw-only|--send-only]
 *
 * 1. raw: grpc-js client streaming of 1 MiB messages to a receiver process
 *    that discards them, with HTTP/2's default 64 KiB receive window and
 *    with thinship's raised window (rpc/http2-window.ts), plaintext and mTLS.
 * 2. send: `thinship serve` and `thinship send --to` as two processes, a full
 *    send of a synthetic offline pool (~2:1 compressible data, page-cached on
 *    tmpfs) into a file on tmpfs, window default vs raised, plaintext vs mTLS.
 * Prints one line per run and the median per configuration. The machine is
 * shared: compare configurations measured close together.
 */
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, existsSync, writeFileSync, rmSync, openSync, writeSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { runTool } from '../../src/exec/run.js';
import { fillDemoBlock } from '../../src/thin/demo-pool.js';
import { makeCertificates } from '../../src/rpc/certs.js';
import { raiseReceiveWindow } from '../../src/rpc/http2-window.js';
import { cliPath } from '../helpers/cli.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]! : dflt;
};
const BLOCK = 64 * 1024;
const ident = (b: Buffer) => b;
const SVC = {
  up: {
    path: '/bench.B/Up',
    requestStream: true,
    responseStream: false,
    requestSerialize: ident,
    requestDeserialize: ident,
    responseSerialize: ident,
    responseDeserialize: ident,
    originalName: 'up',
  },
} as const;

// ---- raw receiver child: `bench-grpc.js --raw-server WINDOW TLSDIR|-` ---------------------------
if (args[0] === '--raw-server') {
  const windowBytes = Number(args[1]);
  const tlsDir = args[2]!;
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 8 << 20 });
  if (windowBytes > 65535) raiseReceiveWindow(server, windowBytes);
  server.addService(SVC, {
    up: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      let n = 0;
      call.on('data', (b: Buffer) => {
        n += b.length;
      });
      call.on('end', () => cb(null, Buffer.from(String(n))));
    },
  });
  const creds =
    tlsDir === '-'
      ? grpc.ServerCredentials.createInsecure()
      : grpc.ServerCredentials.createSsl(
          readFileSync(join(tlsDir, 'ca.crt')),
          [{ cert_chain: readFileSync(join(tlsDir, 'server.crt')), private_key: readFileSync(join(tlsDir, 'server.key')) }],
          true,
        );
  server.bindAsync('127.0.0.1:0', creds, (e, port) => {
    if (e) throw e;
    process.send!({ port });
  });
} else {
  await main();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function rawRun(windowBytes: number, tlsDir: string | undefined, totalMiB: number): Promise<number> {
  const child = fork(new URL(import.meta.url).pathname, ['--raw-server', String(windowBytes), tlsDir ?? '-'], { stdio: 'inherit' });
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  const creds = tlsDir
    ? grpc.credentials.createSsl(readFileSync(join(tlsDir, 'ca.crt')), readFileSync(join(tlsDir, 'client.key')), readFileSync(join(tlsDir, 'client.crt')))
    : grpc.credentials.createInsecure();
  const Client = grpc.makeGenericClientConstructor(SVC, 'B');
  const client = new Client(`127.0.0.1:${port}`, creds, {
    'grpc.max_send_message_length': 8 << 20,
    ...(tlsDir ? { 'grpc.ssl_target_name_override': 'localhost' } : {}),
  }) as unknown as grpc.Client & { up: (cb: (e: Error | null) => void) => grpc.ClientWritableStream<Buffer> };
  const chunk = 1024 * 1024;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const call = client.up((e) => (e ? reject(e) : resolve()));
    let i = 0;
    const n = totalMiB;
    // a fresh buffer per message (never reuse a buffer handed to write())
    const pump = () => {
      while (i < n) {
        i++;
        if (!call.write(Buffer.allocUnsafe(chunk).fill(i & 255))) {
          call.once('drain', pump);
          return;
        }
      }
      call.end();
    };
    pump();
  });
  const mibs = totalMiB / ((performance.now() - t0) / 1000);
  client.close();
  child.kill();
  return mibs;
}

async function buildPool(dir: string, sizeMiB: number): Promise<{ meta: string; data: string; volumeBytes: number }> {
  const blocks = (sizeMiB * 1024 * 1024) / BLOCK;
  const meta = join(dir, `bench-${sizeMiB}.tmeta`);
  const data = join(dir, `bench-${sizeMiB}.tdata`);
  // one device, every block mapped, plus an unmapped tail of the same size (volume = 2x data)
  const volumeBytes = 2 * blocks * BLOCK;
  if (!existsSync(meta) || !existsSync(data)) {
    const xml = join(dir, `bench-${sizeMiB}.xml`);
    writeFileSync(
      xml,
      `<superblock uuid="" time="1" transaction="1" version="2" data_block_size="${BLOCK / 512}" nr_data_blocks="${blocks}">\n` +
        ` <device dev_id="1" mapped_blocks="${blocks}" transaction="0" creation_time="0" snap_time="0">\n` +
        `  <range_mapping origin_begin="0" data_begin="0" length="${blocks}" time="0"/>\n </device>\n</superblock>\n`,
    );
    writeFileSync(meta, Buffer.alloc(0));
    closeSync(openSync(meta, 'w'));
    await runTool('truncate', ['-s', '64M', meta]);
    await runTool('thin_restore', ['-i', xml, '-o', meta]);
    const fd = openSync(data, 'w');
    const buf = Buffer.alloc(BLOCK);
    for (let b = 0; b < blocks; b++) {
      fillDemoBlock(buf, b + 1);
      writeSync(fd, buf);
    }
    closeSync(fd);
  }
  return { meta, data, volumeBytes };
}

function logLines(c: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let buf = '';
    c.stderr!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const m = /"msg":"receiver listening"/.test(buf) && /"port":(\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    c.on('exit', (code) => reject(new Error(`serve exited ${code}: ${buf}`)));
  });
}

async function sendRun(
  dir: string,
  pool: { meta: string; data: string; volumeBytes: number },
  windowBytes: number,
  tls: boolean,
  certDir: string,
): Promise<{ mibs: number; ratio: number }> {
  const target = join(dir, 'bench-target.img');
  rmSync(target, { force: true });
  const cfg = join(dir, 'bench-receiver.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      tls: { ca: join(certDir, 'ca.crt'), cert: join(certDir, 'server.crt'), key: join(certDir, 'server.key') },
      stateDir: join(dir, 'bench-state'),
      receiveWindowBytes: windowBytes,
      identities: { 'bench-sender': { directories: [dir] }, anonymous: { directories: [dir] } },
    }),
  );
  rmSync(join(dir, 'bench-state'), { recursive: true, force: true });
  const serve = spawn(process.execPath, [cliPath, 'serve', '--listen', '127.0.0.1:0', '--config', cfg, ...(tls ? [] : ['--insecure'])], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, THINSHIP_LOG: 'info' },
  });
  try {
    const port = await logLines(serve);
    const send = spawn(
      process.execPath,
      [
        cliPath,
        'send',
        '--pool-metadata',
        pool.meta,
        '--pool-data',
        pool.data,
        '--volume-size',
        String(pool.volumeBytes),
        '1',
        '--to',
        `127.0.0.1:${port}`,
        '--target',
        target,
        '--json',
        ...(tls ? ['--tls-dir', certDir, '--server-name', 'localhost'] : ['--insecure']),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    send.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const [code] = (await once(send, 'exit')) as [number];
    if (code !== 0) throw new Error(`send exited ${code}`);
    const r = JSON.parse(out) as { dataBytes: number; payloadBytes: number; seconds: number };
    return { mibs: r.dataBytes / 1048576 / r.seconds, ratio: r.dataBytes / r.payloadBytes };
  } finally {
    serve.kill('SIGTERM');
    await once(serve, 'exit').catch(() => undefined);
    rmSync(target, { force: true });
  }
}

async function main(): Promise<void> {
  const dir = opt('--dir', '/dev/shm/thinship-bench');
  const sizeMiB = Number(opt('--size-mib', '512'));
  const runs = Number(opt('--runs', '2'));
  mkdirSync(dir, { recursive: true });
  const certDir = join(dir, 'certs');
  if (!existsSync(join(certDir, 'client.crt')))
    await makeCertificates({ dir: certDir, serverNames: ['localhost', '127.0.0.1'], clientNames: ['bench-sender'], days: 30 });
  const W = 8 * 1024 * 1024;
  const configs: [string, number, boolean][] = [
    ['plaintext, 64 KiB window', 65535, false],
    ['plaintext, 8 MiB window', W, false],
    ['mTLS, 64 KiB window', 65535, true],
    ['mTLS, 8 MiB window', W, true],
  ];
  if (!args.includes('--send-only')) {
    const raw = new Map<string, number[]>();
    for (let r = 0; r < runs; r++) {
      for (const [name, w, tls] of configs) {
        const mibs = await rawRun(w, tls ? certDir : undefined, 1024);
        (raw.get(name) ?? raw.set(name, []).get(name)!).push(mibs);
        console.log(`raw 1 GiB of 1 MiB messages, ${name}: ${mibs.toFixed(0)} MiB/s`);
      }
    }
    for (const [name, xs] of raw) console.log(`RAW median ${name}: ${median(xs).toFixed(0)} MiB/s (${xs.map((x) => x.toFixed(0)).join(', ')})`);
  }
  if (!args.includes('--raw-only')) {
    const pool = await buildPool(dir, sizeMiB);
    const res = new Map<string, number[]>();
    for (let r = 0; r < runs; r++) {
      for (const [name, w, tls] of configs) {
        const { mibs, ratio } = await sendRun(dir, pool, w, tls, certDir);
        (res.get(name) ?? res.set(name, []).get(name)!).push(mibs);
        console.log(`thinship send of ${sizeMiB} MiB (ratio ${ratio.toFixed(2)}), ${name}: ${mibs.toFixed(0)} MiB/s`);
      }
    }
    for (const [name, xs] of res) console.log(`SEND median ${name}: ${median(xs).toFixed(0)} MiB/s (${xs.map((x) => x.toFixed(0)).join(', ')})`);
  }
}
