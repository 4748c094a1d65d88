/**
 * contrib/ is what an operator installs: the systemd unit must pass
 * `systemd-analyze verify` with no warning (unknown keys and bad values are only
 * warnings there), and the example config must load as a receiver config.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../helpers/paths.js';
import { parseReceiverConfig } from '../../src/rpc/server-config.js';
import { parseSenderConfig } from '../../src/service/sender-config.js';

const run = promisify(execFile);
const INSTALLED_BINARY = '/usr/local/bin/thinship';

for (const [unitName, command] of [
  ['thinship-receiver.service', 'serve'],
  ['thinship-sender.service', 'sender-serve'],
] as const) {
  test(`contrib/systemd/${unitName} passes systemd-analyze verify without warnings`, async () => {
    const unit = await readFile(join(repoRoot, 'contrib/systemd', unitName), 'utf8');
    assert.ok(unit.includes(`ExecStart=${INSTALLED_BINARY} ${command} `), 'the unit runs the npm-installed binary');
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m, 'systemctl reload sends SIGHUP (the daemon reloads its config)');
    // verify checks that ExecStart is executable: point it at the build's binary.
    const dir = await mkdtemp(join(tmpdir(), 'thinship-unit-'));
    try {
      const copy = join(dir, unitName);
      await writeFile(copy, unit.replaceAll(INSTALLED_BINARY, join(repoRoot, 'dist/bin/thinship.js')));
      const r = await run('systemd-analyze', ['verify', copy]).catch((e: { code: number; stderr: string }) => e);
      assert.equal('code' in r ? r.code : 0, 0, r.stderr);
      assert.equal(r.stderr.trim(), '', 'no warnings from systemd-analyze');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

test('systemd-analyze verify reports an unknown key (the check above can fail)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'thinship-unit-'));
  try {
    const bad = join(dir, 'bad.service');
    await writeFile(bad, '[Service]\nType=simple\nExecStart=/bin/true\nProtectSytem=full\n');
    const r = await run('systemd-analyze', ['verify', bad]).catch((e: { stderr: string }) => e);
    assert.match(r.stderr, /Unknown key 'ProtectSytem'/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("contrib/receiver.example.json loads as a receiver config and names the unit's state directory", async () => {
  const file = join(repoRoot, 'contrib/receiver.example.json');
  const example = JSON.parse(await readFile(file, 'utf8')) as { identities: Record<string, { directories?: string[] }> };
  // Directories must exist when the config loads: stand in a temporary one for the example's.
  const dir = await mkdtemp(join(tmpdir(), 'thinship-example-'));
  try {
    const siteB = example.identities['site-b'];
    assert.ok(siteB, 'the example has identity site-b');
    const named = siteB.directories ?? [];
    assert.deepEqual(named, ['/srv/thinship/site-b']);
    siteB.directories = [dir];
    const config = await parseReceiverConfig(example, file);
    assert.equal(config.stateDir, '/var/lib/thinship', 'StateDirectory=thinship in the unit');
    assert.equal(config.tls?.ca, join(repoRoot, 'contrib/ca.crt'), 'TLS paths are relative to the config file');
    assert.deepEqual([...config.policy.identities.keys()].sort(), ['site-a', 'site-b']);
    assert.deepEqual(config.policy.identities.get('site-a')?.lvm, [{ vg: 'vg1', pool: 'pool0', lv: 'replica-*' }]);
    assert.equal(config.policy.identities.get('site-b')?.maxBytesPerSecond, 50 * 1024 * 1024);
    assert.equal(config.metricsListen, '127.0.0.1:9464');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('contrib/sender.example.json loads as a sender config', async () => {
  const file = join(repoRoot, 'contrib/sender.example.json');
  const config = await parseSenderConfig(JSON.parse(await readFile(file, 'utf8')), file);
  assert.equal(config.receiverTls?.cert, join(repoRoot, 'contrib/site-a.crt'));
  assert.deepEqual([...config.identities.keys()].sort(), ['dashboard', 'orchestrator']);
  assert.deepEqual([...config.identities.get('dashboard')!.actions], ['watch']);
  assert.equal(config.metricsListen, '127.0.0.1:9465');
});
