// Facts about processes from /proc, for ownership of links.

import { readFileSync } from 'node:fs';
import type { ProcessView } from './owner.ts';

/** Field 22 (starttime, clock ticks since boot) of /proc/PID/stat, or undefined when there is no such process. */
export function processStartTime(pid: number, proc = '/proc'): string | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let stat: string;
  try {
    stat = readFileSync(`${proc}/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = fields[22 - 3];
  return start !== undefined && /^[0-9]+$/.test(start) ? start : undefined;
}

/** Whether a live process with this pid runs a qemu-net-helper executable or script. */
export function isHelperProcess(pid: number, proc = '/proc'): boolean {
  try {
    return readFileSync(`${proc}/${pid}/cmdline`, 'latin1').includes('qemu-net-helper');
  } catch {
    return false;
  }
}

export const SYSTEM_PROCESSES: ProcessView = {
  startTime: (pid) => processStartTime(pid),
  isHelper: (pid) => isHelperProcess(pid),
};
