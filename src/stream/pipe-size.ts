/**
 * Pipe mode's pipes. Linux gives a pipe 64 KiB; a 1 MiB DATA record then
 * crosses it in 16 pieces, each a write that blocks (stdout to a pipe is
 * synchronous in Node) and a wake-up of the reader. Widened to 1 MiB (the
 * default /proc/sys/fs/pipe-max-size, allowed to any user) a record passes
 * in one. Both ends widen the pipe they hold, so `send | recv`, `send | ssh`
 * and `ssh | recv` all gain; widening never changes a byte of the stream.
 */
import { nativeDevice } from '../device/native.js';

export const PIPE_BYTES = 1024 * 1024;

/**
 * Widens the pipe at `fd` to PIPE_BYTES: its size afterwards, or -1 when fd
 * is not a pipe (a file, a terminal, a socket), the kernel refused, or the
 * addon is missing. Never throws: a narrow pipe is only slower.
 */
export function widenPipe(fd: number, bytes = PIPE_BYTES): number {
  try {
    return nativeDevice().setPipeSize(fd, bytes);
  } catch {
    return -1;
  }
}
