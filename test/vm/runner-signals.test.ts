/**
 * The VM runner never leaves qemu behind: run-guest.sh stopped by SIGTERM or
 * SIGINT kills its VM and exits 128+n, and a test process using vm-harness
 * stopped by SIGTERM stops its VMs too. Each signal is sent once qemu runs
 * (its pid found under the runner), never after a timer.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { prepareVm, runGuestScript, vmSkipReason } from './vm-harness.js';

const skip = vmSkipReason('runner-signals');
const WAIT_MS = 120_000;
let dir: string;
let guest: string;

function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}
function descendants(pid: number): number[] {
  return children(pid).flatMap((k) => [k, ...descendants(k)]);
}
const commOf = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return commOf(pid) !== '';
  } catch {
    return false;
  }
};

/** Polls (bounded) until a qemu process runs below `pid`; returns its pid. */
async function qemuBelow(pid: number, runner: ChildProcess, log: () => string): Promise<number> {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const q = descendants(pid).find((p) => commOf(p).startsWith('qemu-system'));
    if (q !== undefined) return q;
    if (runner.exitCode !== null || runner.signalCode !== null) assert.fail(`the runner exited before qemu started: ${log()}`);
    if (Date.now() > end) assert.fail(`no qemu under pid ${pid} within ${WAIT_MS} ms: ${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    const t = setTimeout(() => reject(new Error('the runner did not exit within 30 s of the signal')), 30_000);
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
  });
}

async function gone(pid: number): Promise<boolean> {
  const end = Date.now() + 10_000;
  while (alive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  return !alive(pid);
}

describe('VM runner and signals', { skip }, () => {
  before(async () => {
    await prepareVm();
    dir = mkdtempSync(join(tmpdir(), 'thinship-vmsig-'));
    guest = join(dir, 'sleep.sh');
    writeFileSync(guest, '#!/bin/sh\nsleep 600\n');
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const [sig, status] of [
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const) {
    test(`run-guest.sh stopped by ${sig} kills its qemu and exits ${status}`, async () => {
      const runner = spawn('bash', [runGuestScript, guest], {
        env: { ...process.env, RV_DISKS: '', RV_MEM: '256', RV_TIMEOUT: '900' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      runner.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      runner.stdout.resume();
      try {
        const qemu = await qemuBelow(runner.pid!, runner, () => stderr);
        runner.kill(sig); // the runner only, not its process group
        const e = await exited(runner);
        assert.equal(e.code, status, `exit ${e.code} signal ${e.signal}: ${stderr}`);
        assert.ok(await gone(qemu), `qemu ${qemu} is gone after the runner stopped`);
      } finally {
        for (const p of descendants(runner.pid!)) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        runner.kill('SIGKILL');
      }
    });
  }

  test('a test process using vm-harness, stopped by SIGTERM, leaves no qemu behind', async () => {
    const harness = pathToFileURL(join(import.meta.dirname, 'vm-harness.js')).href;
    const code = `const h = await import(${JSON.stringify(harness)}); await h.runGuest(${JSON.stringify(guest)}, { disks: [], memMiB: 256, timeoutSec: 900, name: 'runner-signals' });`;
    const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    proc.stdout.resume();
    try {
      const qemu = await qemuBelow(proc.pid!, proc, () => stderr);
      proc.kill('SIGTERM');
      const e = await exited(proc);
      assert.equal(e.signal, 'SIGTERM', `ended by the signal (exit ${e.code}): ${stderr}`);
      assert.ok(await gone(qemu), `qemu ${qemu} is gone after the test process stopped`);
    } finally {
      for (const p of descendants(proc.pid!)) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      proc.kill('SIGKILL');
    }
  });
});
