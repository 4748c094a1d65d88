/**
 * Checks that the tests named in docs/testing.md catch the mutations they were
 * written for: each mutation is applied to src/, the project rebuilt, the
 * test files run (they must FAIL), and the source restored (also after
 * a run killed mid-row: the next run restores it first). Then the clean build is restored and the same files must pass.
 *
 *   node scripts/row-mutants.mjs            # every row
 *   node scripts/row-mutants.mjs isInside   # rows whose name contains "isInside"
 *
 * Not part of `npm test` (each row rebuilds: ~10-20 s plus its tests).
 */
import { readFileSync, writeFileSync, existsSync, unlinkSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const rows = JSON.parse(readFileSync(new URL('./row-mutants.json', import.meta.url), 'utf8'));
const only = process.argv[2];

function build() {
  const r = spawnSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('build failed');
}

function runTests(files, grep) {
  const args = ['--test', '--test-concurrency=1', ...(grep ? ['--test-name-pattern', grep] : []), ...files];
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, timeout: 600_000, killSignal: 'SIGKILL' });
  const out = r.stdout + r.stderr;
  const failed = /^# fail (\d+)/m.exec(out);
  const passed = /^# pass (\d+)/m.exec(out);
  return { status: r.status, fail: failed ? Number(failed[1]) : -1, pass: passed ? Number(passed[1]) : -1, out };
}

// spawnSync blocks signal handlers: a run killed mid-row leaves its backup, restored by the next run.
const backup = `${root}/.row-mutant-backup.json`;
if (existsSync(backup)) {
  const b = JSON.parse(readFileSync(backup, 'utf8'));
  writeFileSync(b.path, b.text);
  unlinkSync(backup);
  console.log(`restored ${b.path} left mutated by an interrupted run`);
}
let restore;

const results = [];
for (const row of rows) {
  if (only && !row.name.includes(only)) continue;
  const path = `${root}/${row.file}`;
  const orig = readFileSync(path, 'utf8');
  let mutated = orig;
  const bad = [];
  for (const e of row.edits) {
    const n = mutated.split(e.from).length - 1;
    if (n !== 1) bad.push(`"${e.from.slice(0, 40)}" occurs ${n} times`);
    else mutated = mutated.replace(e.from, e.to);
  }
  if (bad.length > 0) {
    results.push({ name: row.name, verdict: `NOT APPLIED (${row.file}: ${bad.join('; ')})` });
    continue;
  }
  writeFileSync(backup, JSON.stringify({ path, text: orig }));
  restore = () => {
    writeFileSync(path, orig);
    unlinkSync(backup);
  };
  try {
    writeFileSync(path, mutated);
    build();
    const t = runTests(row.tests, row.grep);
    results.push({ name: row.name, verdict: t.fail > 0 ? `caught (${t.fail} failing)` : `SURVIVED (pass ${t.pass}, fail ${t.fail}, exit ${t.status})` });
    if (t.fail <= 0) process.stderr.write(t.out.slice(-3000));
  } finally {
    restore();
    restore = undefined;
  }
}
build();
const files = [...new Set(rows.filter((r) => !only || r.name.includes(only)).flatMap((r) => r.tests))];
const clean = runTests(files);
for (const r of results) console.log(`${r.verdict.padEnd(28)} ${r.name}`);
console.log(`without mutations: pass ${clean.pass}, fail ${clean.fail} (${files.join(' ')})`);
if (clean.fail !== 0 || results.some((r) => !r.verdict.startsWith('caught'))) process.exitCode = 1;
