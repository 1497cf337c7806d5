// Facts about processes from /proc, for ownership of links.
//
// Only what cannot be forged by the process looked at: its start time (field
// 22 of /proc/PID/stat), its state (a zombie is dead), the executable the
// kernel runs for it (/proc/PID/exe), and which PID namespace pids are counted
// in. Never its command line, which any process sets as it likes.
//
// "Cannot tell" is an answer of its own (see lib/owner.ts): /proc mounted with
// hidepid makes other users' processes vanish (ENOENT, not EACCES), and a pid
// recorded in another PID namespace names some other process here.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { PROC_PID_INIT_INO } from './constants.ts';
import type { ProcessState, ProcessView } from './owner.ts';

/** Field 22 (starttime, clock ticks since boot) of /proc/PID/stat, or undefined when there is no such process or it is a zombie. */
export function processStartTime(pid: number, proc = '/proc'): string | undefined {
  const s = processState(pid, proc, false);
  return s.kind === 'running' ? s.start : undefined;
}

/**
 * What /proc says of `pid` in this process's PID namespace. A missing entry
 * is 'gone' only when /proc would show it (`hides` false: no hidepid, or
 * root); otherwise 'unknown'.
 */
export function processState(pid: number, proc = '/proc', hides = procHidesOthers(proc)): ProcessState {
  if (!Number.isInteger(pid) || pid <= 0) return { kind: 'gone' };
  let stat: string;
  try {
    stat = readFileSync(`${proc}/${pid}/stat`, 'latin1');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' && !hides ? { kind: 'gone' } : { kind: 'unknown' };
  }
  // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  if (state === 'Z' || state === 'X' || state === 'x') return { kind: 'gone' };
  const start = fields[22 - 3];
  return start !== undefined && /^[0-9]+$/.test(start) ? { kind: 'running', start } : { kind: 'unknown' };
}

let hidesCache: boolean | undefined;

/**
 * Whether /proc here hides processes of other users from us: mounted with
 * hidepid (1, 2, invisible, noaccess) or subset=pid, and we are not root.
 */
export function procHidesOthers(proc = '/proc'): boolean {
  if (proc !== '/proc') return false;
  if (hidesCache !== undefined) return hidesCache;
  let hides = false;
  if (process.geteuid?.() !== 0) {
    try {
      for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
        const [left, right] = line.split(' - ');
        if (left?.split(' ')[4] !== '/proc' || !right) continue;
        const options = right.split(' ')[2] ?? '';
        hides = /(^|,)(hidepid=(1|2|invisible|noaccess)|subset=pid)(,|$)/.test(options);
      }
    } catch {
      hides = true; // cannot tell: assume the narrower view
    }
  }
  hidesCache = hides;
  return hides;
}

/** The inode of our own PID namespace, as a decimal string (what an owner tag records as pidns=). */
export function ownPidNamespace(): string | undefined {
  try {
    return String(statSync('/proc/self/ns/pid', { bigint: true }).ino);
  } catch {
    return undefined;
  }
}

let ownExe: { dev: bigint; ino: bigint } | undefined;

/**
 * Whether `pid` runs the same executable as we do (dev and inode of
 * /proc/PID/exe), which is how a helper recognises another helper run.
 * 'unknown' when the kernel will not say (another user's process that is
 * not dumpable, as every privileged helper is).
 */
export function runsOurExecutable(pid: number, proc = '/proc'): boolean | 'unknown' {
  try {
    ownExe ??= statSync('/proc/self/exe', { bigint: true });
    const st = statSync(`${proc}/${pid}/exe`, { bigint: true });
    return st.dev === ownExe.dev && st.ino === ownExe.ino;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' && !procHidesOthers(proc) ? false : 'unknown';
  }
}

export const SYSTEM_PROCESSES: ProcessView = {
  lookup(pid, pidns) {
    if (pidns !== undefined && pidns !== ownPidNamespace()) return { kind: 'unknown' };
    return processState(pid);
  },
  isHelper: (pid) => runsOurExecutable(pid),
  realUid: (pid) => realUidOf(pid),
  holders: () => heldCharDevices(),
};

/** The real uid of a running process (/proc/PID/status "Uid:"), or undefined when it cannot be read. */
export function realUidOf(pid: number, proc = '/proc'): number | undefined {
  try {
    const m = /^Uid:\s+([0-9]+)\s/m.exec(readFileSync(`${proc}/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The file an open character-device fd refers to: which inode (the node it was opened by) and whether that is still linked. */
export interface OpenNode {
  dev: bigint;
  ino: bigint;
  nlink: bigint;
}

/** The character devices open in processes' fd tables, and how much of that view is complete. */
export interface Holders {
  /** Device number -> the nodes fds of that device were opened through. */
  devices: ReadonlyMap<bigint, readonly OpenNode[]>;
  /** True when no process's fds were hidden from us (root): then a device missing from the set is held by no one. */
  complete: boolean;
  /** Real uids of processes whose fds could not be read (so they might hold anything). */
  hiddenUids: ReadonlySet<number>;
  /** Whether some processes may not even be listed (/proc with hidepid, or another PID namespace than the host's). */
  unlisted: boolean;
}

const MAX_FDS_SCANNED = 1_000_000;

/**
 * Every character device some process has open (/proc/PID/fd/N, stat()ed:
 * the device behind the fd, whatever path it was opened by). A macvtap queue
 * shows there with its link's device number. As root in the host's PID
 * namespace every process is seen; otherwise what is hidden is said.
 */
export function heldCharDevices(proc = '/proc'): Holders {
  const devices = new Map<bigint, OpenNode[]>();
  const hiddenUids = new Set<number>();
  let scanned = 0;
  let truncated = false;
  for (const entry of readdirSync(proc)) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`${proc}/${entry}/fd`);
    } catch (err) {
      // Gone meanwhile is fine; hidden is not: remember whose it is (unknown uid: -1).
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') hiddenUids.add(realUidOf(Number(entry), proc) ?? -1);
      continue;
    }
    for (const fd of fds) {
      if (++scanned > MAX_FDS_SCANNED) { truncated = true; break; }
      try {
        const st = statSync(`${proc}/${entry}/fd/${fd}`, { bigint: true });
        if (st.isCharacterDevice()) {
          const list = devices.get(st.rdev) ?? [];
          list.push({ dev: st.dev, ino: st.ino, nlink: st.nlink });
          devices.set(st.rdev, list);
        }
      } catch {
        // closed meanwhile, or a descriptor that cannot be stat()ed: not a queue
      }
    }
    if (truncated) break;
  }
  // Only from the initial PID namespace does /proc show every process on the host.
  const unlisted = truncated || procHidesOthers(proc) || ownPidNamespace() !== String(PROC_PID_INIT_INO);
  return { devices, complete: !unlisted && hiddenUids.size === 0, hiddenUids, unlisted };
}

/**
 * Whether some fd holds a queue of the device `rdev` whose node is now
 * `node` (lstat of /dev/tapN; undefined when there is none). Device numbers
 * are reused: an fd of a link deleted earlier keeps its old, unlinked
 * devtmpfs inode with the same number. Exactly those are not counted (same
 * file system as the node, another inode, no links left); any other fd of
 * that number is, whatever path it was opened by (a manager's own node).
 */
export function isHeld(holders: { devices: ReadonlyMap<bigint, readonly OpenNode[]> }, rdev: bigint, node: { dev: bigint; ino: bigint } | undefined): boolean {
  const opened = holders.devices.get(rdev);
  if (!opened) return false;
  return opened.some((o) => !(node && o.dev === node.dev && o.ino !== node.ino && o.nlink === 0n));
}
