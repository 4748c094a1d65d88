/**
 * A tool that is not installed is TOOL_MISSING (exit 5) with the Debian package
 * that provides it, whichever way it is started. Tools in /usr/sbin (not on an
 * ordinary user's PATH on Debian) are still found.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool, spawnTool, spawnToolToFile, toolEnv } from '../../src/exec/run.js';
import { DEBIAN_PACKAGE_OF } from '../../src/exec/packages.js';
import { ThinshipError } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';

const EXPECTED: [string, string][] = [
  ['thin_dump', 'thin-provisioning-tools'],
  ['thin_delta', 'thin-provisioning-tools'],
  ['thin_restore', 'thin-provisioning-tools'],
  ['openssl', 'openssl'],
  ['lvs', 'lvm2'],
  ['lvchange', 'lvm2'],
  ['dmsetup', 'dmsetup'],
  ['losetup', 'mount'],
  ['zstd', 'zstd'],
  ['socat', 'socat'],
  ['qemu-system-x86_64', 'qemu-system-x86'],
  ['fincore', 'util-linux'],
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
    await assert.rejects(
      runTool('thinship-no-such-tool', [], { env }),
      (e: unknown) => e instanceof ThinshipError && e.message === 'thinship-no-such-tool is not installed (not found on PATH)',
    );
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});

test('thinship certs without openssl: exit 5 naming the package', async () => {
  // (PATH is empty: thinship adds only the sbin directories, and openssl lives in /usr/bin)
  const empty = mkdtempSync(join(tmpdir(), 'thinship-nopath-'));
  try {
    const r = await runCli(['certs', '--out', join(empty, 'tls')], { env: { ...process.env, PATH: empty } });
    assert.equal(r.code, 5, r.stderr);
    assert.equal(r.stderr, 'thinship: openssl is not installed (not found on PATH): install the package openssl (Debian/Ubuntu: apt-get install openssl)\n');
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});

test('toolEnv: the sbin directories a PATH lacks are added after it; a PATH the caller sets is kept', () => {
  const saved = process.env.PATH;
  try {
    process.env.PATH = '/usr/bin:/bin';
    assert.deepEqual(toolEnv(undefined), { PATH: '/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin' });
    assert.deepEqual(toolEnv({ X: '1' }), { X: '1', PATH: '/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin' });
    process.env.PATH = '/usr/local/sbin:/usr/sbin:/sbin:/usr/bin';
    assert.equal(toolEnv(undefined), undefined, 'nothing to add: the inherited environment as is');
    process.env.PATH = '';
    assert.deepEqual(toolEnv(undefined), { PATH: '/usr/local/sbin:/usr/sbin:/sbin' }, 'no empty entry (it would mean the current directory)');
    assert.deepEqual(toolEnv({ PATH: '/nowhere' }), { PATH: '/nowhere' });
  } finally {
    process.env.PATH = saved;
  }
});
