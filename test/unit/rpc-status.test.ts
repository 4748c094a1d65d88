/**
 * The client's reading of gRPC errors: grpc-js's status details for each way a
 * connection fails (the strings below are what grpc-js 1.14 reported in a
 * probe against a real receiver), the receiver's retryable flag carried in
 * the trailer, and a receiver-side ABORTED kept apart from a signal. Also
 * that receiver.proto's list of reasons names the gRPC code each travels with.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { toServiceError, fromServiceError, transportFailure, errorInfoOf, grpcCodeOf, STATUS_DETAILS_KEY, ERROR_DOMAIN } from '../../src/rpc/status.js';
import { protoRoot } from '../../src/rpc/proto.js';
import { ThinshipError, type ErrorCode } from '../../src/errors.js';
import { exitCodeOf } from '../../src/cli/exit-codes.js';

const last = (e: string) => `No connection established. Last error: ${e}. Resolution note: `;

test('transport failures are classified on what grpc-js reports, one kind each', () => {
  const cases: [string, string, RegExp][] = [
    [last('Error: connect ECONNREFUSED 127.0.0.1:37097'), 'connect', /^connection refused \(connect ECONNREFUSED 127\.0\.0\.1:37097\)$/],
    [last('Error: connect EHOSTUNREACH 10.1.2.3:7443'), 'connect', /^no route to host/],
    ['Name resolution failed for target dns:nonexistent.invalid:37097', 'connect', /^name not found/],
    [last('Error: Client network socket disconnected before secure TLS connection was established'), 'dropped', /disconnected before secure TLS/],
    [last('Error: self-signed certificate in certificate chain'), 'server-certificate', /^self-signed certificate in certificate chain$/],
    [
      last(
        "Error [ERR_TLS_CERT_ALTNAME_INVALID]: Hostname/IP does not match certificate's altnames: Host: wrong.example. is not in the cert's altnames: DNS:localhost",
      ),
      'server-certificate',
      /^Hostname\/IP does not match .*wrong\.example/,
    ],
    [last('Failed to connect (2026-12-01T21:32:39.328Z)'), 'closed', /^Failed to connect/],
    ['Connection dropped', 'other', /Connection dropped/],
  ];
  for (const [details, kind, re] of cases) {
    const t = transportFailure(details);
    assert.equal(t.kind, kind, details);
    assert.match(t.reason, re, details);
  }
  // a certificate word elsewhere in a message is no TLS failure (no broad regex)
  assert.equal(transportFailure(last('Error: read ECONNRESET while reading certificate store')).kind, 'dropped');
});

test('an untrusted receiver is UNAUTHENTICATED and not retried; a refused connection stays retryable UNAVAILABLE', () => {
  const untrusted = fromServiceError(
    { code: grpc.status.UNAVAILABLE, details: last('Error: unable to get local issuer certificate') },
    'GetTransferState on h:1',
  );
  assert.equal(untrusted.code, 'UNAUTHENTICATED');
  assert.equal(untrusted.retryable, false);
  assert.equal(exitCodeOf(untrusted), 13);
  const refused = fromServiceError({ code: grpc.status.UNAVAILABLE, details: last('Error: connect ECONNREFUSED 127.0.0.1:9') }, 'x');
  assert.equal(refused.code, 'UNAVAILABLE');
  assert.equal(refused.retryable, true);
  assert.equal((refused.details.transport as { kind: string }).kind, 'connect');
});

test("the receiver's retryable flag travels in the trailer; a receiver-side ABORTED is TRANSFER_ABORTED (exit 16)", () => {
  const busy = toServiceError(new ThinshipError('TRANSFER_BUSY', 'this receiver is already running 16 transfers (its limit)', { retryable: true }));
  assert.equal(errorInfoOf(busy.metadata)?.metadata.retryable, 'true');
  const back = fromServiceError({ code: busy.code, details: busy.details, metadata: busy.metadata }, 'ApplyStream');
  assert.equal(back.code, 'TRANSFER_BUSY');
  assert.equal(back.retryable, true);
  const held = toServiceError(new ThinshipError('TRANSFER_BUSY', 'target in use by transfer x'));
  assert.equal(errorInfoOf(held.metadata)?.metadata.retryable, 'false');
  assert.equal(fromServiceError({ code: held.code, details: held.details, metadata: held.metadata }, 'x').retryable, false);
  const aborted = toServiceError(new ThinshipError('ABORTED', 'transfer t was aborted by AbortTransfer'));
  const a = fromServiceError({ code: aborted.code, details: aborted.details, metadata: aborted.metadata }, 'ApplyStream');
  assert.equal(a.code, 'TRANSFER_ABORTED');
  assert.equal(exitCodeOf(a), 16);
  // our own cancel (CANCELLED) is still ABORTED; a signal's exit code wins
  const mine = fromServiceError({ code: grpc.status.CANCELLED, details: 'Cancelled on client' }, 'x');
  assert.equal(mine.code, 'ABORTED');
  assert.equal(exitCodeOf(new ThinshipError('ABORTED', 'SIGTERM', { details: { exitCode: 143 } })), 143);
});

test('errors travel in the standard rich model: google.rpc.Status with an ErrorInfo in grpc-status-details-bin', () => {
  const st = toServiceError(
    new ThinshipError('CHECKSUM_MISMATCH', 'data record at volume offset 65536: checksum mismatch\nsecond line', { details: { volumeOffset: 65536 } }),
  );
  assert.equal(st.code, grpc.status.DATA_LOSS);
  const bin = st.metadata!.get(STATUS_DETAILS_KEY)[0];
  assert.ok(Buffer.isBuffer(bin), 'a binary trailer');
  // Decoded by hand from the wire format (not by our codec): Status{1: code, 2: message, 3: Any{1: type_url, 2: value}}.
  const fields = protoFields(bin);
  assert.equal(fields.get(1)?.[0], grpc.status.DATA_LOSS);
  assert.equal((fields.get(2)?.[0] as Buffer).toString(), 'data record at volume offset 65536: checksum mismatch second line');
  const any = protoFields(fields.get(3)?.[0] as Buffer);
  assert.equal((any.get(1)?.[0] as Buffer).toString(), 'type.googleapis.com/google.rpc.ErrorInfo');
  const info = protoFields(any.get(2)?.[0] as Buffer);
  assert.equal((info.get(1)?.[0] as Buffer).toString(), 'CHECKSUM_MISMATCH');
  assert.equal((info.get(2)?.[0] as Buffer).toString(), ERROR_DOMAIN);
  const entries = new Map(
    (info.get(3) as Buffer[]).map((e) => {
      const kv = protoFields(e);
      return [String(kv.get(1)?.[0]), String(kv.get(2)?.[0])];
    }),
  );
  assert.deepEqual(Object.fromEntries(entries), { retryable: 'false', volumeOffsetBytes: '65536' });
  // and our client reads it back: the code, the offset
  assert.deepEqual(errorInfoOf(st.metadata), {
    reason: 'CHECKSUM_MISMATCH',
    domain: ERROR_DOMAIN,
    metadata: { retryable: 'false', volumeOffsetBytes: '65536' },
  });
  const back = fromServiceError({ code: st.code, details: st.details, metadata: st.metadata }, 'ApplyStream');
  assert.equal(back.code, 'CHECKSUM_MISMATCH');
  assert.equal(back.details.volumeOffset, 65536);
  // an error without a record at fault has no offset; a trailer that is not a Status is no receiver's
  assert.deepEqual(errorInfoOf(toServiceError(new ThinshipError('TRANSFER_BUSY', 'busy')).metadata)?.metadata, { retryable: 'false' });
  const junk = new grpc.Metadata();
  junk.set(STATUS_DETAILS_KEY, Buffer.from([0xff, 0xff, 0xff]));
  assert.equal(errorInfoOf(junk), undefined);
  assert.equal(fromServiceError({ code: grpc.status.FAILED_PRECONDITION, details: 'x', metadata: junk }, 'x').code, 'INTERNAL');
});

/** Fields of a protobuf message (varints as numbers, length-delimited as Buffers), by number. */
function protoFields(b: Buffer): Map<number, (number | Buffer)[]> {
  const out = new Map<number, (number | Buffer)[]>();
  let i = 0;
  const varint = () => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const x = b[i++]!;
      v += (x & 0x7f) * 2 ** shift;
      shift += 7;
      if (x < 0x80) return v;
    }
  };
  while (i < b.length) {
    const key = varint();
    const wire = key & 7;
    const value =
      wire === 0
        ? varint()
        : wire === 2
          ? (() => {
              const n = varint();
              i += n;
              return b.subarray(i - n, i);
            })()
          : assert.fail(`wire type ${wire}`);
    out.set(key >>> 3, [...(out.get(key >>> 3) ?? []), value]);
  }
  return out;
}

test("receiver.proto's list of reasons says the gRPC code each one travels with (what clients in other languages read)", () => {
  const proto = readFileSync(join(protoRoot(), 'thinship/v1/receiver.proto'), 'utf8');
  const header = proto.slice(proto.indexOf('// The reasons a receiver sends'), proto.indexOf('syntax = "proto3"'));
  const listed = [...header.matchAll(/^\/\/ {3}([A-Z_]+) \(([A-Z_]+)\)/gm)].map((m) => ({ reason: m[1]!, grpc: m[2]! }));
  // The rules of issue 13 (base, divergence, size) must be there: a client acts on them.
  for (const r of ['BASE_MISMATCH', 'DIVERGED', 'TARGET_TOO_SMALL', 'NOT_FOUND', 'PERMISSION_DENIED'])
    assert.ok(
      listed.some((l) => l.reason === r),
      `${r} is listed`,
    );
  for (const { reason, grpc: name } of listed) {
    const code = grpc.status[name as keyof typeof grpc.status];
    assert.equal(typeof code, 'number', `${reason}: ${name} is a gRPC code`);
    assert.equal(grpcCodeOf(reason as ErrorCode), code, `${reason} travels as ${name}`);
  }
});
