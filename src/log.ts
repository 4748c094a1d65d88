/**
 * Structured logging (pino) to stderr, so stdout stays free for pipe-mode streams
 * and `--json` output. Level from THINSHIP_LOG (default "error"; "debug" shows
 * every external command's argv, exit code and duration).
 */
import { pino } from 'pino';

export const log = pino(
  { level: process.env.THINSHIP_LOG ?? 'error', base: { pid: process.pid } },
  pino.destination({ dest: 2, sync: true }),
);
