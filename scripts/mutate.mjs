/**
 * npm run mutate [module...]: StrykerJS on each module of stryker.config.mjs
 * in turn (default: all), after a build; prints the score per module from
 * the JSON reports (reports/mutation/<module>.json), and each surviving mutant
 * (file:line:column, mutator, replacement).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { modules } from '../stryker.config.mjs';

const names = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(modules);
const rows = [];
for (const name of names) {
  if (!modules[name]) throw new Error(`unknown module ${name}: ${Object.keys(modules).join(', ')}`);
  const t0 = Date.now();
  const r = spawnSync('npx', ['stryker', 'run'], { stdio: 'inherit', env: { ...process.env, STRYKER_MODULE: name } });
  const minutes = ((Date.now() - t0) / 60000).toFixed(1);
  // STRYKER_MUTATE (a few lines again) writes its own report: stryker.config.mjs
  const report = `reports/mutation/${name}${process.env.STRYKER_MUTATE ? '-lines' : ''}.json`;
  if (r.status !== 0 || !existsSync(report)) {
    rows.push(`${name}: stryker failed (exit ${r.status})`);
    continue;
  }
  const files = JSON.parse(readFileSync(report, 'utf8')).files;
  const count = {};
  const survivors = [];
  for (const [file, f] of Object.entries(files)) {
    for (const m of f.mutants) {
      count[m.status] = (count[m.status] ?? 0) + 1;
      const at = m.location.start;
      if (m.status === 'Survived' || m.status === 'NoCoverage') survivors.push(`  ${file}:${at.line}:${at.column} ${m.mutatorName} -> ${m.replacement}`);
    }
  }
  const detected = (count.Killed ?? 0) + (count.Timeout ?? 0);
  const valid = detected + (count.Survived ?? 0) + (count.NoCoverage ?? 0);
  rows.push(
    `${name}: ${((100 * detected) / valid).toFixed(1)} % detected (${count.Killed ?? 0} killed, ${count.Timeout ?? 0} timeout, ${count.Survived ?? 0} survived, ${count.NoCoverage ?? 0} no coverage) in ${minutes} min`,
    ...survivors,
  );
}
console.log(rows.join('\n'));
