/**
 * `thinship certs` (real openssl): a second run refuses to overwrite the CA and
 * keys (the first client's key would be lost) unless --force; --add-client
 * issues one more client certificate from the existing CA.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { runTool } from '../../src/exec/run.js';

/** openssl verify of a client certificate against a CA: true when it chains and is for client auth. */
async function verifiesAsClient(ca: string, cert: string): Promise<boolean> {
  return runTool('openssl', ['verify', '-CAfile', ca, '-purpose', 'sslclient', cert]).then(
    () => true,
    () => false,
  );
}

async function subjectOf(cert: string): Promise<string> {
  return (await runTool('openssl', ['x509', '-in', cert, '-noout', '-subject', '-nameopt', 'RFC2253'])).stdout.trim();
}

test('certs run twice refuses to overwrite; --add-client adds a client to the same CA; --force makes a new CA', async () => {
  const root = mkdtempSync(join(tmpdir(), 'thinship-certs-'));
  const dir = join(root, 'tls');
  const f = (n: string) => join(dir, n);
  try {
    const first = await runCli(['certs', '--out', dir, '--server-name', 'localhost', '--client', 'alice']);
    assert.equal(first.code, 0, first.stderr);
    const caKey = readFileSync(f('ca.key'), 'utf8');
    const aliceKey = readFileSync(f('client.key'), 'utf8');
    assert.ok(await verifiesAsClient(f('ca.crt'), f('client.crt')));

    // Again: refused, naming the files, nothing changed.
    const again = await runCli(['certs', '--out', dir, '--client', 'alice']);
    assert.equal(again.code, 2, again.stderr);
    for (const n of ['ca.crt', 'ca.key', 'server.key', 'client.key']) assert.ok(again.stderr.includes(f(n)), `names ${n}: ${again.stderr}`);
    assert.match(again.stderr, /--force/);
    assert.match(again.stderr, /--add-client/);
    assert.equal(readFileSync(f('ca.key'), 'utf8'), caKey, 'CA key kept');
    assert.equal(readFileSync(f('client.key'), 'utf8'), aliceKey, "the first client's key kept");

    // One more client from the same CA.
    const add = await runCli(['certs', '--out', dir, '--add-client', '--client', 'bob']);
    assert.equal(add.code, 0, add.stderr);
    assert.ok(await verifiesAsClient(f('ca.crt'), f('bob.crt')), 'bob is signed by the existing CA');
    assert.match(await subjectOf(f('bob.crt')), /CN=bob/);
    assert.equal(statSync(f('bob.key')).mode & 0o777, 0o600, 'key is private');
    assert.equal(readFileSync(f('ca.key'), 'utf8'), caKey, 'CA untouched');
    assert.equal(readFileSync(f('client.key'), 'utf8'), aliceKey, 'alice untouched');
    assert.match(add.stdout, /"bob"/, 'prints the identity to add to the receiver config');
    assert.ok(add.stdout.includes(`--cert ${f('bob.crt')} --key ${f('bob.key')}`), add.stdout);

    // Adding bob again: refused; with --force: a new key, still from the same CA.
    const bobKey = readFileSync(f('bob.key'), 'utf8');
    const addAgain = await runCli(['certs', '--out', dir, '--add-client', '--client', 'bob']);
    assert.equal(addAgain.code, 2, addAgain.stderr);
    assert.ok(addAgain.stderr.includes(f('bob.crt')) && addAgain.stderr.includes(f('bob.key')), addAgain.stderr);
    assert.equal(readFileSync(f('bob.key'), 'utf8'), bobKey);
    const addForce = await runCli(['certs', '--out', dir, '--add-client', '--client', 'bob', '--force']);
    assert.equal(addForce.code, 0, addForce.stderr);
    assert.notEqual(readFileSync(f('bob.key'), 'utf8'), bobKey);
    assert.ok(await verifiesAsClient(f('ca.crt'), f('bob.crt')));

    // Names that would write the CA's or the server's files; --add-client without a name.
    for (const bad of ['ca', 'server']) {
      const r = await runCli(['certs', '--out', dir, '--add-client', '--client', bad, '--force']);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`client name "${bad}" would write ${bad}.crt`));
    }
    assert.equal(readFileSync(f('ca.key'), 'utf8'), caKey);
    const noName = await runCli(['certs', '--out', dir, '--add-client']);
    assert.equal(noName.code, 2, noName.stderr);
    assert.match(noName.stderr, /--add-client needs --client NAME/);

    // --force without --add-client: a new CA; certificates of the old one no longer verify.
    const force = await runCli(['certs', '--out', dir, '--client', 'alice', '--force']);
    assert.equal(force.code, 0, force.stderr);
    assert.notEqual(readFileSync(f('ca.key'), 'utf8'), caKey);
    assert.ok(await verifiesAsClient(f('ca.crt'), f('client.crt')));
    assert.ok(!(await verifiesAsClient(f('ca.crt'), f('bob.crt'))), 'bob was issued by the replaced CA');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('certs --add-client without a CA in --out: exit 3 naming the missing files, nothing written', async () => {
  const root = mkdtempSync(join(tmpdir(), 'thinship-certs-'));
  try {
    const r = await runCli(['certs', '--out', root, '--add-client', '--client', 'bob']);
    assert.equal(r.code, 3, r.stderr);
    assert.ok(r.stderr.includes(join(root, 'ca.crt')) && r.stderr.includes(join(root, 'ca.key')), r.stderr);
    assert.ok(!existsSync(join(root, 'bob.key')));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
