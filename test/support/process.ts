// Process states from /proc, for tests that stop a helper at a step.

import { readFileSync } from 'node:fs';

/** The state letter of /proc/PID/stat (R, S, T, Z, ...), or undefined when there is no such process. */
export function processState(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: the state follows the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

/** Waits (bounded) until `pid` is stopped (state T); throws if it exits or the time runs out. */
export async function waitStopped(pid: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const state = processState(pid);
    if (state === undefined) throw new Error(`process ${pid} exited instead of stopping`);
    if (state === 'T') return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`process ${pid} did not stop within ${timeoutMs} ms`);
}
