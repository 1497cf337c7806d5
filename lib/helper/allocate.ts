// Choosing the lower device and creating the macvtap on it.
//
// The new link's ifindex is chosen here, at random among those whose
// /dev/tap<ifindex> does not exist, and requested in RTM_NEWLINK. That does
// two jobs. The kernel's node for the link is then ours and nobody else's
// (devtmpfs is shared by every network namespace while ifindexes are not: see
// lib/tap.ts), so a queue is never opened through a node the helper made.
// And the link is found again by that index and its group mark on every
// kernel, without the NLM_F_ECHO reply that only 6.2 and later send.
//
// From the moment RTM_NEWLINK is sent, allocation owns the link: whatever
// fails before it returns deletes it. After it returns, the caller owns it.
//
// For a pool (an explicit list, or the VFs of an SR-IOV PF) members are tried
// in order. There is no lock: the kernel refuses a passthru macvtap on a
// device that already has any macvlan/macvtap (EINVAL), so two helpers racing
// for the same member cannot both win; the loser moves on to the next member,
// as it does after any other failure that is about that member.
//
// The link is created down, with IFF_ALLMULTI when the plan says so, and
// brought up only after the host's IPv6 is off on it (lib/host-ipv6.ts), so
// that the host never configures an address on the guest's NIC.
//
// For passthru with --mac, the MAC is set on the macvtap after it exists
// (the kernel passes it down to the lower device). Setting it on the lower
// device first would race with other helpers trying the same member; and the
// kernel restores the lower device's own MAC when the passthru macvtap is
// deleted, as libvirt does by hand.

import { logger } from '../log.ts';
import { HelperError } from '../errors.ts';
import * as libc from '../libc.ts';
import { writeErr } from '../output.ts';
import { formatMac, generateMac } from '../mac.ts';
import { MODE_VALUES, type ModeName } from '../modes.ts';
import { keepHostIpv6Off, type HostIpv6 } from '../host-ipv6.ts';
import { pruneVlans, vlanCarrier } from './vlan.ts';
import { addMacvtap, deleteLink, getLinkByIndex, listLinks, setLinkAddress, setLinkUp, type Link } from '../netlink/link.ts';
import { NetlinkError, type NetlinkSocket } from '../netlink/socket.ts';
import { tapNodeExists, tapNodeIsOurs } from '../tap.ts';
import type { Candidate, PoolSummary } from './authorize.ts';

const debug = logger('allocate');

/** The link to make, whatever lower device it ends up on. */
export interface LinkSpec {
  mode: ModeName;
  /** A name or a template with one %d. */
  ifname: string;
  mac: Buffer | undefined;
  /** The group mark of this run (lib/owner.ts markGroup). */
  group: number;
  /** Whether this run may delete helper VLAN links nothing is on (root's only: lib/helper/vlan.ts says why). */
  mayPruneVlans: boolean;
}

export interface Allocation {
  candidate: Candidate;
  link: Link;
  /** What became of the host's IPv6 on the link. */
  hostIpv6: HostIpv6;
  /** The lower device's own MAC when --mac replaced it (passthru): to restore on release. */
  lowerMacBefore: string | undefined;
}

/** Called between the check that a device is free and the attempt to create on it (a fault-injection point for tests). */
export type BeforeCreate = (lower: Link) => void;

/** ifindexes the helper chooses from: above what hosts hand out themselves, below 2^24 so that names stay short. */
export const FIRST_CHOSEN_INDEX = 0x100000;
export const LAST_CHOSEN_INDEX = 0xffffff;
/** How many random indexes to look at for one whose /dev/tapN is free, and how many links to try to create. */
const INDEX_LOOKS = 64;
const CREATE_ATTEMPTS = 8;

/** Creates the macvtap on the first candidate that takes it; the caller owns (and must delete) the returned link. */
export function allocateLink(nl: NetlinkSocket, spec: LinkSpec, candidates: readonly Candidate[], pool: PoolSummary, beforeCreate: BeforeCreate = () => {}): Allocation {
  if (!pool.isPool) {
    const candidate = candidates[0]!;
    beforeCreate(candidate.lower);
    return { candidate, ...createOn(nl, spec, candidate) };
  }

  // Two dumps the kernel filters by kind: on a host with many other links,
  // far less than one dump of everything.
  const macvlans = [...listLinks(nl, 'macvtap'), ...listLinks(nl, 'macvlan')];
  const occupied = new Set(macvlans.flatMap((l) => (l.lowerIndex !== undefined ? [l.lowerIndex] : [])));
  let busy = 0;
  let failed = 0;
  let lastFailure: string | undefined;
  for (const candidate of candidates) {
    const lower = candidate.lower;
    if (occupied.has(lower.index)) {
      debug('pool member %s already has a macvtap', lower.name);
      busy++;
      continue;
    }
    try {
      beforeCreate(lower);
      return { candidate, ...createOn(nl, spec, candidate) };
    } catch (err) {
      if (!(err instanceof MemberFailure)) throw err;
      debug('pool member %s: %s', lower.name, err.message);
      if (err.busy) busy++;
      else {
        failed++;
        lastFailure = err.message;
      }
    }
  }
  const total = candidates.length + pool.missing + pool.unusable + pool.refused + pool.denied;
  const extra = [
    failed ? `${failed} failed (last: ${lastFailure})` : '',
    pool.missing ? `${pool.missing} do not exist` : '',
    pool.unusable ? `${pool.unusable} are not bound to a network driver` : '',
    pool.refused ? `${pool.refused} cannot carry a macvtap` : '',
    pool.denied ? `${pool.denied} are not allowed to you` : '',
  ].filter(Boolean).join(', ');
  throw new HelperError(`${pool.description} exhausted: ${busy} of ${total} members are busy${extra ? ` (${extra})` : ''}`,
    'wait for a guest to release one (qemu-net-helper-passthrough --gc collects those of dead guests), or add members');
}

/** Creating on this member failed for a reason that is about the member; a pool tries the next one. */
class MemberFailure extends HelperError {
  readonly busy: boolean;
  constructor(cause: HelperError, busy: boolean) {
    super(cause.message, cause.fix);
    this.busy = busy;
  }
}

/** A random ifindex that no link in this namespace has and whose /dev/tapN does not exist. */
function chooseIndex(nl: NetlinkSocket): number {
  const span = LAST_CHOSEN_INDEX - FIRST_CHOSEN_INDEX + 1;
  for (let i = 0; i < INDEX_LOOKS; i++) {
    const index = FIRST_CHOSEN_INDEX + (libc.randomBytes(4).readUInt32LE(0) % span);
    if (!tapNodeExists(index) && getLinkByIndex(nl, index) === undefined) return index;
  }
  throw new HelperError(`found no free ifindex in ${INDEX_LOOKS} random tries (every /dev/tapN looked at exists)`, 'remove stale /dev/tap* nodes or links, and retry');
}

/** The kernel's refusal is about the lower device (so a pool may try another), not about the request. */
function isAboutMember(err: unknown): boolean {
  return err instanceof NetlinkError && err.code !== 'EEXIST' && err.code !== 'ENFILE' && err.code !== 'EPERM' && err.code !== 'ENOMEM';
}

function createOn(nl: NetlinkSocket, spec: LinkSpec, candidate: Candidate): Omit<Allocation, 'candidate'> {
  try {
    return createOnCarrier(nl, spec, candidate);
  } catch (err) {
    if (candidate.vlan !== undefined && spec.mayPruneVlans) pruneVlans(nl); // root's run: a VLAN made for it alone goes with its link
    throw err;
  }
}

/** The device the macvtap sits on: the lower device, or its VLAN (found again after a prune took it, bounded). */
function carrierOf(nl: NetlinkSocket, candidate: Candidate): Link {
  return candidate.vlan === undefined ? candidate.lower : vlanCarrier(nl, candidate.lower, candidate.vlan);
}

function createOnCarrier(nl: NetlinkSocket, spec: LinkSpec, candidate: Candidate): Omit<Allocation, 'candidate'> {
  const lower = candidate.lower;
  let carrier = carrierOf(nl, candidate);
  const passthru = spec.mode === 'passthru';
  // A passthru macvtap takes the lower device's MAC; any other gets its own.
  const mac = passthru ? undefined : (spec.mac ?? generateMac(libc.randomBytes));
  for (let attempt = 1; attempt <= CREATE_ATTEMPTS; attempt++) {
    const index = chooseIndex(nl);
    let link: Link;
    try {
      link = addMacvtap(nl, { lowerIndex: carrier.index, index, name: spec.ifname, mode: MODE_VALUES[spec.mode], mac, allmulti: candidate.allmulti, group: spec.group });
    } catch (err) {
      if (candidate.vlan !== undefined && err instanceof NetlinkError && err.code === 'ENODEV' && attempt < CREATE_ATTEMPTS) {
        debug('VLAN %s was pruned meanwhile; looking again', carrier.name);
        carrier = carrierOf(nl, candidate);
        continue;
      }
      if (err instanceof NetlinkError && (err.code === 'EEXIST' || err.code === 'EBUSY') && indexTakenByOther(nl, index, spec.group)) {
        debug('ifindex %d was taken meanwhile; choosing another', index);
        continue;
      }
      // The request may have been carried out although its answer was lost or the lookup failed.
      deleteIfOurs(nl, index, spec.group);
      const explained = explainCreateError(err, spec, lower, mac);
      throw isAboutMember(err) && explained instanceof HelperError ? new MemberFailure(explained, passthru && (err as NetlinkError).code === 'EINVAL') : explained;
    }
    try {
      if (link.lowerIndex !== carrier.index) {
        throw new HelperError(`the kernel put the macvtap on ifindex ${link.lowerIndex}, not on ${carrier.name} (ifindex ${carrier.index}) as asked`, `name the real lower device of ${lower.name}`);
      }
      if (!tapNodeIsOurs(link)) {
        // Another namespace's link took the same ifindex (and its node) in the instant between our look and our create.
        debug('/dev/tap%d belongs to another namespace now; choosing another ifindex', index);
        deleteLinkQuietly(nl, link);
        continue;
      }
      debug('created %s (ifindex %d) in mode %s on %s', link.name, link.index, spec.mode, lower.name);
      let lowerMacBefore: string | undefined;
      if (passthru && spec.mac && link.mac !== formatMac(spec.mac)) {
        lowerMacBefore = link.mac;
        try {
          setLinkAddress(nl, link.index, spec.mac);
        } catch (err) {
          const explained = explainCreateError(err, spec, lower, spec.mac);
          throw isAboutMember(err) && explained instanceof HelperError ? new MemberFailure(explained, false) : explained;
        }
        link = { ...link, mac: formatMac(spec.mac) };
      }
      const hostIpv6 = keepHostIpv6Off(nl, link);
      setLinkUp(nl, link.index);
      return { link, lowerMacBefore, hostIpv6 };
    } catch (err) {
      deleteLinkQuietly(nl, link);
      throw err;
    }
  }
  throw new HelperError(`every ifindex tried for the new link on ${lower.name} was taken meanwhile (${CREATE_ATTEMPTS} attempts)`, 'retry');
}

/** After EEXIST or EBUSY: whether the index is in use by a link that is not ours (rather than the name being taken). */
function indexTakenByOther(nl: NetlinkSocket, index: number, group: number): boolean {
  const there = getLinkByIndex(nl, index);
  return there !== undefined && there.group !== group;
}

/** Deletes the link at `index` if it carries this run's group mark: one this run created. */
function deleteIfOurs(nl: NetlinkSocket, index: number, group: number): void {
  try {
    const there = getLinkByIndex(nl, index);
    if (there && there.group === group && there.kind === 'macvtap') deleteLinkQuietly(nl, there);
  } catch (err) {
    writeErr(`cannot check whether ifindex ${index} was created after a failure: ${(err as Error).message}; check 'ip -d link' for a macvtap in group ${group}\n`);
  }
}

/** Turns the kernel's refusal into a cause and a fix a person can act on. */
function explainCreateError(err: unknown, spec: LinkSpec, lower: Link, mac: Buffer | undefined): unknown {
  if (!(err instanceof NetlinkError)) return err;
  const kernel = err.extAck ? ` (kernel: ${err.extAck})` : '';
  const macText = mac ? formatMac(mac) : 'its MAC';
  switch (err.code) {
    case 'EEXIST':
    case 'ENFILE':
      return new HelperError(`cannot create ${spec.ifname}: a link with that name already exists${kernel}`, 'choose another --ifname or leave it out');
    case 'EADDRINUSE':
      return new HelperError(`cannot use MAC ${macText} on ${lower.name}: the address is in use there${kernel}`, 'choose another --mac');
    case 'EADDRNOTAVAIL':
      return new HelperError(`${lower.name} refused MAC ${macText}${kernel}`, 'choose another --mac, or set it on the VF through its PF');
    case 'EBUSY':
      return new HelperError(`cannot create a macvtap on ${lower.name}: the device is busy (a bridge port or bond slave?)${kernel}`, 'use a device that is not enslaved');
    case 'EOPNOTSUPP':
      return new HelperError(`this kernel cannot create macvtap links${kernel}`, "load the module with 'modprobe macvtap'");
    case 'ENODEV':
      return new HelperError(`${lower.name} disappeared before the macvtap could be created on it${kernel}`, 'check the device and try again');
    case 'EINVAL':
      return new HelperError(`the kernel refused a ${spec.mode} macvtap on ${lower.name}${kernel}`,
        spec.mode === 'passthru'
          ? `${lower.name} must be an Ethernet device with no other macvtap or macvlan on it`
          : `check that ${lower.name} is an Ethernet device without a passthru macvtap on it`);
    default:
      return new HelperError(`cannot create a macvtap on ${lower.name}: ${err.message}`, 'rerun with DEBUG=qemu-net-helper:* to see each step');
  }
}

/** Deletes a link this helper made, after a failure; if even that fails, says how to do it by hand. */
export function deleteLinkQuietly(nl: NetlinkSocket, link: Link): void {
  try {
    deleteLink(nl, link.index);
    debug('rolled back: deleted %s', link.name);
  } catch (err) {
    writeErr(`cannot delete ${link.name} (ifindex ${link.index}) after a failure: ${(err as Error).message}; delete it with 'ip link del ${link.name}'\n`);
  }
}
