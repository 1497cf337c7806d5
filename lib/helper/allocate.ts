// Choosing the lower device and creating the macvtap on it.
//
// For a pool (an explicit list, or the VFs of an SR-IOV PF) members are tried
// in order. There is no lock: the kernel refuses a passthru macvtap on a
// device that already has any macvlan/macvtap (EINVAL), so two helpers racing
// for the same member cannot both win; the loser moves on to the next member.
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
import { MODE_VALUES } from '../modes.ts';
import { addMacvtap, deleteLink, listLinks, setLinkAddress, type Link } from '../netlink/link.ts';
import { NetlinkError, type NetlinkSocket } from '../netlink/socket.ts';
import type { CreateRequest } from './options.ts';

const debug = logger('allocate');

export interface Allocation {
  lower: Link;
  link: Link;
  /** The lower device's own MAC when --mac replaced it (passthru): to restore on release. */
  lowerMacBefore: string | undefined;
}

/** Called between the check that a device is free and the attempt to create on it (a fault-injection point for tests). */
export type BeforeCreate = (lower: Link) => void;



/** The lower devices a request may use: resolved (by ifindex from now on), authorized, in order. */
export interface Candidates {
  lowers: Link[];
  /** How the pool is called in messages, with its verb: "pool a,b is", "the VFs of pf0 are". */
  description: string;
  /** Whether more than one device was asked for (a pool): then busy members are skipped, not errors. */
  isPool: boolean;
  /** Members that do not exist, are not bound to a network driver, or that the policy does not allow. */
  missing: number;
  unusable: number;
  denied: number;
}

/** Creates the macvtap on the first free candidate; the caller owns (and must delete) the returned link. */
export function allocateLink(nl: NetlinkSocket, req: CreateRequest, candidates: Candidates, group: number, beforeCreate: BeforeCreate = () => {}): Allocation {
  if (!candidates.isPool) {
    const lower = candidates.lowers[0]!;
    beforeCreate(lower);
    return { lower, ...createOn(nl, req, lower, group, false) };
  }

  // Two dumps the kernel filters by kind: on a host with many other links,
  // far less than one dump of everything.
  const macvlans = [...listLinks(nl, 'macvtap'), ...listLinks(nl, 'macvlan')];
  const occupied = new Set(macvlans.flatMap((l) => (l.lowerIndex !== undefined ? [l.lowerIndex] : [])));
  let busy = 0;
  for (const lower of candidates.lowers) {
    if (occupied.has(lower.index)) {
      debug('pool member %s already has a macvtap', lower.name);
      busy++;
      continue;
    }
    try {
      beforeCreate(lower);
      return { lower, ...createOn(nl, req, lower, group, true) };
    } catch (err) {
      if (err instanceof MemberBusy) {
        debug('pool member %s was taken meanwhile', lower.name);
        busy++;
        continue;
      }
      throw err;
    }
  }
  const c = candidates;
  const total = c.lowers.length + c.missing + c.unusable + c.denied;
  const extra = [
    c.missing ? `${c.missing} do not exist` : '',
    c.unusable ? `${c.unusable} are not bound to a network driver` : '',
    c.denied ? `${c.denied} are not allowed to you` : '',
  ].filter(Boolean).join(', ');
  throw new HelperError(`${c.description} exhausted: ${busy} of ${total} members are busy${extra ? ` (${extra})` : ''}`,
    'wait for a guest to release one (qemu-net-helper-passthrough --gc collects those of dead guests), or add members');
}

/** The kernel said this pool member is taken (by another macvtap, passthru or not). */
class MemberBusy extends Error {}

function createOn(nl: NetlinkSocket, req: CreateRequest, lower: Link, group: number, inPool: boolean): { link: Link; lowerMacBefore: string | undefined } {
  const passthru = req.mode === 'passthru';
  // A passthru macvtap takes the lower device's MAC; any other gets its own.
  const mac = passthru ? undefined : (req.mac ?? generateMac(libc.randomBytes));
  let link: Link;
  let lowerMacBefore: string | undefined;
  try {
    link = addMacvtap(nl, { lowerIndex: lower.index, name: req.ifname, mode: MODE_VALUES[req.mode], mac, up: true, group });
  } catch (err) {
    if (passthru && inPool && err instanceof NetlinkError && (err.code === 'EINVAL' || err.code === 'EBUSY')) {
      throw new MemberBusy(err.message);
    }
    throw explainCreateError(err, req, lower, mac);
  }
  debug('created %s (ifindex %d) in mode %s on %s', link.name, link.index, req.mode, lower.name);
  if (passthru && req.mac && link.mac !== formatMac(req.mac)) {
    try {
      lowerMacBefore = link.mac;
      setLinkAddress(nl, link.index, req.mac);
      link = { ...link, mac: formatMac(req.mac) };
    } catch (err) {
      deleteLinkQuietly(nl, link);
      throw explainCreateError(err, req, lower, req.mac);
    }
  }
  return { link, lowerMacBefore };
}

/** Turns the kernel's refusal into a cause and a fix a person can act on. */
function explainCreateError(err: unknown, req: CreateRequest, lower: Link, mac: Buffer | undefined): unknown {
  if (!(err instanceof NetlinkError)) return err;
  const kernel = err.extAck ? ` (kernel: ${err.extAck})` : '';
  const macText = mac ? formatMac(mac) : 'its MAC';
  switch (err.code) {
    case 'EEXIST':
    case 'ENFILE':
      return new HelperError(`cannot create ${req.ifname}: a link with that name already exists${kernel}`, 'choose another --ifname or leave it out');
    case 'EADDRINUSE':
      return new HelperError(`cannot use MAC ${macText} on ${lower.name}: the address is in use there${kernel}`, 'choose another --mac');
    case 'EADDRNOTAVAIL':
      return new HelperError(`${lower.name} refused MAC ${macText}${kernel}`, 'choose another --mac, or set it on the VF through its PF');
    case 'EBUSY':
      return new HelperError(`cannot create a macvtap on ${lower.name}: the device is busy (a bridge port or bond slave?)${kernel}`, 'use a device that is not enslaved');
    case 'EOPNOTSUPP':
      return new HelperError(`this kernel cannot create macvtap links${kernel}`, "load the module with 'modprobe macvtap'");
    case 'EINVAL':
      return new HelperError(`the kernel refused a ${req.mode} macvtap on ${lower.name}${kernel}`,
        req.mode === 'passthru'
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
