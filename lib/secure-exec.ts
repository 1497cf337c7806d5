// Whether the kernel started this process with privileges its caller does
// not have, told without the C library (lib/privileges.ts isPrivilegedRun
// asks getauxval through koffi): AT_SECURE in /proc/self/auxv, which the
// kernel sets for setuid, setgid and file-capability executables alike.
// The launcher's executable uses it to refuse before it answers anything
// (packaging/sea-entry.cjs), and so does its koffi-less fallback (lib/launch/early.ts).

import { readFileSync } from 'node:fs';
import { AT_SECURE } from './constants.ts';

/** AT_SECURE's value in an auxiliary vector (pairs of native u64: type, value; AT_NULL ends it), or undefined when it is not there. */
export function atSecureOf(auxv: Buffer): boolean | undefined {
  for (let off = 0; off + 16 <= auxv.length; off += 16) {
    const type = auxv.readBigUInt64LE(off);
    if (type === 0n) break;
    if (type === BigInt(AT_SECURE)) return auxv.readBigUInt64LE(off + 8) !== 0n;
  }
  return undefined;
}

/** Why a program that must run unprivileged (the launcher) refuses, as cause and fix. */
export const PRIVILEGED_REFUSAL = {
  cause: 'runs with privileges (setuid, setgid or file capabilities) and would hand them to any program it runs',
  fix: 'install it as a plain executable (mode 0755, no capabilities): the helpers do the privileged work',
} as const;

/** Whether this process runs with privileges its caller lacks: its uids or gids differ, or the kernel says AT_SECURE. */
export function startedPrivileged(readAuxv: () => Buffer = () => readFileSync('/proc/self/auxv')): boolean {
  if (process.getuid!() !== process.geteuid!() || process.getgid!() !== process.getegid!()) return true;
  try {
    return atSecureOf(readAuxv()) === true;
  } catch {
    // No /proc: the full run asks the C library (isPrivilegedRun) before it does anything.
    return false;
  }
}
