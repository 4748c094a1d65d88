/**
 * Reload on SIGHUP, over real sockets with real certificates: `thinship serve`
 * (the bundled CLI, a child process) gets a renewed server certificate and an
 * identity removed from its config while a transfer runs. The transfer goes on
 * in the same call and completes byte-exact; a new connection sees the new
 * certificate (its fingerprint and serial); the removed identity is refused;
 * a broken config (bad JSON, a key that is not the certificate's pair) is
 * logged at error and the daemon goes on with what it had. The sender daemon's
 * reload (in process) swaps its certificate and identities the same way.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { issueCertificate } from '../../src/rpc/certs.js';
import { ReceiverClient } from '../../src/rpc/client.js';
import { TokenBucket } from '../../src/stream/bandwidth.js';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { loadSenderConfig } from '../../src/service/sender-config.js';
import * as grpc from '@grpc/grpc-js';
import { startSenderServer } from '../../src/rpc/sender-server.js';
import { senderProto } from '../../src/rpc/proto.js';
import { clientCredentialsOf, loadClientTls, type TlsFiles } from '../../src/rpc/tls.js';
import { expectedImage } from '../helpers/offline-image.js';
import { makeTestCerts, writeConfig, startServe, stopServe, assertSameImage, readImage, rejects, type TestCerts, type ServeProcess } from './helpers.js';
import { sendDemo } from './receiver-helpers.js';

let dir: string;
let certs: TestCerts;
let pool: DemoPool;
const running: ServeProcess[] = [];
const targets = () => join(dir, 'targets');

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-reload-'));
  mkdirSync(targets());
  certs = await makeTestCerts(join(dir, 'certs'));
  pool = await createDemoPool(join(dir, 'pool'));
});

after(() => {
  for (const s of running) s.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** The certificate a new TLS connection to 127.0.0.1:port is shown (as client sender-a). */
function certificateSeen(port: number, client: TlsFiles): Promise<{ fingerprint256: string; serialNumber: string }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: readFileSync(client.ca),
      cert: readFileSync(client.cert),
      key: readFileSync(client.key),
      ALPNProtocols: ['h2'],
    });
    s.once('secureConnect', () => {
      const c = s.getPeerCertificate();
      s.destroy();
      resolve({ fingerprint256: c.fingerprint256, serialNumber: c.serialNumber });
    });
    s.once('error', reject);
  });
}

/** ListTransfers on the sender daemon as `tls`'s identity (a new connection). */
async function listTransfers(port: number, tls: TlsFiles): Promise<unknown[]> {
  const { Client } = senderProto();
  const c = new Client(`127.0.0.1:${port}`, clientCredentialsOf(await loadClientTls(tls)), { 'grpc.ssl_target_name_override': 'localhost' });
  try {
    return await new Promise((resolve, reject) => {
      (c as unknown as Record<string, (r: unknown, cb: (e: grpc.ServiceError | null, r: { transfers?: unknown[] }) => void) => void>).ListTransfers!.call(
        c,
        {},
        (e, r) => (e ? reject(e) : resolve(r.transfers ?? [])),
      );
    });
  } finally {
    c.close();
  }
}

/** A renewed server certificate (new key, new serial) written over the old files, as a certificate manager would. */
async function renewServerCertificate(): Promise<X509Certificate> {
  await issueCertificate({
    caCert: certs.server.ca,
    caKey: certs.caKey,
    cert: certs.server.cert,
    key: certs.server.key,
    commonName: 'localhost',
    altNames: ['localhost', '127.0.0.1'],
    usage: 'server',
    days: 3,
  });
  return new X509Certificate(readFileSync(certs.server.cert));
}

/** A send bandwidth that lets `gateBytes` through, then holds the transfer (mid-call) until opened. */
class Gate extends TokenBucket {
  private taken = 0;
  private openGate!: () => void;
  private readonly gate = new Promise<void>((resolve) => {
    this.openGate = resolve;
  });
  private markHeld!: () => void;
  /** Resolves once the transfer is held at the gate. */
  readonly held = new Promise<void>((resolve) => {
    this.markHeld = resolve;
  });
  constructor(private readonly gateBytes: number) {
    super(1e12, 1e12);
  }
  override async take(bytes: number): Promise<void> {
    this.taken += bytes;
    if (this.taken > this.gateBytes) {
      this.markHeld();
      await this.gate;
    }
  }
  open(): void {
    this.openGate();
  }
}

test('serve, SIGHUP: a renewed certificate and a removed identity apply to new connections; the running transfer completes byte-exact in its call', async () => {
  const identities = { 'sender-a': { directories: [targets()] }, 'sender-b': { directories: [targets()] } };
  const cfgFile = writeConfig(join(dir, 'rx.json'), { tls: certs.server, stateDir: join(dir, 'rx-state'), identities });
  const s = await startServe(['--listen', '127.0.0.1:0', '--config', cfgFile]);
  running.push(s);
  const oldCert = new X509Certificate(readFileSync(certs.server.cert));
  const clients: ReceiverClient[] = [];
  const client = async (tls: TlsFiles) => {
    const c = await ReceiverClient.connect({ address: `127.0.0.1:${s.port}`, tls, serverName: 'localhost' });
    clients.push(c);
    return c;
  };
  try {
    assert.equal((await certificateSeen(s.port, certs.clientA)).fingerprint256, oldCert.fingerprint256);
    const gate = new Gate(1024 * 1024);
    const target = join(targets(), 'during-reload.img');
    const sending = sendDemo(pool, await client(certs.clientA), target, pool.snapDevId, { bandwidth: gate });
    sending.catch(() => undefined);
    await gate.held;

    const renewed = await renewServerCertificate();
    assert.notEqual(renewed.fingerprint256, oldCert.fingerprint256);
    writeConfig(cfgFile, { tls: certs.server, stateDir: join(dir, 'rx-state'), identities: { 'sender-a': identities['sender-a'] } });
    s.child.kill('SIGHUP');
    const reloaded = await s.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('config reloaded'), 20_000);
    assert.equal(reloaded.level, 'info');
    assert.deepEqual(reloaded.identities, ['sender-a']);
    assert.equal((reloaded.certificate as Record<string, string>).fingerprint256, renewed.fingerprint256);
    assert.equal(reloaded.activeTransfers, 1, 'the transfer was running at the reload');

    const seen = await certificateSeen(s.port, certs.clientA);
    assert.equal(seen.fingerprint256, renewed.fingerprint256, 'a new connection sees the renewed certificate');
    assert.equal(seen.serialNumber.toUpperCase(), renewed.serialNumber.toUpperCase());
    await rejects(
      sendDemo(pool, await client(certs.clientB), join(targets(), 'b.img'), pool.snapDevId),
      'PERMISSION_DENIED',
      /identity "sender-b" may not write/,
    );

    gate.open();
    const r = await sending;
    assert.equal(r.attempts, 1, 'the running call was not broken by the reload');
    assertSameImage(
      readImage(target, pool.volumeSizeBytes),
      expectedImage(pool.metadataPath, pool.dataPath, pool.snapDevId, pool.volumeSizeBytes),
      'target after a reload mid-transfer',
    );

    // A broken config: logged at error, the daemon goes on with the renewed certificate and sender-a.
    writeFileSync(cfgFile, '{ "tls": ');
    s.child.kill('SIGHUP');
    const bad = await s.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('config reload failed'), 20_000);
    assert.equal(bad.level, 'error');
    assert.match(String(bad.err), /is not valid JSON/);
    // A key that is not the certificate's pair: refused before grpc-js sees it.
    writeConfig(cfgFile, { tls: { ...certs.server, key: certs.clientA.key }, stateDir: join(dir, 'rx-state'), identities });
    s.child.kill('SIGHUP');
    const mismatch = await s.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('config reload failed') && l !== bad, 20_000);
    assert.match(String(mismatch.err), /server\.crt and the key .*client\.key are not a pair/);
    assert.equal((await certificateSeen(s.port, certs.clientA)).fingerprint256, renewed.fingerprint256, 'the certificate of the last good config is kept');
    const again = await sendDemo(pool, await client(certs.clientA), join(targets(), 'after-bad.img'), pool.baseDevId);
    assert.equal(again.attempts, 1);
    await rejects(sendDemo(pool, await client(certs.clientB), join(targets(), 'b2.img'), pool.snapDevId), 'PERMISSION_DENIED', /identity "sender-b"/);
    assert.equal(s.child.exitCode, null, 'serve is still running');
  } finally {
    for (const c of clients) c.close();
    await stopServe(s);
  }
  assert.deepEqual(await s.exited, { code: 0, signal: null });
});

test('sender-serve reload: a renewed certificate for new connections, a removed identity refused, a bad config refused with the old one kept', async () => {
  // The sender daemon's server certificate is its own copy (the receiver test above renewed certs.server in place).
  const tlsDir = join(dir, 'sender-tls');
  mkdirSync(tlsDir);
  const own = { ca: certs.server.ca, cert: join(tlsDir, 'sender.crt'), key: join(tlsDir, 'sender.key') };
  await issueCertificate({
    caCert: certs.server.ca,
    caKey: certs.caKey,
    cert: own.cert,
    key: own.key,
    commonName: 'localhost',
    altNames: ['localhost', '127.0.0.1'],
    usage: 'server',
    days: 3,
  });
  const file = join(dir, 'sender.json');
  const cfg = (ids: string[]) =>
    writeConfig(file, {
      tls: own,
      receiverTls: certs.clientA,
      stateDir: join(dir, 'sender-state'),
      identities: Object.fromEntries(ids.map((id) => [id, { actions: ['watch'], destinations: [{ receiver: '127.0.0.1:1', target: '/x/*' }] }])),
    });
  cfg(['sender-a', 'sender-b']);
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'info' },
    {
      write: (l: string) => {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      },
    },
  );
  const sender = await startSenderServer({
    listen: '127.0.0.1:0',
    config: await loadSenderConfig(file),
    log,
    insecureReceivers: true,
    lockDir: join(dir, 'locks'),
  });
  try {
    assert.deepEqual(await listTransfers(sender.port, certs.clientB), [], 'sender-b may watch before the reload');
    const before = new X509Certificate(readFileSync(own.cert));
    assert.equal((await certificateSeen(sender.port, certs.clientA)).fingerprint256, before.fingerprint256);
    await issueCertificate({
      caCert: certs.server.ca,
      caKey: certs.caKey,
      cert: own.cert,
      key: own.key,
      commonName: 'localhost',
      altNames: ['localhost', '127.0.0.1'],
      usage: 'server',
      days: 3,
    });
    const renewed = new X509Certificate(readFileSync(own.cert));
    cfg(['sender-a']);
    await sender.reload(() => loadSenderConfig(file));
    assert.equal((await certificateSeen(sender.port, certs.clientA)).fingerprint256, renewed.fingerprint256);
    const info = lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('config reloaded'));
    assert.deepEqual(info?.identities, ['sender-a']);
    assert.deepEqual(await listTransfers(sender.port, certs.clientA), [], 'sender-a still may watch');
    await assert.rejects(
      listTransfers(sender.port, certs.clientB),
      (e: grpc.ServiceError) => e.code === grpc.status.PERMISSION_DENIED && /sender-b may not watch/.test(e.details),
    );

    writeFileSync(file, '{"tls": 5}');
    await rejects(
      sender.reload(() => loadSenderConfig(file)),
      'USAGE',
      /"tls" must be an object/,
    );
    assert.equal((await certificateSeen(sender.port, certs.clientA)).fingerprint256, renewed.fingerprint256, 'the last good certificate is kept');
  } finally {
    await sender.close();
  }
});
