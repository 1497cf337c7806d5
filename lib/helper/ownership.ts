// Listing, releasing and collecting helper-made links (see lib/owner.ts for
// how a link is recognised and judged). Works in the network namespace it
// runs in, like everything else a helper does.

import { logger } from '../log.ts';
import { HelperError } from '../errors.ts';
import { parseMac } from '../mac.ts';
import { modeName } from '../modes.ts';
import { deleteLink, deleteLinkGroup, getLinkByIndex, listLinks, setLinkAddress, setLinkGroup, type Link } from '../netlink/link.ts';
import { NetlinkError, type NetlinkSocket } from '../netlink/socket.ts';
import { COLLECTING_GROUP, creatorFromGroup, decodeOwnerTag, judgeLink, type HelperLinkView, type ProcessView } from '../owner.ts';
import { lstatSync } from 'node:fs';
import { isHeld, SYSTEM_PROCESSES } from '../proc.ts';
import { tapDeviceNumber, tapNodePath } from '../tap.ts';

const debug = logger('ownership');

export interface HelperLink extends HelperLinkView {
  link: Link;
  lowerName: string | undefined;
}

/**
 * Every helper-made macvtap in this namespace, judged alive, stale or in
 * progress. Only macvtaps are listed (the kernel filters them); lowerName is
 * left unset (see withLowerNames).
 */
export function listHelperLinks(nl: NetlinkSocket, proc: ProcessView = SYSTEM_PROCESSES): HelperLink[] {
  const out: HelperLink[] = [];
  // One look at each owner, however many links it has (a host may have a thousand links of one manager).
  const seen = new Map<string, ReturnType<ProcessView['lookup']>>();
  const once: ProcessView = { ...proc, lookup: (pid, pidns) => {
    const key = `${pid}/${pidns}`;
    let state = seen.get(key);
    if (!state) seen.set(key, (state = proc.lookup(pid, pidns)));
    return state;
  } };
  for (const link of listLinks(nl, 'macvtap', (group) => creatorFromGroup(group) !== undefined)) {
    const view = judgeLink(link, once);
    if (view) out.push({ ...view, link, lowerName: undefined });
  }
  return out;
}

/** The links with their lower devices' names, one request per distinct device (only --list shows them). */
export function withLowerNames(nl: NetlinkSocket, links: HelperLink[]): HelperLink[] {
  const names = new Map<number, string | undefined>();
  return links.map((hl) => {
    const index = hl.link.lowerIndex;
    if (index === undefined) return hl;
    if (!names.has(index)) names.set(index, getLinkByIndex(nl, index)?.name);
    return { ...hl, lowerName: names.get(index) };
  });
}

/** Deletes a helper link; a passthru link's lower device gets its own MAC back if the kernel did not restore it. */
export function removeHelperLink(nl: NetlinkSocket, hl: HelperLink): void {
  try {
    deleteLink(nl, hl.link.index);
  } catch (err) {
    if (err instanceof NetlinkError && err.code === 'ENODEV') return; // someone else removed it first
    throw err;
  }
  debug('deleted %s (ifindex %d)', hl.link.name, hl.link.index);
  restoreLowerMac(nl, hl);
}

/** A passthru link's lower device gets its own MAC back if the kernel did not restore it. */
function restoreLowerMac(nl: NetlinkSocket, hl: HelperLink): void {
  const lowerMac = hl.tag?.lowerMac;
  if (lowerMac && hl.link.lowerIndex !== undefined) {
    const lower = getLinkByIndex(nl, hl.link.lowerIndex);
    if (lower && lower.mac !== lowerMac) {
      setLinkAddress(nl, lower.index, parseMac(lowerMac));
      debug('restored MAC %s on %s', lowerMac, lower.name);
    }
  }
}

export interface CollectScope {
  /** Only links tagged with this owner uid; undefined: every owner (root). */
  uid: number | undefined;
  /** Only links on these lower ifindexes; undefined: all. */
  lowerIndexes?: ReadonlySet<number>;
  /** The uid collecting (the caller): their own links are judged with their own processes' fds. */
  viewer?: number;
  /** At most this many deletions, and none after this time (Date.now() ms): a request's collection is bounded, bulk collection is the root timer's. */
  maxLinks?: number;
  deadline?: number;
}

/** A link deleted by a collection, and why it was proven unused (for the audit line). */
export interface Collected extends HelperLink {
  reason: string;
}

/**
 * How long after it is tagged a link counts as in use whether or not a
 * process holds its queue: while the fds travel in an SCM_RIGHTS message from
 * the helper to its peer (or from a manager to QEMU) nobody's fd table shows
 * them; that takes milliseconds. (A manager that keeps the fd itself, as
 * libvirt does until QEMU starts, holds it in its own fd table.)
 */
export const HANDOVER_GRACE_S = 10;

/**
 * Why `hl` is proven unused, or undefined when it may be in use. A link some
 * process holds a queue of is in use, whoever its owner is (a manager passed
 * the fd on; a wrapper forked a child that keeps it). With a complete view
 * of the processes that could hold it (root: everyone's; a user: their own,
 * for a link of theirs, when none of their processes is hidden), a link
 * nobody holds is unused: at once when its owner is proven gone, after the
 * hand-over grace when its recorded owner lives (a manager that ran the helper
 * and passed the fd to a QEMU that has since exited, as libvirt does).
 * Otherwise only a link whose owner is proven gone and that no visible
 * process holds.
 */
export function unusedReason(hl: HelperLink, holders: ReturnType<ProcessView['holders']>, queue: QueueNode | undefined, now: number, viewerUid?: number): string | undefined {
  const ownLink = viewerUid !== undefined && hl.tag !== undefined && hl.tag.uid === viewerUid;
  const complete = holders.complete || (ownLink && !holders.unlisted && !holders.hiddenUids.has(viewerUid) && !holders.hiddenUids.has(-1));
  // A persistent link belongs to its user until released; one in progress is about to be handed over.
  if (hl.state === 'persistent' || hl.state === 'in-progress' || (hl.state === 'unknown' && !complete)) return undefined;
  // Another user's processes are hidden from a caller who is not root: whether one of them holds
  // a queue of their link (a manager handed it on) cannot be told, so it is never deleted from here.
  // An untagged link is the exception: its creator died before tagging it, and queues are opened only after.
  if (!complete && hl.tag !== undefined && !ownLink) return undefined;
  if (queue === undefined) return undefined; // its queue's device cannot be read: cannot tell who holds it
  if (isHeld(holders, queue.rdev, queue.node)) return undefined;
  const gone = hl.tag ? `its owner pid ${hl.tag.pid} is gone` : `it was never tagged and its creating helper (pid ${hl.creator}) no longer runs`;
  const nobody = holders.complete ? 'no process holds its queue' : 'none of the caller\'s processes holds its queue';
  if (complete) {
    if (hl.state === 'stale') return `${gone} and ${nobody}`;
    // The owner lives (or cannot be seen) but holds nothing: past the grace, it handed the fds on to a process that has let them go.
    if (hl.tag && now - hl.tag.created < HANDOVER_GRACE_S) return undefined;
    return `${nobody} (its owner pid ${hl.tag?.pid} no longer uses it)`;
  }
  if (hl.state !== 'stale') return undefined;
  return `${gone} and ${nobody}`;
}

/** A link's queue device: its number, and the node /dev has for it now. */
interface QueueNode {
  rdev: bigint;
  node: { dev: bigint; ino: bigint } | undefined;
}

/** The link's queue device, or undefined when sysfs does not show it (then nobody can tell who holds it). */
function queueNode(link: Link): QueueNode | undefined {
  let rdev: bigint;
  try {
    rdev = tapDeviceNumber(link);
  } catch {
    return undefined;
  }
  try {
    const st = lstatSync(tapNodePath(link.index), { bigint: true });
    return { rdev, node: st.isCharacterDevice() && st.rdev === rdev ? { dev: st.dev, ino: st.ino } : undefined };
  } catch {
    return { rdev, node: undefined };
  }
}

/**
 * Deletes the helper links in scope that are proven unused (unusedReason);
 * returns them with the reason. `links` is a listing made just before, when
 * the caller has one.
 */
export function collectStale(nl: NetlinkSocket, scope: CollectScope, proc: ProcessView = SYSTEM_PROCESSES, links = listHelperLinks(nl, proc)): Collected[] {
  const removed: Collected[] = [];
  const inScope = links.filter((hl) =>
    // An untagged link has no recorded owner: only root's collection takes it.
    (scope.uid === undefined || hl.tag?.uid === scope.uid) &&
    (!scope.lowerIndexes || (hl.link.lowerIndex !== undefined && scope.lowerIndexes.has(hl.link.lowerIndex))));
  if (inScope.length === 0) return removed;
  const holders = proc.holders();
  const now = Math.floor(Date.now() / 1000);
  const doomed: Collected[] = [];
  for (const hl of inScope) {
    const reason = unusedReason(hl, holders, queueNode(hl.link), now, scope.viewer);
    if (!reason) continue;
    if (doomed.length >= (scope.maxLinks ?? Infinity) || Date.now() > (scope.deadline ?? Infinity)) {
      debug('collection budget spent: %d links to delete, the rest is left to --gc', doomed.length);
      break;
    }
    if (!hl.tag && !stillUntagged(nl, hl)) continue;
    doomed.push({ ...hl, reason });
  }
  if (doomed.length >= BATCH_DELETE_MIN) return removeTogether(nl, doomed);
  for (const hl of doomed) removeHelperLink(nl, hl);
  return doomed;
}

/** From this many links on, a collection deletes them in one request (deleteLinkGroup). */
const BATCH_DELETE_MIN = 8;

/** Deletes the links with one RTM_DELLINK of COLLECTING_GROUP; returns those that were deleted. */
function removeTogether(nl: NetlinkSocket, links: Collected[]): Collected[] {
  const moved: Collected[] = [];
  for (const hl of links) {
    try {
      setLinkGroup(nl, hl.link.index, COLLECTING_GROUP);
      moved.push(hl);
    } catch (err) {
      if (!(err instanceof NetlinkError && err.code === 'ENODEV')) throw err; // someone else removed it first
    }
  }
  if (moved.length === 0) return moved;
  deleteLinkGroup(nl, COLLECTING_GROUP);
  debug('deleted %d links in one request', moved.length);
  for (const hl of moved) restoreLowerMac(nl, hl);
  return moved;
}

/**
 * How many links `uid` holds: those tagged with it whose owner is not proven
 * gone, and untagged ones in progress whose creating helper runs as `uid`.
 */
export function linksHeldBy(links: readonly HelperLink[], uid: number, proc: ProcessView = SYSTEM_PROCESSES): number {
  let held = 0;
  for (const hl of links) {
    if (hl.state === 'stale') continue;
    if (hl.tag ? hl.tag.uid === uid : proc.realUid(hl.creator) === uid) held++;
  }
  return held;
}

/**
 * An untagged link was judged stale because its creator is gone; but the
 * listing may predate the tag: the creator can tag the link, hand it over and
 * exit between our listing and our look at its pid. Look again now. A link
 * that is still untagged after its creator died can never be tagged: it is
 * truly orphaned.
 */
function stillUntagged(nl: NetlinkSocket, hl: HelperLink): boolean {
  const fresh = getLinkByIndex(nl, hl.link.index);
  return fresh !== undefined && fresh.group === hl.link.group && decodeOwnerTag(fresh.alias) === undefined;
}

/**
 * What is on a device a passthru link could not be made on, for the message:
 * the helper links there, whose they are, and how the caller frees their own.
 */
export function describeOccupants(nl: NetlinkSocket, lowerIndex: number, callerUid: number): string | undefined {
  const here = listHelperLinks(nl).filter((hl) => hl.link.lowerIndex === lowerIndex);
  if (here.length === 0) return undefined;
  const now = Math.floor(Date.now() / 1000);
  return here.map((hl) => {
    const mine = hl.tag?.uid === callerUid;
    const age = hl.tag ? ` made ${Math.max(0, now - hl.tag.created)} s ago` : '';
    const state = hl.state === 'alive' && mine ? `; if no process of yours holds it any more, it counts as unused ${HANDOVER_GRACE_S} s after it was made, or --release=${hl.link.name} frees it now` : '';
    return `${hl.link.name} (${mine ? 'yours' : `uid ${hl.tag?.uid ?? 'unknown'}`}, ${hl.state}${age}${state})`;
  }).join(', ');
}

/** Deletes one link by name for its owner or root, alive or not. */
export function releaseLink(nl: NetlinkSocket, name: string, callerUid: number, proc: ProcessView = SYSTEM_PROCESSES): HelperLink {
  const hl = listHelperLinks(nl, proc).find((l) => l.link.name === name);
  if (!hl) throw new HelperError(`${name} is not a link made by qemu-net-helper in this network namespace`, `see the helper links with --list`);
  if (callerUid !== 0 && hl.tag?.uid !== callerUid) {
    throw new HelperError(`${name} belongs to uid ${hl.tag?.uid ?? 'nobody (never tagged)'}, not to you (uid ${callerUid})`, 'only its owner or root may release it');
  }
  removeHelperLink(nl, hl);
  return hl;
}

/** The rows of --list, for people (table) or programs (JSON). */
export function listRows(links: HelperLink[], now: number, userName: (uid: number) => string): Array<Record<string, string | number | null>> {
  return links.map((hl) => ({
    name: hl.link.name,
    lower: hl.lowerName ?? null,
    mode: modeName(hl.link.macvlanMode ?? 0) ?? 'unknown',
    mac: hl.link.mac ?? null,
    helper: hl.tag?.helper ?? null,
    uid: hl.tag?.uid ?? null,
    user: hl.tag ? userName(hl.tag.uid) : null,
    pid: hl.tag?.pid ?? hl.creator,
    state: hl.state,
    age_s: hl.tag ? Math.max(0, now - hl.tag.created) : null,
  }));
}

export function formatAge(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

export function formatTable(rows: Array<Record<string, string | number | null>>): string {
  const header = ['NAME', 'LOWER', 'MODE', 'MAC', 'USER', 'PID', 'STATE', 'AGE'];
  const body = rows.map((r) => [r.name, r.lower ?? '-', r.mode, r.mac ?? '-', r.user ?? '-', r.pid, r.state, formatAge(r.age_s as number | null)].map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [header, ...body].map((cols) => cols.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}
