#!/usr/bin/env node
/**
 * The thinship command line. Parses flags (commander), runs a command, and maps
 * every error to a message on stderr and an exit code (cli/exit-codes.ts).
 */
import { Command, CommanderError } from 'commander';
import { ThinshipError, asThinshipError } from '../errors.js';
import { exitCodeOf } from './exit-codes.js';
import { configureLogLevel, logPhase } from '../log.js';
// Commands are imported when they run: a start loads only what it needs (gRPC,
// zstd, the XML parser...), which matters for scripts calling thinship often and
// for the VM tier, where each module costs ~10x more under emulation.
const planCommand: typeof import('./commands/plan.js').planCommand = async (...a) => (await import('./commands/plan.js')).planCommand(...a);
const sendPipeCommand: typeof import('./commands/send.js').sendPipeCommand = async (...a) => (await import('./commands/send.js')).sendPipeCommand(...a);
const recvPipeCommand: typeof import('./commands/recv.js').recvPipeCommand = async (...a) => (await import('./commands/recv.js')).recvPipeCommand(...a);
const demoCommand: typeof import('./commands/demo.js').demoCommand = async (...a) => (await import('./commands/demo.js')).demoCommand(...a);
const serveCommand: typeof import('./commands/serve.js').serveCommand = async (...a) => (await import('./commands/serve.js')).serveCommand(...a);
const senderServeCommand: typeof import('./commands/sender-serve.js').senderServeCommand = async (...a) =>
  (await import('./commands/sender-serve.js')).senderServeCommand(...a);
const sendGrpcCommand: typeof import('./commands/send-grpc.js').sendGrpcCommand = async (...a) =>
  (await import('./commands/send-grpc.js')).sendGrpcCommand(...a);
const transferCommand: typeof import('./commands/send-grpc.js').transferCommand = async (...a) =>
  (await import('./commands/send-grpc.js')).transferCommand(...a);
const sendViaCommand: typeof import('./commands/send-via.js').sendViaCommand = async (...a) => (await import('./commands/send-via.js')).sendViaCommand(...a);
const viaTransferCommand: typeof import('./commands/send-via.js').viaTransferCommand = async (...a) =>
  (await import('./commands/send-via.js')).viaTransferCommand(...a);
const certsCommand: typeof import('./commands/certs.js').certsCommand = async (...a) => (await import('./commands/certs.js')).certsCommand(...a);

const program = new Command();
program
  .name('thinship')
  .description('zfs send | zfs recv for LVM thin volumes')
  .version('0.1.0')
  // A usage error is one line and a hint, not the whole help (set before the
  // commands are added: they inherit it). Exit 2 comes from main() below.
  .configureOutput({ outputError: (str, write) => write(`thinship: ${str}`) })
  .exitOverride();

const offlineOptions = (c: Command) =>
  c
    .option('--pool-metadata <file>', 'offline pool: its metadata file or inactive device (volumes are then named by thin device id)')
    .option('--pool-data <file>', 'offline pool: its data file or device')
    .option('--volume-size <bytes>', 'offline pool: the volume size (metadata does not record it; default: end of the last mapping)')
    .option('--allow-live', 'allow a live writable LV as the source (its content may change while read)');

const collect = (v: string, prev: string[] = []) => [...prev, v];

const tlsOptions = (c: Command) =>
  c
    .option('--tls-dir <dir>', 'mTLS files from `thinship certs`: DIR/ca.crt, DIR/client.crt, DIR/client.key')
    .option('--ca <file>', "CA bundle that signed the server's certificate (the receiver, or with --via the sender daemon) (PEM)")
    .option('--cert <file>', "this client's certificate (PEM); its CN or SAN is the identity the server checks")
    .option('--key <file>', "this client's private key (PEM)")
    .option('--server-name <name>', "name to verify the server's certificate against (default: HOST of --to, or of --via)")
    .option('--insecure', 'plaintext, no authentication: only to a loopback address')
    .option('--allow-insecure-remote', 'allow --insecure to a non-loopback address');

offlineOptions(
  program
    .command('plan')
    .description('exact dry run: what a send of SNAP (or of BASE..SNAP) would send and unmap')
    .argument('<names...>', '[BASE] SNAP: LVM names (vg/lv, /dev/vg/lv), or device ids with --pool-metadata')
    .option('--json', 'print the totals and every operation as JSON')
    .option('--max-op-bytes <bytes>', 'split operations larger than this (default 1M)')
    .option(
      '--metadata-reader <reader>',
      'auto (default: native when it knows the metadata format, else thin tools), native, or thin-tools (thin_dump/thin_delta)',
    ),
).action(async (names: string[], flags: Parameters<typeof planCommand>[1]) => {
  await planCommand(names, flags);
});

offlineOptions(
  program
    .command('send')
    .description(
      'send SNAP (full) or BASE..SNAP (incremental): over gRPC with --to HOST:PORT --target NAME (mTLS), else a LINBIT thin_send stream on stdout (pipe mode)',
    )
    .argument('<names...>', '[BASE] SNAP: LVM names (vg/lv, /dev/vg/lv), or device ids with --pool-metadata')
    .option('--format <version>', 'LINBIT stream format: 1.1 (default) or 1.0', '1.1')
    .option('--no-extensions', "plain LINBIT stream: no begin-info, checksum or digest records (thinship's receiver then checks less)")
    .option('--checksum <algorithm>', 'per-record checksum: blake3 (default; --to and --via fall back to sha256 for a receiver older than blake3) or sha256')
    .option('--max-op-bytes <bytes>', 'largest DATA record (default 1M)')
    .option(
      '--metadata-reader <reader>',
      'auto (default: native when it knows the metadata format, else thin tools), native, or thin-tools (thin_dump/thin_delta)',
    )
    .option('-q, --quiet', 'no summary')
    .option('--progress <mode>', 'auto (a line when stderr is a terminal), tty, json (a JSON line a second on stderr), none', 'auto')
    .option('--bwlimit <rate>', 'at most this many bytes per second on the wire (e.g. 50M, 1G; K/M/G are powers of 1024)')
    .option('--to <host:port>', 'send over gRPC to a `thinship serve` receiver instead of stdout')
    .option('--target <name>', 'with --to: the target on the receiver (vg/lv, or an absolute path its config allows)')
    .option('--transfer-id <id>', 'with --to: the transfer id (default: derived from target and snapshots, so a re-run resumes)')
    .option(
      '--compress <mode>',
      'with --to: zstd (default: every chunk), auto (zstd while the link is slower than the compressor, raw when not) or none (RAW and ZERO chunks only)',
    )
    .option('--no-compress', 'with --to: the same as --compress none')
    .option('--zstd-level <n>', 'with --to: zstd level, 1 (default, fastest) to 19')
    .option('--workers <n>', 'with --to: threads that checksum and compress (default: one per core, at most 8)')
    .option('--retries <n>', 'with --to: resume attempts after a broken connection (default 9)')
    .option('--json', 'with --to: print the summary as JSON on stdout')
    .option(
      '--force',
      'with --to: the receiver applies over a target written since its last received snapshot, or an incremental onto a target without a record (zfs recv -F)',
    )
    .option('--grow', 'with --to: the receiver extends a file target smaller than the volume (else refused, exit 11)')
    .option(
      '--via <host:port>',
      'a running sender daemon (`thinship sender serve`) sends to --to --target instead of this process; the TLS options are then towards the daemon; SIGINT/SIGTERM cancel the transfer',
    )
    .option('--request-id <id>', 'with --via: the StartTransfer request id (default: a new one); the same id attaches to the transfer it started')
    .option('--receiver-server-name <name>', "with --via: the name the daemon verifies the receiver's certificate against (default: HOST of --to)"),
).action(
  async (names: string[], flags: Parameters<typeof sendGrpcCommand>[1] & Parameters<typeof sendPipeCommand>[1] & Parameters<typeof sendViaCommand>[1]) => {
    if (flags.via !== undefined) {
      if (flags.format !== '1.1' || flags.extensions === false)
        throw new ThinshipError('USAGE', '--format and --no-extensions are for pipe mode, not for --via');
      await sendViaCommand(names, flags);
    } else if (flags.requestId !== undefined || flags.receiverServerName !== undefined)
      throw new ThinshipError('USAGE', '--request-id and --receiver-server-name need --via HOST:PORT');
    else if (flags.to !== undefined) {
      if (flags.format !== '1.1' || flags.extensions === false)
        throw new ThinshipError('USAGE', '--format and --no-extensions are for pipe mode, not for --to');
      await sendGrpcCommand(names, flags);
    } else if (flags.target !== undefined || flags.transferId !== undefined) throw new ThinshipError('USAGE', '--target and --transfer-id need --to HOST:PORT');
    else if (flags.force === true || flags.grow === true)
      throw new ThinshipError('USAGE', '--force and --grow need --to HOST:PORT (in pipe mode they are options of recv)');
    else if (typeof flags.compress === 'string' || flags.zstdLevel !== undefined || flags.workers !== undefined)
      throw new ThinshipError('USAGE', '--compress, --zstd-level and --workers need --to HOST:PORT (in pipe mode, put zstd in the pipeline)');
    else await sendPipeCommand(names, flags);
  },
);
tlsOptions(program.commands.find((c) => c.name() === 'send')!);

program
  .command('recv')
  .description('apply a stream from stdin (LINBIT thin_send format 1.0 or 1.1) to TARGET')
  .argument('<target>', 'an LVM thin LV (vg/lv, or its /dev/vg/lv path), or a file or block-device path (a missing file is created sparse at the volume size)')
  .option('-q, --quiet', 'no summary on stderr')
  .option('--progress <mode>', 'auto (a line when stderr is a terminal), tty, json (a JSON line a second on stderr), none', 'auto')
  .option('--force', 'apply over a target written since its last received snapshot, or an incremental onto a target without a record (like zfs recv -F)')
  .option('--grow', "extend a file target smaller than the stream's volume (else refused, exit 11; a block device cannot be grown)")
  .option('--keep-snapshots <n>', 'LVM targets: received snapshots kept after each commit (default 2)')
  .option('--pool <pool>', 'LVM targets: a full stream to a missing vg/lv creates it as a thin LV in vg/POOL')
  .option('--state-dir <dir>', "block-device targets: their records and undo journals; LVM targets: commit journals (default /var/lib/thinship, as serve's)")
  .action(async (target: string, flags: Parameters<typeof recvPipeCommand>[1]) => {
    await recvPipeCommand(target, flags);
  });

tlsOptions(
  program
    .command('target')
    .description('what a target holds, as the receiver recorded it: snapshot, digest, time, divergence, staged applies (LVM: also kept snapshots)')
    .argument('<action>', 'show')
    .argument('<target>', 'the target file, block device or LVM thin LV (vg/lv) (with --to: as named to the receiver)')
    .option('--json', 'as JSON on stdout')
    .option(
      '--state-dir <dir>',
      "block devices: the receiver's state directory holding their records; LVM: where recv keeps commit journals (default /var/lib/thinship)",
    )
    .option('--to <host:port>', "ask a `thinship serve` receiver (GetTarget; the identity's access rules apply) instead of this host"),
).action(async (action: string, target: string, flags: import('./commands/target.js').TargetShowFlags) => {
  await (await import('./commands/target.js')).targetCommand(action, target, flags);
});

program
  .command('serve')
  .description('the gRPC receiver: apply streams from senders over mTLS to the targets each client identity may write')
  .requiredOption('--listen <host:port>', 'address to listen on (port 0: any free port, logged)')
  .requiredOption('--config <file>', 'receiver config (JSON): tls files, stateDir, identities and their allowed targets (reloaded on SIGHUP)')
  .option('--state-dir <dir>', "override the config's stateDir (checkpoints of transfers)")
  .option('--metrics-listen <host:port>', 'plain HTTP /metrics (Prometheus), /healthz and /readyz on this address (config: metricsListen)')
  .option('--insecure', 'plaintext, every client "anonymous": only on a loopback address')
  .option('--allow-insecure-remote', 'allow --insecure on a non-loopback address')
  .option('--receive-window <bytes>', "HTTP/2 receive window of each stream (default 32M, or the config's receiveWindowBytes)")
  .option('--connection-window <bytes>', "HTTP/2 receive window of each connection (default: the stream window, or the config's connectionWindowBytes)")
  .action(async (flags: Parameters<typeof serveCommand>[0]) => {
    await serveCommand(flags);
  });

// The sender daemon: `thinship sender serve` (the issue's spelling, a command group with room
// for more) and `thinship sender-serve` (the first spelling, kept working: unit files use it).
const senderServeOptions = (c: Command) =>
  c
    .description('the sender daemon: other services plan, start, watch and cancel sends from this host over gRPC (proto/thinship/sender/v1/sender.proto)')
    .requiredOption('--listen <host:port>', 'address to listen on (port 0: any free port, logged)')
    .requiredOption(
      '--config <file>',
      'sender config (JSON): tls (callers), receiverTls (the daemon towards receivers), identities and what each may send where',
    )
    .option('--metrics-listen <host:port>', 'plain HTTP /metrics (Prometheus), /healthz and /readyz on this address (config: metricsListen)')
    .option('--insecure', 'plaintext towards callers, every caller "anonymous": only on a loopback address')
    .option('--allow-insecure-remote', 'allow --insecure on a non-loopback address')
    .option('--insecure-receivers', 'plaintext towards receivers (a test on loopback)')
    .action(async (flags: Parameters<typeof senderServeCommand>[0]) => {
      await senderServeCommand(flags);
    });
senderServeOptions(program.command('sender').description('the sender daemon: `thinship sender serve`').command('serve'));
senderServeOptions(program.command('sender-serve'));

tlsOptions(
  program
    .command('transfer')
    .description(
      "this identity's transfers on a receiver (--to: list, status, abort = forget it and free its target) or on a sender daemon (--via: list, status, cancel = stop it and release everything it holds)",
    )
    .argument('<action>', 'list | status | abort (--to) | cancel (--via)')
    .argument('[transfer-id]', 'the transfer id (thinship send prints it); not for list')
    .option('--to <host:port>', 'the receiver')
    .option('--via <host:port>', 'the sender daemon')
    .option('--json', 'list, status (and cancel with --via): JSON instead of a table')
    .option('--reason <text>', 'abort, cancel: why, for the logs'),
).action(async (action: string, id: string | undefined, flags: Parameters<typeof transferCommand>[2] & Parameters<typeof viaTransferCommand>[2]) => {
  if ((flags.to === undefined) === (flags.via === undefined)) throw new ThinshipError('USAGE', 'transfer needs either --to RECEIVER:PORT or --via SENDER:PORT');
  if (flags.via !== undefined) await viaTransferCommand(action, id, flags);
  else await transferCommand(action, id, flags);
});

program
  .command('certs')
  .description(
    'make a CA, a server certificate and client certificates (openssl) for a first setup or a test; --add-client: one more client from the CA in --out',
  )
  .requiredOption('--out <dir>', 'directory for the files (existing ones are refused unless --force)')
  .option('--server-name <name>', 'DNS name or IP address of the receiver (repeatable; default: localhost, 127.0.0.1, ::1, this host)', collect)
  .option(
    '--client <name>',
    'client identity (repeatable; default: thinship-sender); the first is written to client.crt/.key, with --add-client each to NAME.crt/.key',
    collect,
  )
  .option('--add-client', 'add client certificates (--client NAME) signed by the CA already in --out (its ca.crt and ca.key)')
  .option('--force', 'overwrite existing files (without --add-client: a new CA, so certificates from the old one stop working)')
  .option('--days <n>', 'validity of the server and client certificates (default 825)')
  .action(async (flags: Parameters<typeof certsCommand>[0]) => {
    await certsCommand(flags);
  });

program
  .command('demo')
  .description(
    'the built-in default: build a small offline thin pool, start a gRPC receiver on loopback with fresh certificates, send full then incremental over mTLS, and verify',
  )
  .option('--dir <dir>', 'where to build the demo pool and target (default: a new temporary directory, removed afterwards)')
  .action(async (flags: Parameters<typeof demoCommand>[0]) => {
    await demoCommand(flags);
  });

const usageHint = (command?: string) => `(run 'thinship ${command ? `${command} ` : ''}--help' for usage)`;
program.showHelpAfterError(usageHint());
const hintAll = (parent: Command, path: string): void => {
  for (const c of parent.commands) {
    const name = path ? `${path} ${c.name()}` : c.name();
    c.showHelpAfterError(usageHint(name));
    hintAll(c, name);
  }
};
hintAll(program, '');

/** The command named on the command line, if any (for the usage hint of our own USAGE errors). */
function commandOf(argv: string[]): string | undefined {
  const name = argv[2];
  return program.commands.some((c) => c.name() === name) ? name : undefined;
}

async function main(): Promise<void> {
  // The environment is read here, at the edge: libraries take what it says as arguments.
  const badLevel = configureLogLevel(process.env.THINSHIP_LOG);
  try {
    if (badLevel !== undefined) throw new ThinshipError('USAGE', badLevel);
    await program.parseAsync(process.argv);
    logPhase('command finished');
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    const err = asThinshipError(e);
    process.stderr.write(`thinship: ${err.message}\n`);
    if (err.code === 'USAGE' && badLevel === undefined) process.stderr.write(usageHint(commandOf(process.argv)) + '\n');
    if (process.env.THINSHIP_LOG === 'debug' && err.stack) process.stderr.write(err.stack + '\n');
    process.exitCode = exitCodeOf(err);
  }
}

await main();
