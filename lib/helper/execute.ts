// The execute step of a create request: carries out a Plan (lib/helper/plan.ts).
// The only part of a run that changes anything, and the only one that raises
// a capability: CAP_NET_ADMIN around each rtnetlink request of its own
// socket, CAP_DAC_OVERRIDE around each open of /dev/tapN and /dev/vhost-net
// (docs/security.md maps them).
//
// One rollback point: from the moment the link exists until privileges are
// dropped, whatever fails deletes it. After the drop the helper cannot delete
// it any more (the kernel checks the sender's capability), so it checks for a
// hung-up peer just before; a peer that vanishes in the instant after leaves a
// link whose owner is gone, for the next --gc.

import { IFF_ALLMULTI } from '../constants.ts';
import type { HostIpv6 } from '../host-ipv6.ts';
import { logger } from '../log.ts';
import { HelperError } from '../errors.ts';
import * as libc from '../libc.ts';
import { deleteLink, getLinkByIndex, setLinkAlias, type Link } from '../netlink/link.ts';
import { NetlinkError, withNetlink, type NetlinkSocket } from '../netlink/socket.ts';
import { encodeOwnerTag, markGroup } from '../owner.ts';
import * as policy from '../policy/index.ts';
import { CHOWN, dropPrivileges, NET_ADMIN, withCapabilities } from '../privileges.ts';
import type { FdKind, HelperRecord } from '../record.ts';
import { peerHasHungUp } from '../scm.ts';
import { SYSTEM_VHOST, VhostUnavailableError, type VhostOpener } from '../vhost.ts';
import { allocateLink, deleteLinkQuietly } from './allocate.ts';
import { pruneVlans } from './vlan.ts';
import type { Candidate } from './authorize.ts';
import { collectStale, describeOccupants, linksHeldBy, listHelperLinks, type Collected, type HelperLink } from './ownership.ts';
import type { Plan } from './plan.ts';
import { openQueueSet, type QueueSet } from './queues.ts';
import { withUserLock } from './user-lock.ts';

const debug = logger('execute');

/** The points of a run where a test may inject a fault, in order. */
export const STEPS = ['parsed', 'before-create', 'created', 'tagged', 'opened', 'sending', 'sent'] as const;
export type Step = (typeof STEPS)[number];

export interface ExecuteHooks {
  /** Called at each step (test fault injection; a no-op in installed runs). */
  checkpoint(step: Step): void;
  vhostOpener?: VhostOpener;
  /** Told which candidate the link was made on, as soon as it exists (for the outcome's audit line). */
  allocated(candidate: Candidate): void;
  /** Sends the result, after privileges are dropped. */
  deliver(record: HelperRecord, fds: number[]): void;
  /** Told of each link the request's own collection deleted, with why (for the audit log). */
  removed(link: Collected): void;
}

/** A request's own collection: a few stale links that stand in its way, never a long wait (bulk collection is the root timer's). */
const COLLECT_MAX_LINKS = 32;
const COLLECT_BUDGET_MS = 2000;

const asNetAdmin = <T>(fn: () => T): T => withCapabilities(NET_ADMIN, fn);

/** Carries out the plan and hands the result over. Throws (having rolled back what it could) on any failure. */
export function execute(plan: Plan, hooks: ExecuteHooks): HelperRecord {
  return withNetlink((nl) => {
    let privileged = true;
    let link: Link | undefined;
    let candidate: Candidate;
    let hostIpv6: HostIpv6;
    try {
      // Counting, creating and tagging happen under the user's lock (lib/helper/user-lock.ts): the limit admits exactly what it allows.
      ({ candidate, link, hostIpv6 } = withLimitLock(plan, () => {
        checkLimit(nl, plan, 'before', makeRoom(nl, plan, hooks));
        const made = allocate(nl, plan, hooks);
        hooks.allocated(made.candidate);
        try {
          hooks.checkpoint('created');
          tag(nl, made.link, plan, made.lowerMacBefore);
          hooks.checkpoint('tagged');
          // Counted again with our own link tagged: without the lock, of helpers racing at the limit the later ones always see the earlier ones.
          checkLimit(nl, plan, 'after');
        } catch (err) {
          link = made.link; // rolled back below
          throw err;
        }
        return made;
      }));
      // A persistent link: one queue is opened to check it and describe it, and the node is given to the caller; nothing is handed over.
      const queues = openQueues(link, plan.persistent ? { ...plan, queues: 1 } : plan, candidate, hooks.vhostOpener);
      try {
        hooks.checkpoint('opened');
        if (plan.persistent) giveNode(queues.tapFds[0]!, plan);
        const record = { ...buildRecord(link, candidate.lower, plan, queues, hostIpv6), ...(plan.persistent ? { fds: [], multiQueue: plan.queues > 1 } : {}) };
        if (plan.output.kind === 'probe') {
          deleteLink(nl, link.index);
          debug('probe: deleted %s', link.name);
          if (plan.vlan !== undefined && plan.caller.uid === 0) pruneVlans(nl);
        } else if (plan.output.kind !== 'persistent' && peerHasHungUp(plan.output.fd)) {
          throw peerGone();
        }
        dropPrivileges(plan.caller);
        privileged = false;
        hooks.checkpoint('sending');
        hooks.deliver(record, plan.persistent ? [] : [...queues.tapFds, ...queues.vhostFds]);
        hooks.checkpoint('sent');
        return record;
      } finally {
        queues.close();
      }
    } catch (err) {
      if (link === undefined) throw err; // nothing was made
      // Explained before the rollback, which would make any link look vanished.
      const explained = explainVanished(err, nl, link);
      if (privileged || plan.caller.uid === 0) {
        deleteLinkQuietly(nl, link);
        if (plan.vlan !== undefined && plan.caller.uid === 0) pruneVlans(nl);
        throw explained;
      }
      // Without privileges the link cannot be deleted here; its owner tag makes it stale for --gc.
      throw new HelperError(`${(explained as Error).message}; ${link.name} is left to the next --gc (its owner is gone or will be)`,
        explained instanceof HelperError ? explained.fix : 'run --gc, or retry');
    }
  }, asNetAdmin);
}

/**
 * Collects the links that stand in this request's way, within a fixed
 * budget: unused ones on the candidate devices of a passthru request (a
 * device carries one passthru link only), and the caller's own when they
 * count toward the limit. Returns the helper links as they are after it (the
 * limit's first count uses them), or undefined when nothing needed a listing.
 */
function makeRoom(nl: NetlinkSocket, plan: Plan, hooks: ExecuteHooks): HelperLink[] | undefined {
  if (plan.mode !== 'passthru' && !plan.limit) return undefined; // nothing can stand in the way: no listing at all
  let links = listHelperLinks(nl);
  const deadline = Date.now() + COLLECT_BUDGET_MS;
  const removed = new Set<number>();
  if (plan.mode === 'passthru') {
    const lowerIndexes = new Set(plan.candidates.map((c) => c.lower.index));
    for (const hl of collectStale(nl, { uid: undefined, lowerIndexes, viewer: plan.caller.uid, maxLinks: COLLECT_MAX_LINKS, deadline }, undefined, links)) {
      removed.add(hl.link.index);
      hooks.removed(hl);
    }
  }
  if (plan.limit && links.some((hl) => hl.state === 'stale' && hl.tag?.uid === plan.caller.uid && !removed.has(hl.link.index))) {
    for (const hl of collectStale(nl, { uid: plan.caller.uid, viewer: plan.caller.uid, maxLinks: COLLECT_MAX_LINKS, deadline }, undefined, links.filter((l) => !removed.has(l.link.index)))) {
      removed.add(hl.link.index);
      hooks.removed(hl);
    }
  }
  if (removed.size) links = links.filter((hl) => !removed.has(hl.link.index));
  return links;
}

/**
 * Refuses when the caller holds as many links as the policy lets them
 * (before: from `links`, the listing makeRoom made), or more, counting the
 * new one (after: a fresh listing).
 */
function checkLimit(nl: NetlinkSocket, plan: Plan, when: 'before' | 'after', links?: HelperLink[]): void {
  const limit = plan.limit;
  if (!limit) return;
  const held = linksHeldBy(links ?? listHelperLinks(nl), plan.caller.uid);
  const over = when === 'before' ? held >= limit.links : held > limit.links;
  if (!over) return;
  const holding = when === 'before' ? held : held - 1;
  throw new HelperError(`uid ${plan.caller.uid} already holds ${holding} link${holding === 1 ? '' : 's'}, and ${policy.describeLimit(limit)} allows ${limit.links}`,
    `release links you no longer use (--list, --release=IFNAME, --gc), or ask the administrator to raise it ("limit user NAME links N" in ${policy.POLICY_PATH})`);
}

/** Runs fn under the caller's lock when a limit applies to them (root has none). */
function withLimitLock<T>(plan: Plan, fn: () => T): T {
  return plan.limit ? withUserLock(plan.caller.uid, fn) : fn();
}

/** allocateLink, with what occupies a single passthrough device named in its refusal. */
function allocate(nl: NetlinkSocket, plan: Plan, hooks: ExecuteHooks): ReturnType<typeof allocateLink> {
  try {
    return allocateLink(nl, { mode: plan.mode, ifname: plan.ifname, mac: plan.mac, group: markGroup(process.pid), mayPruneVlans: plan.caller.uid === 0 },
      plan.candidates, plan.pool, () => hooks.checkpoint('before-create'));
  } catch (err) {
    if (!(err instanceof HelperError) || plan.mode !== 'passthru' || plan.pool.isPool) throw err;
    const occupants = describeOccupants(nl, plan.candidates[0]!.lower.index, plan.caller.uid);
    throw occupants ? new HelperError(`${err.message}: it carries ${occupants}`, err.fix) : err;
  }
}

/**
 * Makes a persistent link's /dev/tapN the caller's (owner and group, mode
 * 0600 as devtmpfs made it), through the queue fd just opened and verified:
 * never by a path. The node goes with the link, so nothing the caller can
 * keep reaches a later one (docs/security.md, "Device nodes").
 */
function giveNode(fd: number, plan: Plan): void {
  withCapabilities(CHOWN, () => libc.fchown(fd, plan.caller.uid, plan.caller.gid));
  debug('gave the node of fd %d to uid %d gid %d', fd, plan.caller.uid, plan.caller.gid);
}

function tag(nl: NetlinkSocket, link: Link, plan: Plan, lowerMac: string | undefined): void {
  const o = plan.owner;
  const text = encodeOwnerTag({ helper: plan.program.name, uid: o.uid, pid: o.pid, start: o.start, created: Math.floor(Date.now() / 1000), lowerMac, pidns: o.pidns, persistent: plan.persistent || undefined });
  setLinkAlias(nl, link.index, text);
  debug('tagged %s: %s', link.name, text);
}

function openQueues(link: Link, plan: Pick<Plan, 'queues' | 'vnetHdr'>, candidate: Candidate, vhostOpener: VhostOpener = SYSTEM_VHOST): QueueSet {
  try {
    return openQueueSet(link, { queues: plan.queues, vnetHdr: plan.vnetHdr, vhost: candidate.vhost }, vhostOpener);
  } catch (err) {
    if (err instanceof VhostUnavailableError) {
      throw new HelperError(`--vhost=on, but ${err.message}`, "load vhost_net ('modprobe vhost_net'), or use --vhost=try to go on without it");
    }
    throw err;
  }
}

function buildRecord(link: Link, lower: Link, plan: Plan, queues: QueueSet, hostIpv6: HostIpv6): HelperRecord {
  const fds: FdKind[] = [...queues.tapFds.map((): FdKind => 'tap'), ...queues.vhostFds.map((): FdKind => 'vhost')];
  return {
    ifname: link.name,
    ifindex: link.index,
    lower: lower.name,
    mode: plan.mode,
    mac: link.mac ?? '',
    queues: plan.queues,
    multiQueue: queues.multiQueue,
    vnetHdr: plan.vnetHdr,
    vnetHdrSize: queues.vnetHdrSize,
    offloads: queues.offloads,
    vhost: queues.vhostFds.length > 0,
    vhostFeatures: queues.vhostFeatures,
    vhostError: queues.vhostError,
    // The kernel's word: the flags it reported for the new link.
    allmulti: (link.flags & IFF_ALLMULTI) !== 0,
    hostIpv6,
    vlan: plan.vlan,
    fds,
  };
}

/** A link that disappeared under us (its lower device was removed) gets a message that says so. */
function explainVanished(err: unknown, nl: NetlinkSocket, link: Link): unknown {
  if (err instanceof HelperError) return err;
  const gone = (err instanceof NetlinkError && err.code === 'ENODEV') || (err instanceof libc.SysError && (err.code === 'ENOENT' || err.code === 'ENODEV'));
  if (!gone) return err;
  let exists = true;
  try {
    exists = getLinkByIndex(nl, link.index)?.name === link.name;
  } catch {
    // keep the original error
  }
  return exists ? err : new HelperError(`${link.name} disappeared while it was being set up (was its lower device removed?)`, 'check the device and try again');
}

export function peerGone(): HelperError {
  return new HelperError('the other end closed its socket before the fd could be sent, so the link was deleted', 'keep the socket open until the helper exits');
}
