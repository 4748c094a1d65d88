/**
 * The VM tier needs qemu. Without it every scenario's `before` hook fails and
 * node's summary says "fail 0, cancelled N": only the exit status would show
 * it. This test makes a missing qemu (or a VM that cannot be prepared) a
 * failing test in the summary, with run-guest.sh's explanation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { prepareVm, vmSkipReason } from './vm-harness.js';

test('qemu-system-x86_64 is installed and a VM can be prepared', { skip: vmSkipReason() }, async () => {
  await prepareVm(); // run-guest.sh installs qemu with apt when it can; its error says what is missing
  const path = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64 || true'], { encoding: 'utf8' }).trim();
  assert.notEqual(path, '', 'qemu-system-x86_64 is on PATH');
});
