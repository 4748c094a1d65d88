/**
 * Loop devices over sparse files for tests of block-device targets: attach,
 * detach, read back the whole device, and whether this host allows them
 * (root and losetup; the tests skip with a message only then).
 */
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { openSync, readSync, closeSync, writeSync, fsyncSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from '../../src/exec/run.js';
import type { ThinshipError } from '../../src/errors.js';

export async function attachLoop(file: string): Promise<string> {
  return (await runTool('losetup', ['-f', '--show', file])).stdout.trim();
}

export async function detachLoop(dev: string): Promise<void> {
  await runTool('losetup', ['-d', dev]);
}

/** Why loop devices cannot be used here, or undefined if they can. */
export async function loopUnavailable(): Promise<string | undefined> {
  const probeDir = await mkdtemp(join(tmpdir(), 'thinship-loop-probe-'));
  try {
    const f = join(probeDir, 'probe.img');
    await writeFile(f, '');
    await truncate(f, 1024 * 1024);
    await detachLoop(await attachLoop(f));
    return undefined;
  } catch (e) {
    const err = e as ThinshipError & { stderr?: string };
    if (err.code === 'TOOL_MISSING') return 'losetup is not installed';
    if (/permission denied|operation not permitted/i.test(`${err.message} ${err.stderr ?? ''}`)) return `losetup not permitted: ${err.message}`;
    throw e;
  } finally {
    await rm(probeDir, { recursive: true, force: true });
  }
}

/** A new sparse backing file of `sizeBytes` (filled with `content` if given), attached as a loop device. */
export async function newLoop(backing: string, sizeBytes: number, content?: Buffer): Promise<string> {
  await writeFile(backing, content ?? '');
  await truncate(backing, sizeBytes);
  return attachLoop(backing);
}

/** The first `sizeBytes` of a device (or file), read through it. */
export function readDevice(path: string, sizeBytes: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(sizeBytes);
    let done = 0;
    while (done < sizeBytes) {
      const n = readSync(fd, buf, done, sizeBytes - done, done);
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/** Writes `bytes` at `offsetBytes` of a device, as someone other than thinship would (then fsync). */
export function writeDevice(path: string, offsetBytes: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offsetBytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
