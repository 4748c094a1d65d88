/**
 * Structured logging (pino) to stderr, so stdout stays free for pipe-mode streams
 * and `--json` output. Level from THINSHIP_LOG (default "error"; "debug" shows
 * every external command's argv, exit code and duration).
 */
import { pino } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const asked = process.env.THINSHIP_LOG;
const known = asked === undefined || asked === '' || (LOG_LEVELS as readonly string[]).includes(asked);

/**
 * A THINSHIP_LOG that is not a level: this module is loaded at import, where a
 * throw would be a stack trace, so it logs at "error" and the CLI reports this
 * as a usage error before it runs a command.
 */
export function logLevelProblem(): string | undefined {
  return known ? undefined : `THINSHIP_LOG="${asked}" is not a log level (use one of: ${LOG_LEVELS.join(', ')})`;
}

/**
 * Level names and ISO-8601 times (not pino's numbers and epoch ms): what an operator reads and
 * what journald/Loki/Elasticsearch parse without a mapping. Every logger of thinship uses these.
 */
export const LOG_FORMAT = { formatters: { level: (label: string) => ({ level: label }) }, timestamp: pino.stdTimeFunctions.isoTime } as const;

export const log = pino(
  { level: known && asked ? asked : 'error', base: { pid: process.pid }, ...LOG_FORMAT },
  pino.destination({ dest: 2, sync: true }),
);

/**
 * A debug line naming a phase of a command and when it was reached, in ms
 * since the process started: `THINSHIP_LOG=debug` shows where start-up time goes.
 */
export function logPhase(phase: string, fields: Record<string, unknown> = {}): void {
  if (log.isLevelEnabled('debug')) log.debug({ phase, sinceStartMs: Math.round(performance.now()), ...fields }, 'phase');
}
