/**
 * The client's reading of gRPC errors: grpc-js's status details for each way a
 * connection fails (the strings below are what grpc-js 1.14 reported in a
 * probe against a real receiver), the receiver's retryable flag carried in
 * the trailer, and a receiver-side ABORTED kept apart from a signal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { toServiceError, fromServiceError, transportFailure, RETRYABLE_METADATA_KEY } from '../../src/rpc/status.js';
import { ThinshipError } from '../../src/errors.js';
import { exitCodeOf } from '../../src/cli/exit-codes.js';

const last = (e: string) => `No connection established. Last error: ${e}. Resolution note: `;

test('transport failures are classified on what grpc-js reports, one kind each', () => {
  const cases: [string, string, RegExp][] = [
    [last('Error: connect ECONNREFUSED 127.0.0.1:37097'), 'connect', /^connection refused \(connect ECONNREFUSED 127\.0\.0\.1:37097\)$/],
    [last('Error: connect EHOSTUNREACH 10.1.2.3:7443'), 'connect', /^no route to host/],
    ['Name resolution failed for target dns:nonexistent.invalid:37097', 'connect', /^name not found/],
    [last('Error: Client network socket disconnected before secure TLS connection was established'), 'dropped', /disconnected before secure TLS/],
    [last('Error: self-signed certificate in certificate chain'), 'server-certificate', /^self-signed certificate in certificate chain$/],
    [last('Error [ERR_TLS_CERT_ALTNAME_INVALID]: Hostname/IP does not match certificate\'s altnames: Host: wrong.example. is not in the cert\'s altnames: DNS:localhost'), 'server-certificate', /^Hostname\/IP does not match .*wrong\.example/],
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
  const untrusted = fromServiceError({ code: grpc.status.UNAVAILABLE, details: last('Error: unable to get local issuer certificate') }, 'GetTransferState on h:1');
  assert.equal(untrusted.code, 'UNAUTHENTICATED');
  assert.equal(untrusted.retryable, false);
  assert.equal(exitCodeOf(untrusted), 13);
  const refused = fromServiceError({ code: grpc.status.UNAVAILABLE, details: last('Error: connect ECONNREFUSED 127.0.0.1:9') }, 'x');
  assert.equal(refused.code, 'UNAVAILABLE');
  assert.equal(refused.retryable, true);
  assert.equal((refused.details.transport as { kind: string }).kind, 'connect');
});

test('the receiver\'s retryable flag travels in the trailer; a receiver-side ABORTED is TRANSFER_ABORTED (exit 16)', () => {
  const busy = toServiceError(new ThinshipError('TRANSFER_BUSY', 'this receiver is already running 16 transfers (its limit)', { retryable: true }));
  assert.deepEqual(busy.metadata!.get(RETRYABLE_METADATA_KEY), ['1']);
  const back = fromServiceError({ code: busy.code, details: busy.details, metadata: busy.metadata }, 'ApplyStream');
  assert.equal(back.code, 'TRANSFER_BUSY');
  assert.equal(back.retryable, true);
  const held = toServiceError(new ThinshipError('TRANSFER_BUSY', 'target in use by transfer x'));
  assert.deepEqual(held.metadata!.get(RETRYABLE_METADATA_KEY), []);
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
