/**
 * What divergence a raw block device can show (src/receiver/target-state/device.ts
 * deviceDivergenceOf): size always; the kernel's I/O counters only within the
 * same boot and disk sequence number; a loop device's backing file across
 * re-attach and reboot; otherwise it says what it could not check.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deviceDivergenceOf, type DeviceCommitStat } from '../../src/receiver/target-state/device.js';

const commit: DeviceCommitStat = { sizeBytes: '1048576', bootId: 'boot-1', diskSeq: '7', writeSectors: '100', discardSectors: '8' };

test('same attachment, counters unchanged: not diverged, fully checked', () => {
  assert.deepEqual(deviceDivergenceOf(commit, { ...commit }), { why: [] });
});

test('same attachment: written or discarded sectors since the commit are divergence, with the count', () => {
  assert.match(deviceDivergenceOf(commit, { ...commit, writeSectors: '108' }).why.join(), /8 sectors were written/);
  assert.match(deviceDivergenceOf(commit, { ...commit, discardSectors: '16' }).why.join(), /8 sectors were discarded/);
});

test('a size change is divergence whatever the attachment', () => {
  assert.match(deviceDivergenceOf(commit, { ...commit, bootId: 'boot-2', sizeBytes: '2097152' }).why.join(), /size 2097152 bytes, recorded 1048576/);
});

test('another boot or disk sequence: the counters are not compared, and the check says it could not tell', () => {
  for (const now of [
    { ...commit, bootId: 'boot-2', writeSectors: '5' },
    { ...commit, diskSeq: '9', writeSectors: '5' },
  ]) {
    const d = deviceDivergenceOf(commit, now);
    assert.deepEqual(d.why, []);
    assert.match(d.unchecked ?? '', /re-attached or the host rebooted/);
  }
});

test("a loop device: its backing file's mtime and size are compared across re-attach, and then nothing is unchecked", () => {
  const loop: DeviceCommitStat = { ...commit, backing: { sizeBytes: '1048576', mtimeNs: '1700000000000000000' } };
  assert.deepEqual(deviceDivergenceOf(loop, { ...loop, diskSeq: '9' }), { why: [] });
  assert.match(
    deviceDivergenceOf(loop, { ...loop, diskSeq: '9', backing: { sizeBytes: '1048576', mtimeNs: '1700000000500000000' } }).why.join(),
    /backing file was modified/,
  );
  assert.match(deviceDivergenceOf(loop, { ...loop, backing: { sizeBytes: '4096', mtimeNs: '1700000000000000000' } }).why.join(), /backing file is 4096 bytes/);
});
