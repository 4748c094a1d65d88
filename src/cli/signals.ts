/**
 * The one place where process signals become an AbortSignal. Libraries take a
 * `signal` and never install process handlers; a command that must clean up
 * on SIGINT/SIGTERM (stop a thin tool and release the pool's metadata
 * snapshot, checkpoint a gRPC transfer) runs its work in `withStopSignals`.
 * The abort reason is an InterruptedError, which exit-codes.ts turns into the
 * status a shell expects: 128 + the signal number (130 SIGINT, 143 SIGTERM).
 */
import { ThinshipError, isAbortOf } from '../errors.js';

const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;
export type StopSignal = keyof typeof SIGNAL_NUMBERS;

/** Work cut short by a signal; `details.exitCode` is 128 + the signal number. */
export class InterruptedError extends ThinshipError {
  readonly signalName: StopSignal;
  constructor(sig: StopSignal, message = `interrupted by ${sig}`, opts: { details?: Record<string, unknown>; cause?: unknown } = {}) {
    super('ABORTED', message, { details: { ...opts.details, signal: sig, exitCode: 128 + SIGNAL_NUMBERS[sig] }, cause: opts.cause });
    this.signalName = sig;
  }
}

export interface StopSignalOptions {
  /** Default SIGINT, SIGTERM, SIGHUP. */
  signals?: readonly StopSignal[];
  /**
   * What a second signal does while the work unwinds: 'wait' (default) waits
   * for the same cleanup (a reservation must be released); 'kill' lets a
   * second signal of the same kind end the process at once.
   */
  repeat?: 'wait' | 'kill';
}

/**
 * Runs `fn` with an AbortSignal that a stop signal aborts (reason: an
 * InterruptedError). While `fn` runs those signals do not kill the process:
 * `fn` unwinds and this throws the InterruptedError. A failure of `fn` after
 * the signal (the tool it ran was cancelled) becomes the InterruptedError too,
 * with that failure as its cause, unless it was made from the InterruptedError
 * (errors.ts abortError: it then says more about what was cleaned up).
 */
export async function withStopSignals<T>(fn: (signal: AbortSignal) => Promise<T>, opts: StopSignalOptions = {}): Promise<T> {
  const signals = opts.signals ?? ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) return; // a later signal waits for the same cleanup
    ac.abort(new InterruptedError(sig as StopSignal));
  };
  for (const s of signals) {
    if (opts.repeat === 'kill') process.once(s, onSignal);
    else process.on(s, onSignal);
  }
  try {
    return await fn(ac.signal);
  } catch (e) {
    if (!ac.signal.aborted) throw e;
    if (isAbortOf(e, ac.signal)) throw e;
    const reason = ac.signal.reason as InterruptedError;
    throw new InterruptedError(reason.signalName, reason.message, { cause: e });
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
}

export interface DaemonHooks<D> {
  /** SIGUSR2: a debug dump. */
  debugDump?: (daemon: D) => void;
  /** SIGHUP: reload the config. A failure is logged at error and the daemon goes on with what it had. */
  reload?: (daemon: D) => Promise<void>;
}

/**
 * Runs a daemon (serve, sender-serve) until SIGTERM or SIGINT, then closes it
 * (running transfers checkpoint). The handlers go in before it starts: a
 * signal that arrives just after it logs "listening" must not find the
 * default (fatal) action. SIGHUP calls `hooks.reload` (a SIGHUP before the
 * daemon is up is logged and ignored: it reads the config as it starts);
 * SIGUSR2 calls `hooks.debugDump`.
 */
export async function runDaemon<D extends { close(): Promise<void> }>(
  name: string,
  log: { info(o: object, msg: string): void; warn(o: object, msg: string): void; error(o: object, msg: string): void },
  start: () => Promise<D>,
  hooks: DaemonHooks<D> = {},
): Promise<void> {
  let stopSignal: NodeJS.Signals | undefined;
  let requestStop: (signal: NodeJS.Signals) => void = (signal) => {
    stopSignal ??= signal;
  };
  let daemon: D | undefined;
  let stopping = false;
  const onStop = (signal: NodeJS.Signals) => requestStop(signal);
  const onHup = () => {
    if (!daemon || stopping) {
      log.warn({ signal: 'SIGHUP' }, `SIGHUP ignored: ${name} is ${stopping ? 'stopping' : 'starting (it reads the config as it starts)'}`);
      return;
    }
    if (!hooks.reload) {
      log.warn({ signal: 'SIGHUP' }, `SIGHUP ignored: restart ${name} to apply config changes`);
      return;
    }
    log.info({ signal: 'SIGHUP' }, 'reloading the config');
    hooks
      .reload(daemon)
      .catch((e: unknown) => log.error({ signal: 'SIGHUP', err: (e as Error).message }, `config reload failed: ${name} goes on with the config it had`));
  };
  const onUsr2 = () => {
    if (daemon && hooks.debugDump) hooks.debugDump(daemon);
  };
  process.once('SIGTERM', onStop);
  process.once('SIGINT', onStop);
  process.on('SIGHUP', onHup);
  process.on('SIGUSR2', onUsr2);
  try {
    const d = (daemon = await start());
    await new Promise<void>((done) => {
      requestStop = (signal) => {
        stopping = true;
        log.info({ signal }, 'stopping');
        d.close().then(done, (e: unknown) => {
          log.error({ err: (e as Error).message }, 'error while stopping');
          done();
        });
      };
      if (stopSignal) requestStop(stopSignal);
    });
  } finally {
    process.off('SIGHUP', onHup);
    process.off('SIGUSR2', onUsr2);
  }
}
