/**
 * scripts/setup on a simulated fresh machine: PATH is a directory holding only
 * bash, the real node and a few basics; apt-get, sudo and id are small fakes
 * that record their calls, and "installing" a package puts its commands on
 * that PATH. So what the script finds missing, what it installs, that a second
 * run installs nothing, and its Node.js check are all real.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths.js';

const setup = join(repoRoot, 'scripts/setup');

/** Commands each fake package provides (Debian names, as scripts/setup asks for them). */
const PROVIDES: Record<string, string[]> = {
  'thin-provisioning-tools': ['thin_restore', 'thin_dump', 'thin_delta'],
  openssl: ['openssl'],
  make: ['make'],
  'g++': ['g++'],
  python3: ['python3'],
  'qemu-system-x86': ['qemu-system-x86_64'],
  'xz-utils': ['xz'],
  zstd: ['zstd'],
  socat: ['socat'],
  mount: ['losetup'],
  'util-linux': ['fincore', 'flock'],
  'python3-grpcio': ['python3'],
  'python3-grpc-tools': ['python3'],
  systemd: ['systemd-analyze'],
  'golang-go': ['go'],
  'protobuf-compiler': ['protoc'],
  'protoc-gen-go': ['protoc-gen-go'],
  'protoc-gen-go-grpc': ['protoc-gen-go-grpc'],
};

/** Go source packages: the path each puts under the gocode directory (scripts/setup checks for it). */
const GOCODE: Record<string, string> = {
  'golang-google-grpc-dev': 'google.golang.org/grpc/status',
  'golang-google-protobuf-dev': 'google.golang.org/protobuf/proto',
  'golang-github-golang-protobuf-1-5-dev': 'github.com/golang/protobuf/proto/registry.go',
  'golang-google-genproto-dev': 'google.golang.org/genproto/googleapis/rpc/errdetails',
};

const RUNTIME = ['thin-provisioning-tools', 'openssl', 'make', 'g++', 'python3'];
const TESTS = [
  'qemu-system-x86',
  'xz-utils',
  'zstd',
  'socat',
  'mount',
  'util-linux',
  'systemd',
  'golang-go',
  'protobuf-compiler',
  'protoc-gen-go',
  'protoc-gen-go-grpc',
  'python3-grpcio',
  'python3-grpc-tools',
  'golang-google-grpc-dev',
  'golang-google-protobuf-dev',
  'golang-github-golang-protobuf-1-5-dev',
  'golang-google-genproto-dev',
];

function which(cmd: string): string {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} is needed to run this test`);
  return r.stdout.trim();
}

interface Machine {
  dir: string;
  bin: string;
  log: string;
  run(args: string[], env?: NodeJS.ProcessEnv): { code: number | null; out: string; err: string };
  calls(): string[];
}

/** A fresh machine: node and npm, nothing else thinship needs. `uid` is what the fake id prints. */
function freshMachine(opts: { uid?: number; sudo?: boolean; node?: boolean } = {}): Machine {
  const dir = mkdtempSync(join(tmpdir(), 'thinship-setup-'));
  const bin = join(dir, 'bin');
  const log = join(dir, 'calls.log');
  spawnSync('mkdir', ['-p', bin]);
  writeFileSync(log, '');
  for (const c of ['bash', 'env', 'dirname', 'sed', 'cat', 'mkdir', 'touch']) symlinkSync(which(c), join(bin, c));
  if (opts.node !== false) {
    symlinkSync(process.execPath, join(bin, 'node'));
    writeFileSync(join(bin, 'npm'), '#!/bin/sh\necho 10.0.0\n');
  }
  writeFileSync(join(bin, 'id'), `#!/bin/sh\necho ${opts.uid ?? 0}\n`);
  const provides = Object.entries(PROVIDES)
    .map(([p, cs]) => `    ${p}) cmds="${cs.join(' ')}" ;;`)
    .join('\n');
  const gocode = Object.entries(GOCODE)
    .map(([p, path]) => `    ${p}) mkdir -p "${dir}/gocode/${path}" ;;`)
    .join('\n');
  // The fake python3 imports grpc and grpc_tools only once both packages are "installed".
  writeFileSync(
    join(bin, 'apt-get'),
    `#!/bin/bash
echo "apt-get $*" >> "${log}"
[ "$1" = update ] && exit 0
for p in "$@"; do
  case $p in -*) continue ;; esac
  cmds=""
  case $p in
${provides}
${gocode}
    install|*::*) continue ;;
    *) echo "fake apt-get: unknown package $p" >&2; exit 100 ;;
  esac
  touch "${dir}/installed-$p"
  for c in $cmds; do
    if [ "$c" = python3 ]; then
      printf '#!/bin/sh\\n[ "$1" = -c ] || exit 0\\n[ -e "${dir}/installed-python3-grpcio" ] && [ -e "${dir}/installed-python3-grpc-tools" ]\\n' > "${bin}/python3"
    else
      printf '#!/bin/sh\\nexit 0\\n' > "${bin}/$c"
    fi
    ${which('chmod')} +x "${bin}/$c"
  done
done
`,
  );
  if (opts.sudo) writeFileSync(join(bin, 'sudo'), `#!/bin/sh\necho "sudo $*" >> "${log}"\nexec "$@"\n`);
  for (const f of ['apt-get', 'id', 'npm', 'sudo']) if (existsSync(join(bin, f))) chmodSync(join(bin, f), 0o755);
  return {
    dir,
    bin,
    log,
    run(args, env = {}) {
      const r = spawnSync(join(bin, 'bash'), [setup, ...args], {
        encoding: 'utf8',
        env: { PATH: bin, THINSHIP_SETUP_PYTHON: join(bin, 'python3'), THINSHIP_SETUP_SBIN: '', THINSHIP_SETUP_GOCODE: join(dir, 'gocode'), ...env },
        timeout: 60_000,
      });
      return { code: r.status, out: r.stdout, err: r.stderr };
    },
    calls: () =>
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l !== ''),
  };
}

const installLine = (pkgs: string[]) => `apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 ${pkgs.join(' ')}`;

test('setup on a fresh machine installs the runtime packages, names why, and a second run installs nothing', () => {
  const m = freshMachine();
  try {
    const dry = m.run(['--dry-run']);
    assert.equal(dry.code, 0, dry.err);
    assert.ok(dry.out.includes(`setup: would install: ${RUNTIME.join(' ')}\n`), dry.out);
    assert.match(dry.out, /missing thin_restore \(thin_dump\/thin_delta\/thin_restore: plans and the demo pool\): package thin-provisioning-tools/);
    assert.deepEqual(m.calls(), [], '--dry-run runs no apt-get');

    const first = m.run([]);
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, new RegExp(`Node.js ${process.versions.node.replace(/\./g, '\\.')} \\(package.json wants >=20.5\\)`));
    assert.deepEqual(m.calls(), ['apt-get update -qq', installLine(RUNTIME)]);
    assert.match(first.out, /setup: installing thin-provisioning-tools openssl make g\+\+ python3/);

    const again = m.run([]);
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /setup: nothing to install/);
    assert.equal(m.calls().length, 2, 'no apt-get on the second run');

    // --test adds the test tiers' packages only; every package .ci/run installed before is among them.
    const t = m.run(['--test']);
    assert.equal(t.code, 0, t.err);
    assert.deepEqual(m.calls().slice(2), ['apt-get update -qq', installLine(TESTS)]);
    const t2 = m.run(['--test']);
    assert.match(t2.out, /nothing to install: everything \(the test tiers included\) is there/);
    assert.equal(m.calls().length, 4);
  } finally {
    rmSync(m.dir, { recursive: true, force: true });
  }
});

test("setup finds tools in the sbin directories (not on a user's PATH) and does not reinstall them", () => {
  const m = freshMachine();
  try {
    const sbin = join(m.dir, 'sbin');
    spawnSync('mkdir', ['-p', sbin]);
    for (const c of ['thin_restore', 'openssl']) {
      writeFileSync(join(sbin, c), '#!/bin/sh\n');
      chmodSync(join(sbin, c), 0o755);
    }
    const r = m.run(['--dry-run'], { THINSHIP_SETUP_SBIN: sbin });
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes('setup: would install: make g++ python3\n'), r.out);
  } finally {
    rmSync(m.dir, { recursive: true, force: true });
  }
});

test('setup as a user goes through sudo; without sudo it says root is needed', () => {
  const withSudo = freshMachine({ uid: 1000, sudo: true });
  try {
    const r = withSudo.run([]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(withSudo.calls(), [
      'sudo apt-get update -qq',
      'apt-get update -qq',
      `sudo env DEBIAN_FRONTEND=noninteractive ${installLine(RUNTIME)}`,
      installLine(RUNTIME),
    ]);
  } finally {
    rmSync(withSudo.dir, { recursive: true, force: true });
  }
  const noSudo = freshMachine({ uid: 1000 });
  try {
    const r = noSudo.run([]);
    assert.equal(r.code, 1);
    assert.match(r.err, /setup: installing thin-provisioning-tools openssl make g\+\+ python3 needs root: run this as root, or install sudo/);
    assert.deepEqual(noSudo.calls(), []);
  } finally {
    rmSync(noSudo.dir, { recursive: true, force: true });
  }
});

test('setup checks Node.js: too old or missing is a clear error, and nothing is installed', () => {
  const m = freshMachine();
  try {
    const fake = join(m.dir, 'node18.cjs');
    writeFileSync(fake, "Object.defineProperty(process, 'versions', { value: { ...process.versions, node: '18.19.0' } });\n");
    const old = m.run([], { NODE_OPTIONS: `--require ${fake}` });
    assert.equal(old.code, 1);
    assert.match(old.err, /setup: Node\.js 18\.19\.0 is too old: thinship needs >=20\.5 \(package\.json engines; check with: node --version\)/);
    assert.match(old.err, /nodejs\.org/);
    assert.deepEqual(m.calls(), []);
  } finally {
    rmSync(m.dir, { recursive: true, force: true });
  }
  const none = freshMachine({ node: false });
  try {
    const r = none.run([]);
    assert.equal(r.code, 1);
    assert.match(r.err, /setup: Node\.js is not installed \(no 'node' on PATH\): install Node\.js 20 or newer/);
    assert.deepEqual(none.calls(), []);
  } finally {
    rmSync(none.dir, { recursive: true, force: true });
  }
});

test('setup: an unknown option is a usage error', () => {
  const m = freshMachine();
  try {
    const r = m.run(['--bogus']);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown option '--bogus'/);
  } finally {
    rmSync(m.dir, { recursive: true, force: true });
  }
});
