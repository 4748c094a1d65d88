/**
 * A client in another language: clients/python/thinship_example.py `small` (Debian's
 * python3-grpcio, stubs generated from proto/ at run time with
 * python3-grpc-tools) sends a small stream over mTLS to an in-process
 * receiver; the target must hold exactly what the script sent, and the
 * receiver's digest must equal the one Python computed from the proto's
 * description. Also: a Python client whose identity is not allowed gets
 * PERMISSION_DENIED with the thinship code in the trailers.
 * Skipped (with the reason) when /usr/bin/python3 lacks grpc or grpc_tools.
 * The same module's full, incremental, resume and sender-service calls are
 * tested in clients.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, readFileSync, existsSync } from 'node:fs';
import { spawnSync, spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseReceiverConfig } from '../../src/rpc/server-config.js';
import { startReceiver, type RunningReceiver } from '../../src/rpc/server.js';
import { repoRoot } from '../helpers/paths.js';
import { makeTestCerts, type TestCerts } from './helpers.js';

const PYTHON = '/usr/bin/python3';
const probe = spawnSync(PYTHON, ['-c', 'import grpc, grpc_tools.protoc'], { encoding: 'utf8' });
const skip =
  probe.status !== 0
    ? `${PYTHON} cannot import grpc and grpc_tools (install python3-grpcio python3-grpc-tools): ${probe.stderr?.trim().split('\n').at(-1) ?? probe.error?.message}`
    : false;

let dir: string;
let certs: TestCerts;
let rx: RunningReceiver;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'thinship-py-'));
  mkdirSync(join(dir, 'targets'));
  certs = await makeTestCerts(join(dir, 'certs'));
  const config = await parseReceiverConfig(
    { tls: certs.server, stateDir: join(dir, 'state'), identities: { 'sender-a': { directories: [join(dir, 'targets')] } } },
    join(dir, 'r.json'),
  );
  rx = await startReceiver({ listen: '127.0.0.1:0', config });
});

after(async () => {
  await rx?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** args: PROTO_ROOT HOST:PORT SERVER_NAME CA CERT KEY TARGET TRANSFER_ID [--bad-checksum], as the module's flags. */
function runPython([protoRoot, address, serverName, ca, cert, key, target, transferId, ...rest]: string[]): Promise<{
  code: number | null;
  stdout: string;
  stderr: string;
}> {
  return new Promise((resolve) => {
    const c = spawn(
      PYTHON,
      [
        join(repoRoot, 'clients/python/thinship_example.py'),
        '--proto-root',
        protoRoot!,
        '--address',
        address!,
        '--server-name',
        serverName!,
        '--ca',
        ca!,
        '--cert',
        cert!,
        '--key',
        key!,
        'small',
        '--target',
        target!,
        '--transfer-id',
        transferId!,
        ...rest,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const pattern = (seed: number, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (seed * 31 + i * 7) % 251));

test('a Python client (python3-grpcio, stubs from proto/) sends a small stream over mTLS', { skip }, async () => {
  const target = join(dir, 'targets', 'py.img');
  const r = await runPython([
    join(repoRoot, 'proto'),
    `127.0.0.1:${rx.port}`,
    'localhost',
    certs.clientA.ca,
    certs.clientA.cert,
    certs.clientA.key,
    target,
    'py-1',
  ]);
  assert.equal(r.code, 0, `python: ${r.stdout}\n${r.stderr}`);
  const out = JSON.parse(r.stdout) as {
    digest: string;
    expected_digest: string;
    status: string;
    data_records_applied: number;
    durable_offset_bytes: number;
    update_time: string;
  };
  assert.equal(out.status, 'TRANSFER_STATUS_COMPLETE');
  assert.equal(out.digest, out.expected_digest, 'the receiver agrees with the digest Python computed from the proto comments');
  assert.equal(out.data_records_applied, 4);
  assert.equal(out.durable_offset_bytes, 1024 * 1024);
  // a google.protobuf.Timestamp, as Python's protobuf renders it (RFC 3339), of the last checkpoint
  assert.ok(Math.abs(Date.parse(out.update_time) - Date.now()) < 120_000, out.update_time);
  const C = 64 * 1024;
  const expected = Buffer.alloc(1024 * 1024);
  pattern(1, C).copy(expected, 0);
  pattern(2, C).copy(expected, C);
  pattern(3, C).copy(expected, 12 * C);
  assert.ok(readFileSync(target).equals(expected), 'target holds exactly what Python sent (zero chunk and unmap read as zeros)');
});

type PythonError = {
  error: string;
  details: string;
  error_info: { reason: string; domain: string; metadata: Record<string, string>; status_code: number } | null;
};

test('a Python client whose identity is not allowed gets PERMISSION_DENIED and the thinship code (ErrorInfo.reason)', { skip }, async () => {
  const target = join(dir, 'targets', 'py-denied.img');
  const r = await runPython([
    join(repoRoot, 'proto'),
    `127.0.0.1:${rx.port}`,
    'localhost',
    certs.clientB.ca,
    certs.clientB.cert,
    certs.clientB.key,
    target,
    'py-2',
  ]);
  assert.equal(r.code, 1, r.stderr);
  const out = JSON.parse(r.stdout) as PythonError;
  assert.equal(out.error, 'PERMISSION_DENIED');
  assert.deepEqual(out.error_info, { reason: 'PERMISSION_DENIED', domain: 'thinship', metadata: { retryable: 'false' }, status_code: 7 });
  assert.match(out.details, /sender-b/);
  assert.equal(existsSync(target), false);
});

test("a Python client reads a bad record's code and volume offset from the standard error model", { skip }, async () => {
  const target = join(dir, 'targets', 'py-bad.img');
  const r = await runPython([
    join(repoRoot, 'proto'),
    `127.0.0.1:${rx.port}`,
    'localhost',
    certs.clientA.ca,
    certs.clientA.cert,
    certs.clientA.key,
    target,
    'py-3',
    '--bad-checksum',
  ]);
  assert.equal(r.code, 1, r.stderr);
  const out = JSON.parse(r.stdout) as PythonError;
  assert.equal(out.error, 'DATA_LOSS');
  assert.deepEqual(out.error_info, {
    reason: 'CHECKSUM_MISMATCH',
    domain: 'thinship',
    metadata: { retryable: 'false', volumeOffsetBytes: String(64 * 1024) },
    status_code: 15,
  });
  assert.match(out.details, /volume offset 65536/);
});
