// Who owns a helper-made link, and whether that owner is still there. Pure.
//
// A macvtap outlives its fds, so every link a helper makes carries:
//  - at creation, atomically: device group MARK | creator pid (the kernel
//    ignores IFLA_IFALIAS on RTM_NEWLINK, but applies IFLA_GROUP);
//  - right after: an alias (IFLA_IFALIAS) tag naming the owner, i.e. the
//    process at the other end of the reply socket (SO_PEERCRED) with its start
//    time, so a reused pid is not mistaken for it.
// A link with the mark but no tag is one whose helper died in between (or
// is in that instant now): it is in progress only while that helper lives.

export const TAG_PREFIX = 'qemu-net-helper/1';
/** High byte of the device group of every helper-made link ('Q'); the low 24 bits are the creating helper's pid. */
export const GROUP_MARK = 0x51000000;
const GROUP_MARK_MASK = 0xff000000;
const GROUP_PID_MASK = 0x00ffffff;

export interface OwnerTag {
  /** The helper that made the link (program name). */
  helper: string;
  /** The caller's real uid: who may release it. */
  uid: number;
  /** The owning process (SO_PEERCRED of the reply socket) and its start time (/proc/PID/stat field 22). */
  pid: number;
  start: string;
  /** Unix time (s) of creation. */
  created: number;
  /** For passthru with --mac: the lower device's own MAC, to restore on release. */
  lowerMac?: string | undefined;
  /** The inode of the PID namespace `pid` is counted in (the helper's own): a pid means nothing in another one. */
  pidns?: string | undefined;
  /** A persistent link: it belongs to `uid`, not to a process, and stays until released (pid is the helper that made it). */
  persistent?: boolean | undefined;
}

export function encodeOwnerTag(t: OwnerTag): string {
  const parts = [TAG_PREFIX, `helper=${t.helper}`, `uid=${t.uid}`, `pid=${t.pid}`, `start=${t.start}`, `created=${t.created}`];
  if (t.lowerMac) parts.push(`lower_mac=${t.lowerMac}`);
  if (t.pidns) parts.push(`pidns=${t.pidns}`);
  if (t.persistent) parts.push('persistent=1');
  return parts.join(' ');
}

const TAG_VALUE = /^[\x21-\x7e]{1,64}$/;
const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;

/** Parses a tag; undefined for anything that is not exactly one of ours. */
export function decodeOwnerTag(alias: string | undefined): OwnerTag | undefined {
  if (!alias) return undefined;
  const [prefix, ...pairs] = alias.split(' ');
  if (prefix !== TAG_PREFIX) return undefined;
  const kv = new Map<string, string>();
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) return undefined;
    const value = p.slice(eq + 1);
    if (!TAG_VALUE.test(value) || kv.has(p.slice(0, eq))) return undefined;
    kv.set(p.slice(0, eq), value);
  }
  const helper = kv.get('helper');
  const [uid, pid, start, created] = ['uid', 'pid', 'start', 'created'].map((k) => kv.get(k));
  if (!helper || ![uid, pid, start, created].every((v) => v !== undefined && DECIMAL.test(v))) return undefined;
  const pidns = kv.get('pidns');
  if (pidns !== undefined && !DECIMAL.test(pidns)) return undefined;
  const persistent = kv.get('persistent');
  if (persistent !== undefined && persistent !== '1') return undefined;
  return { helper, uid: Number(uid), pid: Number(pid), start: start!, created: Number(created), lowerMac: kv.get('lower_mac'), pidns, persistent: persistent === '1' || undefined };
}

/**
 * The group a collection moves the links it deletes into, to delete them in
 * one request: our mark with a "pid" no process can have (pid_max is at most
 * 2^22), so no live helper's link is ever in it, and a link left there by a
 * collection that died midway is still ours, and stale.
 */
export const COLLECTING_GROUP = (GROUP_MARK | GROUP_PID_MASK) >>> 0;

export function markGroup(creatorPid: number): number {
  return (GROUP_MARK | (creatorPid & GROUP_PID_MASK)) >>> 0;
}

/** The creating helper's pid if `group` carries our mark, else undefined. */
export function creatorFromGroup(group: number): number | undefined {
  return ((group & GROUP_MARK_MASK) >>> 0) === GROUP_MARK ? group & GROUP_PID_MASK : undefined;
}

/**
 * What a process table can tell about a pid. 'unknown' is an answer of its
 * own: a process this view cannot see (another PID namespace, /proc mounted
 * with hidepid, an unreadable entry) may well be running, and a link is
 * judged stale only when its owner is proven gone.
 */
export type ProcessState = { kind: 'running'; start: string } | { kind: 'gone' } | { kind: 'unknown' };

export interface ProcessView {
  /** The process `pid` as counted in PID namespace `pidns` (undefined: the view's own). Zombies are gone. */
  lookup(pid: number, pidns: string | undefined): ProcessState;
  /** Whether a running `pid` executes the helper's own executable; 'unknown' when that cannot be read. */
  isHelper(pid: number): boolean | 'unknown';
  /** The real uid of a running `pid`, when it can be read. */
  realUid(pid: number): number | undefined;
  /** The character devices processes hold open (queue fds show as their link's device), and how complete that view is. */
  holders(): { devices: ReadonlyMap<bigint, ReadonlyArray<{ dev: bigint; ino: bigint; nlink: bigint }>>; complete: boolean; hiddenUids: ReadonlySet<number>; unlisted: boolean };
}

export type OwnerState = 'alive' | 'stale' | 'in-progress' | 'unknown' | 'persistent';

export interface HelperLinkView {
  /** The tag, or undefined for a marked link whose helper never tagged it. */
  tag: OwnerTag | undefined;
  /** The pid from the group mark. */
  creator: number;
  state: OwnerState;
}

/**
 * Whether a link is ours (it carries the group mark), and if so whether its
 * owner is alive. undefined: not a helper-made link, whatever its alias says. 'unknown' (the owner cannot be seen from here) is
 * never collected. An untagged link is in progress while its creator runs
 * the helper executable, or might (cannot be read): a process that merely
 * calls itself qemu-net-helper does not keep it.
 */
export function judgeLink(link: { alias: string | undefined; group: number }, proc: ProcessView): HelperLinkView | undefined {
  // Ours only with the group mark, which the kernel applies at creation: an alias alone anyone with CAP_NET_ADMIN can write.
  const creator = creatorFromGroup(link.group);
  if (creator === undefined) return undefined;
  const tag = decodeOwnerTag(link.alias);
  if (tag?.persistent) return { tag, creator, state: 'persistent' };
  if (tag) {
    const p = proc.lookup(tag.pid, tag.pidns);
    const state: OwnerState = p.kind === 'unknown' ? 'unknown' : p.kind === 'running' && p.start === tag.start ? 'alive' : 'stale';
    return { tag, creator, state };
  }
  const p = proc.lookup(creator, undefined);
  if (p.kind === 'gone') return { tag: undefined, creator, state: 'stale' };
  return { tag: undefined, creator, state: p.kind === 'unknown' || proc.isHelper(creator) !== false ? 'in-progress' : 'stale' };
}
