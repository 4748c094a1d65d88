#!/usr/bin/env node
/**
 * The thinship command line. Parses flags (commander), runs a command, and maps
 * every error to a message on stderr and an exit code (cli/exit-codes.ts).
 */
import { Command, CommanderError } from 'commander';
import { asThinshipError } from '../errors.js';
import { exitCodeOf } from './exit-codes.js';
import { planCommand } from './commands/plan.js';
import { sendPipeCommand } from './commands/send.js';
import { recvPipeCommand } from './commands/recv.js';
import { demoCommand } from './commands/demo.js';

const program = new Command();
program
  .name('thinship')
  .description('zfs send | zfs recv for LVM thin volumes')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

const offlineOptions = (c: Command) => c
  .option('--pool-metadata <file>', 'offline pool: its metadata file or inactive device (volumes are then named by thin device id)')
  .option('--pool-data <file>', 'offline pool: its data file or device')
  .option('--volume-size <bytes>', 'offline pool: the volume size (metadata does not record it; default: end of the last mapping)')
  .option('--allow-live', 'allow a live writable LV as the source (its content may change while read)');

offlineOptions(program.command('plan')
  .description('exact dry run: what a send of SNAP (or of BASE..SNAP) would send and unmap')
  .argument('<names...>', '[BASE] SNAP: LVM names (vg/lv, /dev/vg/lv), or device ids with --pool-metadata')
  .option('--json', 'print the totals and every operation as JSON')
  .option('--max-op-bytes <bytes>', 'split operations larger than this (default 1M)'))
  .action(async (names: string[], flags) => { await planCommand(names, flags); });

offlineOptions(program.command('send')
  .description('send SNAP (full) or BASE..SNAP (incremental); pipe mode writes a LINBIT thin_send stream to stdout')
  .argument('<names...>', '[BASE] SNAP: LVM names (vg/lv, /dev/vg/lv), or device ids with --pool-metadata')
  .option('--format <version>', 'LINBIT stream format: 1.1 (default) or 1.0', '1.1')
  .option('--no-extensions', "plain LINBIT stream: no begin-info, checksum or digest records (thinship's receiver then checks less)")
  .option('--max-op-bytes <bytes>', 'largest DATA record (default 1M)')
  .option('-q, --quiet', 'no summary on stderr'))
  .action(async (names: string[], flags) => { await sendPipeCommand(names, flags); });

program.command('recv')
  .description('apply a stream from stdin (LINBIT thin_send format 1.0 or 1.1) to TARGET')
  .argument('<target>', 'an LVM thin LV (vg/lv), or a file or block-device path (a missing file is created sparse at the volume size)')
  .option('-q, --quiet', 'no summary on stderr')
  .action(async (target: string, flags) => { await recvPipeCommand(target, flags); });

program.command('demo')
  .description('the built-in default: build a small offline thin pool, then plan, send and receive full and incremental, and verify')
  .option('--dir <dir>', 'where to build the demo pool and target (default: a new temporary directory, removed afterwards)')
  .action(async (flags) => { await demoCommand(flags); });

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    const err = asThinshipError(e);
    process.stderr.write(`thinship: ${err.message}\n`);
    if (process.env.THINSHIP_LOG === 'debug' && err.stack) process.stderr.write(err.stack + '\n');
    process.exitCode = exitCodeOf(err);
  }
}

await main();
