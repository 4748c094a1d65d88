/**
 * A tool that is not installed is TOOL_MISSING (exit 5) with the Debian package
 * that provides it, whichever way it is started; the README's first command on
 * a machine without thin-provisioning-tools says what to install.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool, spawnTool, spawnToolToFile } from '../../src/exec/run.js';
import { DEBIAN_PACKAGE_OF } from '../../src/exec/packages.js';
import { ThinshipError } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';

const EXPECTED: [string, string][] = [
  ['thin_dump', 'thin-provisioning-tools'], ['thin_delta', 'thin-provisioning-tools'], ['thin_restore', 'thin-provisioning-tools'],
  ['openssl', 'openssl'], ['lvs', 'lvm2'], ['lvchange', 'lvm2'], ['dmsetup', 'dmsetup'], ['losetup', 'mount'],
  ['zstd', 'zstd'], ['socat', 'socat'], ['qemu-system-x86_64', 'qemu-system-x86'], ['fincore', 'util-linux'],
];

const missing = (tool: string, pkg: string) => (e: unknown) => {
  assert.ok(e instanceof ThinshipError, String(e));
  assert.equal(e.code, 'TOOL_MISSING');
  assert.equal(e.message, `${tool} is not installed (not found on PATH): install the package ${pkg} (Debian/Ubuntu: apt-get install ${pkg})`);
  return true;
};

test('every tool thinship or its tests run names its Debian package when missing (runTool, spawnTool, spawnToolToFile)', async () => {
  const empty = mkdtempSync(join(tmpdir(), 'thinship-nopath-'));
  try {
    const env = { PATH: empty };
    for (const [tool, pkg] of EXPECTED) {
      assert.equal(DEBIAN_PACKAGE_OF[tool], pkg);
      await assert.rejects(runTool(tool, ['--version'], { env }), missing(tool, pkg), `runTool ${tool}`);
      await assert.rejects(spawnTool(tool, [], { env }).done, missing(tool, pkg), `spawnTool ${tool}`);
      const t = spawnToolToFile(tool, [], { env });
      await assert.rejects(t.done, missing(tool, pkg), `spawnToolToFile ${tool}`);
      t.stdout.destroy();
    }
    // A tool thinship does not know keeps the plain message.
    await assert.rejects(runTool('thinship-no-such-tool', [], { env }), (e: unknown) => e instanceof ThinshipError && e.message === 'thinship-no-such-tool is not installed (not found on PATH)');
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});

test('thinship demo without thin-provisioning-tools: exit 5 naming the package', async () => {
  const empty = mkdtempSync(join(tmpdir(), 'thinship-nopath-'));
  try {
    const r = await runCli(['demo'], { env: { ...process.env, PATH: empty } });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /thinship: thin_restore is not installed \(not found on PATH\): install the package thin-provisioning-tools \(Debian\/Ubuntu: apt-get install thin-provisioning-tools\)/);
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});
