/**
 * An ordinary Debian user's PATH (/usr/local/bin:/usr/bin:/bin) has no sbin
 * directory, where thin-provisioning-tools, lvm2 and losetup live: the README's
 * first command must still find them (thinship looks in the sbin directories too).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { runCli } from '../helpers/cli.js';

const USER_PATH = '/usr/local/bin:/usr/bin:/bin';
const onUserPath = USER_PATH.split(':').some((d) => existsSync(`${d}/thin_restore`));
const skip = onUserPath ? "thin_restore is on an ordinary user's PATH here: nothing to prove" : false;

test("thinship demo with a user's PATH finds thin_restore in /usr/sbin and completes", { skip }, async () => {
  assert.ok(
    ['/usr/sbin', '/sbin', '/usr/local/sbin'].some((d) => existsSync(`${d}/thin_restore`)),
    'thin-provisioning-tools is installed (in an sbin directory)',
  );
  const r = await runCli(['demo'], { env: { ...process.env, PATH: USER_PATH } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /verified: target == device 2/);
});
