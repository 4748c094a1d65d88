/**
 * A thin LV named by its device path takes the LVM route (recv, target show,
 * serve's authorizeTarget): the names behind a device-mapper name, and what is
 * not an LV at all. The positive case on real dm-thin: test/vm/serve-lvm.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lvOfDmName } from '../../src/thin/names.js';
import { devMajorMinor, thinLvOfDevice } from '../../src/device/block-info.js';

test('lvOfDmName: hyphens inside names are doubled; a single hyphen splits VG from LV', () => {
  assert.deepEqual(lvOfDmName('vg0-thin1'), { vg: 'vg0', lv: 'thin1' });
  assert.deepEqual(lvOfDmName('test--vg-pool--1'), { vg: 'test-vg', lv: 'pool-1' });
  assert.deepEqual(lvOfDmName('dst-r.thinship--staging'), { vg: 'dst', lv: 'r.thinship-staging' });
  assert.deepEqual(lvOfDmName('a--b--c-d'), { vg: 'a-b-c', lv: 'd' });
  // An LV name cannot start with '-', so three hyphens are the VG's doubled one and the split.
  assert.deepEqual(lvOfDmName('vg0---lv'), { vg: 'vg0-', lv: 'lv' });
  for (const bad of ['vg0', 'vg0-pool-tpool', '-vg0-lv', 'vg0-', '']) assert.equal(lvOfDmName(bad), undefined, bad);
});

test('thinLvOfDevice: a file, a missing path and a block device that is not device-mapper are not LVs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'thinship-lvdev-'));
  try {
    writeFileSync(join(dir, 'file.img'), 'x');
    assert.equal(await thinLvOfDevice(join(dir, 'file.img')), undefined);
    assert.equal(await thinLvOfDevice(join(dir, 'missing')), undefined);
    const loop = '/dev/loop0';
    if (existsSync(loop) && statSync(loop).isBlockDevice()) {
      // A fake sysfs where the device is an LVM layer (a -tpool suffix on its dm uuid): not an LV of its own.
      const { major, minor } = devMajorMinor(BigInt(statSync(loop).rdev));
      const dm = join(dir, 'sys', 'dev', 'block', `${major}:${minor}`, 'dm');
      mkdirSync(dm, { recursive: true });
      assert.equal(await thinLvOfDevice(loop, join(dir, 'sys')), undefined, 'no dm directory: not device-mapper');
      writeFileSync(join(dm, 'name'), 'vg0-pool-tpool\n');
      writeFileSync(join(dm, 'uuid'), `LVM-${'a'.repeat(64)}-tpool\n`);
      assert.equal(await thinLvOfDevice(loop, join(dir, 'sys')), undefined, 'an LVM layer');
      writeFileSync(join(dm, 'uuid'), `CRYPT-LUKS2-${'a'.repeat(32)}\n`);
      writeFileSync(join(dm, 'name'), 'vg0-thin1\n');
      assert.equal(await thinLvOfDevice(loop, join(dir, 'sys')), undefined, 'another dm user');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
