/**
 * Between sites (issue 6), not timed: `thinship serve` behind the delay relay
 * (src/testing/delay-relay.ts, 20 ms each way), `thinship send --to` through
 * it over mTLS: the transfer completes byte-exact, and flow control really ran
 * over the delayed link. The receiver's HTTP/2 receive windows are read off
 * the wire as a peer sees them: Node's http2 client (with the test's client
 * certificate) reads SETTINGS_INITIAL_WINDOW_SIZE from the receiver's
 * SETTINGS and the connection window the receiver's WINDOW_UPDATE gave it —
 * for configured windows, for the defaults, and for a receiver left at
 * HTTP/2's 64 KiB (so the check can tell the difference).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { once } from 'node:events';
import { mkdtempSync, rmSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { startDelayRelay, type DelayRelay } from '../../src/testing/delay-relay.js';
import { startReceiver } from '../../src/rpc/server.js';
import { parseReceiverConfig } from '../../src/rpc/server-config.js';
import { DEFAULT_CONNECTION_WINDOW_BYTES, DEFAULT_RECEIVE_WINDOW_BYTES } from '../../src/rpc/http2-window.js';
import { expectedImage } from '../helpers/offline-image.js';
import { runCli } from '../helpers/cli.js';
import { makeTestCerts, writeConfig, startServe, stopServe, assertSameImage, readImage, type TestCerts, type ServeProcess } from './helpers.js';

let dir: string;
let pool: DemoPool;
let img1: Buffer;
let certs: TestCerts;
const running: ServeProcess[] = [];
const ONE_WAY_DELAY_MS = 20;
/** Small windows, so that the transfer needs many round trips of flow control through the relay. */
const STREAM_WINDOW_BYTES = 1024 * 1024;
const CONNECTION_WINDOW_BYTES = 3 * 1024 * 1024 + 12345;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-wan-'));
  mkdirSync(join(dir, 'targets'));
  pool = await createDemoPool(join(dir, 'pool'));
  img1 = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
  certs = await makeTestCerts(join(dir, 'certs'));
});

after(() => {
  for (const s of running) s.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string, windows: Record<string, number>): string {
  return writeConfig(join(dir, `${name}.json`), {
    tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
    stateDir: join(dir, `state-${name}`),
    identities: { 'sender-a': { directories: [join(dir, 'targets')] } },
    ...windows,
  });
}

async function serve(cfg: string): Promise<ServeProcess> {
  const s = await startServe(['--listen', '127.0.0.1:0', '--config', cfg]);
  running.push(s);
  return s;
}

interface PeerView {
  initialWindowSize: number | undefined;
  connectionWindow: number;
}

/**
 * Connects as an HTTP/2 peer (mTLS, ALPN h2) and reports the receiver's
 * SETTINGS_INITIAL_WINDOW_SIZE and the connection window it granted. The
 * receiver sends its SETTINGS and its WINDOW_UPDATE before it can answer our
 * PING, so once the PING is acknowledged both have arrived.
 */
async function peerView(port: number): Promise<PeerView> {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    ca: readFileSync(certs.clientA.ca),
    cert: readFileSync(certs.clientA.cert),
    key: readFileSync(certs.clientA.key),
    servername: 'localhost',
  });
  try {
    // Bounded: a receiver that never sends SETTINGS or never acknowledges the PING fails the test instead of hanging it.
    const bound = AbortSignal.timeout(20_000);
    const [settings] = (await once(session, 'remoteSettings', { signal: bound })) as [http2.Settings];
    await new Promise<void>((resolve, reject) => {
      bound.addEventListener('abort', () => reject(new Error('the receiver did not acknowledge a PING within 20 s')), { once: true });
      session.ping((e) => (e ? reject(e) : resolve()));
    });
    // A later SETTINGS frame would have replaced the first: read what holds now.
    assert.equal(session.remoteSettings.initialWindowSize, settings.initialWindowSize, 'one window in the SETTINGS');
    return { initialWindowSize: session.remoteSettings.initialWindowSize, connectionWindow: session.state.remoteWindowSize! };
  } finally {
    session.destroy();
  }
}

test('through a 20 ms relay: a full send completes byte-exact, flow control runs over the delayed link', async () => {
  const s = await serve(config('wan', { receiveWindowBytes: STREAM_WINDOW_BYTES, connectionWindowBytes: CONNECTION_WINDOW_BYTES }));
  let relay: DelayRelay | undefined;
  try {
    relay = await startDelayRelay({ toHost: '127.0.0.1', toPort: s.port, delayMs: ONE_WAY_DELAY_MS, rateBitsPerSecond: 1e9 });
    const target = join(dir, 'targets', 'wan.img');
    const t0 = performance.now();
    const r = await runCli([
      'send',
      '--pool-metadata',
      pool.metadataPath,
      '--pool-data',
      pool.dataPath,
      '--volume-size',
      String(pool.volumeSizeBytes),
      '--to',
      `127.0.0.1:${relay.port}`,
      '--server-name',
      'localhost',
      '--target',
      target,
      '--tls-dir',
      join(dir, 'certs'),
      '--json',
      String(pool.baseDevId),
    ]);
    const seconds = (performance.now() - t0) / 1000;
    assert.equal(r.code, 0, `send failed (${r.code}): ${r.stderr}`);
    const sent = JSON.parse(r.stdout) as { state: { status: string }; payloadBytes: number; startOffsets: number[] };
    assert.equal(sent.state.status, 'TRANSFER_STATUS_COMPLETE');
    assert.deepEqual(sent.startOffsets, [0], 'one call, no resume');
    assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'full send through the relay');
    const st = relay.stats();
    assert.ok(st.up.bytes > sent.payloadBytes, `the payload (${sent.payloadBytes} bytes) went through the relay (${st.up.bytes} bytes)`);
    // A stream moves at most one window per round trip: the delay and the window were both real.
    const rttS = (2 * ONE_WAY_DELAY_MS) / 1000;
    const floorS = (Math.max(0, sent.payloadBytes - STREAM_WINDOW_BYTES) / STREAM_WINDOW_BYTES) * rttS;
    process.stdout.write(
      `# through the relay: ${sent.payloadBytes} payload bytes in ${seconds.toFixed(2)} s (window floor ${floorS.toFixed(2)} s), relay lateness mean ${st.up.lateMsMean.toFixed(2)} ms\n`,
    );
    assert.ok(
      seconds >= floorS,
      `${seconds.toFixed(2)} s for ${sent.payloadBytes} bytes, faster than a ${STREAM_WINDOW_BYTES}-byte window allows at ${rttS * 1000} ms (${floorS.toFixed(2)} s)`,
    );
    // And a peer across the same link sees the configured windows.
    const v = await peerView(relay.port);
    assert.equal(v.initialWindowSize, STREAM_WINDOW_BYTES);
    assert.equal(v.connectionWindow, CONNECTION_WINDOW_BYTES);
  } finally {
    await relay?.close();
    await stopServe(s);
  }
});

test('SETTINGS and WINDOW_UPDATE carry the defaults; the connection window follows the stream window unless set', async () => {
  const s = await serve(config('defaults', {}));
  const s2 = await serve(config('stream-only', { receiveWindowBytes: 5 * 1024 * 1024 }));
  try {
    assert.deepEqual(await peerView(s.port), { initialWindowSize: DEFAULT_RECEIVE_WINDOW_BYTES, connectionWindow: DEFAULT_CONNECTION_WINDOW_BYTES });
    assert.deepEqual(await peerView(s2.port), { initialWindowSize: 5 * 1024 * 1024, connectionWindow: 5 * 1024 * 1024 });
    // The receiver logs what it grants.
    const l = await s2.waitFor((x) => x.msg === 'receiver listening');
    assert.equal(l.receiveWindowBytes, 5 * 1024 * 1024);
    assert.equal(l.connectionWindowBytes, 5 * 1024 * 1024);
  } finally {
    await stopServe(s);
    await stopServe(s2);
  }
});

test('a receiver left at HTTP/2 defaults shows 65535 for both windows (the check tells them apart)', async () => {
  const cfg = await parseReceiverConfig(
    {
      tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
      stateDir: join(dir, 'state-h2default'),
      identities: { 'sender-a': { directories: [join(dir, 'targets')] } },
    },
    join(dir, 'h2default.json'),
  );
  const rx = await startReceiver({ listen: '127.0.0.1:0', config: cfg, receiveWindowBytes: false });
  try {
    assert.deepEqual(await peerView(rx.port), { initialWindowSize: 65535, connectionWindow: 65535 });
  } finally {
    await rx.close();
  }
});

test('the config refuses windows HTTP/2 cannot express', async () => {
  for (const [k, v] of [
    ['receiveWindowBytes', 1000],
    ['connectionWindowBytes', 2 ** 31],
    ['connectionWindowBytes', 'big'],
  ] as const) {
    await assert.rejects(parseReceiverConfig({ stateDir: dir, [k]: v }, 'x.json'), (e: Error) => e.message.includes(`"${k}"`));
  }
});
