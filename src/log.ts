/**
 * Structured logging (pino) to stderr, so stdout stays free for pipe-mode streams
 * and `--json` output. The level is "error" until the CLI sets it from
 * THINSHIP_LOG (configureLogLevel): this module reads no environment itself.
 * "debug" shows every external command's argv, exit code and duration.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * What a library tells the person running the command, as one line (a stale
 * reservation released, a cleanup that failed and how to do it by hand). The
 * CLI prints these on stderr; by default they go to the log at "warn".
 */
export type Warn = (message: string) => void;

/**
 * Level names and ISO-8601 times (not pino's numbers and epoch ms): what an operator reads and
 * what journald/Loki/Elasticsearch parse without a mapping. Every logger of thinship uses these.
 */
export const LOG_FORMAT = { formatters: { level: (label: string) => ({ level: label }) }, timestamp: pino.stdTimeFunctions.isoTime } as const;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const log: Logger = pino({ level: 'error', base: { pid: process.pid }, ...LOG_FORMAT }, pino.destination({ dest: 2, sync: true }));

/**
 * Sets the level of `log` from a THINSHIP_LOG value (undefined or empty:
 * leave it). Returns the problem when the value is not a level, and leaves the
 * level as it was; the CLI reports that as a usage error.
 */
export function configureLogLevel(asked: string | undefined): string | undefined {
  if (asked === undefined || asked === '') return undefined;
  if (!(LOG_LEVELS as readonly string[]).includes(asked)) return `THINSHIP_LOG="${asked}" is not a log level (use one of: ${LOG_LEVELS.join(', ')})`;
  log.level = asked;
  return undefined;
}

/**
 * A debug line naming a phase of a command and when it was reached, in ms
 * since the process started: `THINSHIP_LOG=debug` shows where start-up time goes.
 */
export function logPhase(phase: string, fields: Record<string, unknown> = {}): void {
  if (log.isLevelEnabled('debug')) log.debug({ phase, sinceStartMs: Math.round(performance.now()), ...fields }, 'phase');
}
