/**
 * `thinship demo`: the built-in default, the whole job on one machine. Builds
 * a small offline thin pool (thin_restore + a data file) holding two
 * snapshots of one volume, makes fresh certificates, starts a gRPC receiver
 * on loopback with mTLS, sends full then incremental into a sparse file
 * target, and verifies the target byte for byte after each step.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { ThinshipError } from '../../errors.js';
import { createDemoPool, type DemoPool } from '../../thin/demo-pool.js';
import { planSend, type SourceSpec } from '../../thin/planner.js';
import { openSourceReader, type VolumeReader } from '../../sender/volume-reader.js';
import { openVolume } from '../../device/volume.js';
import { makeCertificates } from '../../rpc/certs.js';
import { parseReceiverConfig } from '../../rpc/server-config.js';
import { startReceiver } from '../../rpc/server.js';
import { ReceiverClient, sendPlanOverGrpc, type GrpcSendResult } from '../../rpc/client.js';
import { formatBytes, formatRate } from '../format.js';

const out = (s: string) => process.stdout.write(s + '\n');
const DEMO_IDENTITY = 'thinship-demo';

async function sendOver(client: ReceiverClient, spec: SourceSpec, target: string): Promise<GrpcSendResult> {
  const p = await planSend(spec, { withMappings: true });
  try {
    const t = p.plan.totals;
    out(
      `  plan: ${p.mode} ${p.source.name}${p.base ? ` from ${p.base.name}` : ''}: ${formatBytes(t.dataBytes)} to send in ${t.dataOps} ops, ${formatBytes(t.unmapBytes)} to unmap in ${t.unmapOps} ops`,
    );
    const reader = await openSourceReader(p);
    try {
      return await sendPlanOverGrpc(client, p, reader, { target, maxAttempts: 3, retryDelayMs: 200 });
    } finally {
      await reader.close();
    }
  } finally {
    await p.close();
  }
}

async function volumeDigest(read: (buf: Buffer, off: number) => Promise<unknown>, sizeBytes: number): Promise<string> {
  const h = createHash('sha256');
  const buf = Buffer.alloc(1024 * 1024);
  for (let off = 0; off < sizeBytes; off += buf.length) {
    const piece = buf.subarray(0, Math.min(buf.length, sizeBytes - off));
    await read(piece, off);
    h.update(piece);
  }
  return h.digest('hex');
}

/** sha256 of the pool's device `devId` and of the target must agree. */
async function verify(pool: DemoPool, devId: number, targetPath: string): Promise<string> {
  const p = await planSend(
    { kind: 'offline', metadataPath: pool.metadataPath, dataPath: pool.dataPath, snapDevId: devId, volumeSizeBytes: pool.volumeSizeBytes },
    { withMappings: true },
  );
  let reader: VolumeReader | undefined;
  const target = await openVolume(targetPath, { mode: 'read' });
  try {
    reader = await openSourceReader(p);
    const src = await volumeDigest((b, o) => reader!.read(b, o), pool.volumeSizeBytes);
    const dst = await volumeDigest((b, o) => target.readAt(b, o), pool.volumeSizeBytes);
    if (src !== dst) throw new ThinshipError('CHECKSUM_MISMATCH', `demo: target differs from device ${devId} of the pool (sha256 ${dst} vs ${src})`);
    return src;
  } finally {
    await target.close();
    await reader?.close();
    await p.close();
  }
}

function describe(r: GrpcSendResult): string {
  const ratio = r.payloadBytes > 0 ? (r.dataBytes / r.payloadBytes).toFixed(2) : '-';
  return (
    `sent ${formatBytes(r.dataBytes)} in ${r.chunks.zstd + r.chunks.raw + r.chunks.zero} chunks (${r.chunks.zstd} zstd, ${r.chunks.raw} raw, ${r.chunks.zero} zero), ` +
    `${formatBytes(r.payloadBytes)} on the wire (ratio ${ratio}), ${formatBytes(r.unmapBytes)} unmapped, ${r.seconds.toFixed(2)} s (${formatRate(r.dataBytes, r.seconds)}); stream digest ${r.digest.toString('hex').slice(0, 16)}…`
  );
}

export async function demoCommand(flags: { dir?: string }): Promise<void> {
  const dir = flags.dir ?? (await mkdtemp(join(tmpdir(), 'thinship-demo-')));
  try {
    out(`thinship demo: building an offline thin pool in ${dir}`);
    const pool = await createDemoPool(dir);
    out(
      `  pool: ${pool.metadataPath} (metadata), ${pool.dataPath} (data), block ${formatBytes(pool.blockBytes)}, volume ${formatBytes(pool.volumeSizeBytes)}, snapshots: device ${pool.baseDevId} (older) and ${pool.snapDevId}`,
    );
    const certs = await makeCertificates({
      dir: join(dir, 'certs'),
      serverNames: ['localhost', '127.0.0.1'],
      clientNames: [DEMO_IDENTITY],
      days: 2,
      force: true,
    }); // the demo's own: a re-run with --dir replaces them
    out(`  certificates: a fresh CA, a server certificate and a client certificate (identity "${DEMO_IDENTITY}") in ${join(dir, 'certs')}`);
    const config = await parseReceiverConfig(
      {
        tls: { ca: certs.ca, cert: certs.server.cert, key: certs.server.key },
        stateDir: join(dir, 'receiver-state'),
        identities: { [DEMO_IDENTITY]: { directories: [dir] } },
      },
      join(dir, 'receiver.json'),
    );
    const rx = await startReceiver({ listen: '127.0.0.1:0', config });
    const address = `127.0.0.1:${rx.port}`;
    out(`  receiver: listening on ${address} with mTLS; "${DEMO_IDENTITY}" may write files under ${dir}`);
    const client = await ReceiverClient.connect({
      address,
      serverName: 'localhost',
      tls: { ca: certs.ca, cert: certs.clients[0]!.cert, key: certs.clients[0]!.key },
    });
    const targetPath = join(dir, 'target.img');
    try {
      const offline = { kind: 'offline' as const, metadataPath: pool.metadataPath, dataPath: pool.dataPath, volumeSizeBytes: pool.volumeSizeBytes };
      const t0 = performance.now();
      out(`1. full send of device ${pool.baseDevId} over gRPC into ${targetPath}`);
      const full = await sendOver(client, { ...offline, snapDevId: pool.baseDevId }, targetPath);
      out(`  ${describe(full)}`);
      out(`  verified: target == device ${pool.baseDevId} (sha256 ${(await verify(pool, pool.baseDevId, targetPath)).slice(0, 16)}…)`);
      out(`2. incremental send ${pool.baseDevId} -> ${pool.snapDevId} over gRPC into the same target`);
      const inc = await sendOver(client, { ...offline, snapDevId: pool.snapDevId, baseDevId: pool.baseDevId }, targetPath);
      out(`  ${describe(inc)}`);
      out(`  verified: target == device ${pool.snapDevId} (sha256 ${(await verify(pool, pool.snapDevId, targetPath)).slice(0, 16)}…)`);
      out(
        `done in ${((performance.now() - t0) / 1000).toFixed(2)} s: the incremental moved ${formatBytes(inc.dataBytes)} instead of ${formatBytes(full.dataBytes)}`,
      );
    } finally {
      client.close();
      await rx.close();
    }
  } finally {
    if (!flags.dir) await rm(dir, { recursive: true, force: true });
  }
}
