/**
 * The delay-line relay (src/testing/delay-relay.ts): it delays each direction
 * by about the configured time (never less), carries every byte in order in
 * both directions and the half-close after them, holds the link rate, and
 * stops reading its source when its line is full instead of buffering
 * without bound. Timing checks are strict on the side the relay guarantees
 * (never early, never faster than the rate) and loose on the other, as the
 * machine is shared.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { once } from 'node:events';
import { startDelayRelay, parseRate, lineCapacityBytes, type DelayRelay } from '../../src/testing/delay-relay.js';
import { repoRoot } from '../helpers/paths.js';

/** A server on 127.0.0.1:0 running `onConn` for each connection. */
/** Every wait on an event is bounded: a relay bug must fail the test, not hang it. */
const WAIT_MS = 20_000;
const within = (ms = WAIT_MS) => ({ signal: AbortSignal.timeout(ms) });

async function serverOn(onConn: (s: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const conns = new Set<net.Socket>();
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () =>
      new Promise((r) => {
        for (const c of conns) c.destroy();
        srv.close(() => r());
      }),
  };
}

/** Echo, and end when the peer ends. */
function echo(s: net.Socket): void {
  s.pipe(s);
}

async function connect(port: number): Promise<net.Socket> {
  const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true, noDelay: true });
  await once(c, 'connect', within());
  return c;
}

/** Reads everything until 'end'. */
function readAll(s: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (b: Buffer) => parts.push(b));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('timed out reading to the end of the stream')), WAIT_MS);
    s.once('end', () => {
      clearTimeout(t);
      resolve(Buffer.concat(parts));
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

async function withRelay<T>(
  opts: Omit<Parameters<typeof startDelayRelay>[0], 'toHost' | 'toPort'>,
  target: (s: net.Socket) => void,
  fn: (r: DelayRelay) => Promise<T>,
): Promise<T> {
  const srv = await serverOn(target);
  const relay = await startDelayRelay({ ...opts, toHost: '127.0.0.1', toPort: srv.port });
  try {
    return await fn(relay);
  } finally {
    await relay.close();
    await srv.close();
  }
}

test('rates and capacities parse as tc writes them', () => {
  assert.equal(parseRate('1gbit'), 1e9);
  assert.equal(parseRate('100mbit'), 1e8);
  assert.equal(parseRate('500kbit'), 5e5);
  assert.equal(parseRate('64000'), 64000);
  assert.equal(parseRate('unlimited'), Infinity);
  assert.throws(() => parseRate('fast'), /rate "fast"/);
  // 1 Gbit/s × 25 ms = 3.125 MB, plus the queue.
  assert.equal(lineCapacityBytes({ delayMs: 25, rateBitsPerSecond: 1e9, queueBytes: 0 }), 3_125_000);
  assert.equal(lineCapacityBytes({ delayMs: 25, rateBitsPerSecond: 1e9, queueBytes: 1000 }), 3_126_000);
  assert.throws(() => lineCapacityBytes({ delayMs: 25, rateBitsPerSecond: Infinity }), /unbounded/);
});

test('a round trip through the relay takes twice the one-way delay, and a half-close follows the data', async () => {
  // Long enough that scheduling on a loaded machine (tens of ms) stays well inside the upper bounds below,
  // while a relay that delays twice (or not at all) is still far outside them.
  const delayMs = 150;
  await withRelay({ delayMs, rateBitsPerSecond: 1e9 }, echo, async (relay) => {
    const c = await connect(relay.port);
    const rtts: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      c.write(`ping ${i}\n`);
      const [b] = (await once(c, 'data', within())) as [Buffer];
      rtts.push(performance.now() - t0);
      assert.equal(b.toString(), `ping ${i}\n`);
    }
    // Never early; late only by timer granularity and scheduling (loose: shared machine).
    for (const r of rtts) assert.ok(r >= 2 * delayMs - 1, `round trip ${r.toFixed(1)} ms < ${2 * delayMs} ms`);
    const sorted = [...rtts].sort((a, b) => a - b);
    assert.ok(sorted[2]! < 3 * delayMs, `median round trip ${sorted[2]!.toFixed(1)} ms, expected about ${2 * delayMs} ms`);
    // FIN goes out, the echo server ends in turn: the end arrives a round trip later.
    const t0 = performance.now();
    c.end();
    await once(c, 'end', within());
    assert.ok(performance.now() - t0 >= 2 * delayMs - 1, 'the half-close is delayed like data');
    assert.ok(relay.stats().up.lateMsMean < delayMs / 2, `mean lateness ${relay.stats().up.lateMsMean} ms`);
    c.destroy();
  });
});

test('every byte arrives, in order, in both directions (random write sizes, a delay and a rate)', async () => {
  const data = randomBytes(6 * 1024 * 1024);
  await withRelay({ delayMs: 3, rateBitsPerSecond: 2e9, queueBytes: 256 * 1024 }, echo, async (relay) => {
    const c = await connect(relay.port);
    const back = readAll(c);
    let off = 0;
    let seed = 7;
    while (off < data.length) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const n = Math.min(data.length - off, 1 + (seed % 200_000));
      if (!c.write(data.subarray(off, off + n))) await once(c, 'drain', within());
      off += n;
    }
    c.end();
    const got = await back;
    assert.equal(got.length, data.length);
    assert.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(data).digest('hex'));
    const st = relay.stats();
    assert.equal(st.up.bytes, data.length);
    assert.equal(st.down.bytes, data.length);
    assert.equal(st.connections, 1);
  });
});

test('the relay holds the link rate', async () => {
  const rateBits = 80e6; // 10 MB/s
  const bytes = 6_000_000;
  await withRelay(
    { delayMs: 0, rateBitsPerSecond: rateBits },
    (s) => {
      s.resume();
      s.on('end', () => s.end());
    },
    async (relay) => {
      const c = await connect(relay.port);
      const chunk = Buffer.alloc(64 * 1024, 1);
      const t0 = performance.now();
      let sent = 0;
      while (sent < bytes) {
        const n = Math.min(chunk.length, bytes - sent);
        if (!c.write(chunk.subarray(0, n))) await once(c, 'drain', within());
        sent += n;
      }
      c.end();
      await once(c, 'end', within()); // the target ended after reading everything
      const s = (performance.now() - t0) / 1000;
      const rate = (bytes * 8) / s;
      // The first chunk leaves at once; every later byte waits for the line: never faster than the rate.
      assert.ok(rate <= rateBits * 1.02, `${(rate / 1e6).toFixed(1)} Mbit/s through an 80 Mbit/s line`);
      // Loose (a loaded machine): still catches a rate taken as bytes instead of bits (8x slow).
      assert.ok(rate >= rateBits * 0.25, `${(rate / 1e6).toFixed(1)} Mbit/s: far below the 80 Mbit/s line`);
      assert.equal(relay.stats().up.bytes, bytes);
      c.destroy();
    },
  );
});

test('a full line stops reading its source (backpressure), then delivers everything once the reader reads', async () => {
  const capacityBytes = 512 * 1024;
  let gotTarget!: (s: net.Socket) => void;
  const targetReady = new Promise<net.Socket>((r) => {
    gotTarget = r;
  });
  // The target accepts and does not read.
  await withRelay(
    { delayMs: 5, rateBitsPerSecond: 10e9, capacityBytes },
    (s) => {
      s.pause();
      gotTarget(s);
    },
    async (relay) => {
      const c = await connect(relay.port);
      const chunk = randomBytes(64 * 1024);
      let accepted = 0;
      // Write until the client's own buffer backs up and stays backed up.
      for (;;) {
        const ok = c.write(chunk);
        accepted += chunk.length;
        if (!ok) {
          const drained = await Promise.race([once(c, 'drain').then(() => true), new Promise((r) => setTimeout(() => r(false), 1500))]);
          if (!drained) break;
        }
        assert.ok(accepted < 512 * 1024 * 1024, 'the relay never pushed back');
      }
      const st = relay.stats().up;
      assert.ok(st.pauses >= 1, 'the relay paused its source');
      // The relay holds at most its capacity plus what it had read when it paused (one socket read).
      assert.ok(st.heldBytesMax <= capacityBytes + 128 * 1024, `held ${st.heldBytesMax} bytes with a capacity of ${capacityBytes}`);
      // Now read: every byte written arrives (nothing dropped), in order.
      const t = await targetReady;
      const all = readAll(t);
      t.resume();
      c.end();
      const got = await all;
      const written = Math.floor(c.bytesWritten / chunk.length);
      assert.equal(got.length, c.bytesWritten);
      for (let i = 0; i < written; i++) assert.ok(got.subarray(i * chunk.length, (i + 1) * chunk.length).equals(chunk), `chunk ${i} differs`);
      c.destroy();
    },
  );
});

test('a refused target resets the client connection', async () => {
  const srv = await serverOn(() => undefined);
  const port = srv.port;
  await srv.close(); // nothing listens there now
  const relay = await startDelayRelay({ delayMs: 1, rateBitsPerSecond: 1e9, toHost: '127.0.0.1', toPort: port });
  try {
    const c = net.connect({ port: relay.port, host: '127.0.0.1' });
    const errors: string[] = [];
    c.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    const hadError = await new Promise<boolean>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the client connection was never closed')), WAIT_MS);
      c.on('close', (h: boolean) => {
        clearTimeout(t);
        resolve(h);
      });
    });
    assert.equal(hadError, true, 'reset, not a clean close (FIN)');
    assert.deepEqual(errors, ['ECONNRESET']);
  } finally {
    await relay.close();
  }
});

test('the command line prints its port and relays with the delay', async () => {
  const srv = await serverOn(echo);
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'dist/src/cli/delay-relay.js'), '--listen', '127.0.0.1:0', '--to', `127.0.0.1:${srv.port}`, '--rtt-ms', '60', '--rate', '100mbit'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  try {
    const [line] = (await once(child.stdout, 'data', within())) as [Buffer];
    const info = JSON.parse(line.toString()) as { port: number; delayMs: number; rateBitsPerSecond: number; capacityBytes: number };
    assert.equal(info.delayMs, 30);
    assert.equal(info.rateBitsPerSecond, 1e8);
    assert.equal(info.capacityBytes, 375_000 + 1024 * 1024);
    const c = await connect(info.port);
    const t0 = performance.now();
    c.write('hello');
    const [b] = (await once(c, 'data', within())) as [Buffer];
    assert.equal(b.toString(), 'hello');
    assert.ok(performance.now() - t0 >= 59, 'a 60 ms round trip');
    c.destroy();
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.kill('SIGTERM');
    await once(child, 'exit', within());
    const stats = JSON.parse(err.trim().split('\n').pop()!) as { stats: { connections: number; up: { bytes: number } } };
    assert.equal(stats.stats.connections, 1);
    assert.equal(stats.stats.up.bytes, 5);
  } finally {
    child.kill('SIGKILL');
    await srv.close();
  }
});
