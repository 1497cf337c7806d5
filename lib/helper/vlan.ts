// The 802.1Q VLAN a macvtap goes on with --vlan=ID (or a policy network's
// `vlan ID`): the VLAN sub-interface of the lower device for that id.
//
// One that exists is used, whoever made it (an administrator's eth0.100 is
// the same network); only an 802.1Q one of this namespace's device counts.
// A missing one is made by the helper: named qnhvlan%d (not a name a caller
// can give), marked with VLAN_GROUP, created down, the host's IPv6 turned off
// on it as on a macvtap (lib/host-ipv6.ts: otherwise the host itself would
// join that VLAN by SLAAC), then brought up; its making is audited.
//
// A helper-made VLAN link belongs to no one. It is deleted once nothing sits
// on it (pruneVlans), but only by root's runs (the gc timer, root's --gc,
// --release and rollbacks): a check that it is empty and the deletion are two
// steps, and an unprivileged caller can stop its own helper between them
// (SIGSTOP) until another user's guest is on the VLAN, whose link the kernel
// would then delete with it. Root's runs cannot be stopped by users.
//
// A run about to put its macvtap on a VLAN that root's prune takes sees
// ENODEV and looks again (allocate.ts); each prune looks at the VLAN's users
// just before deleting it.

import { audit, auditField } from '../audit.ts';
import { HelperError } from '../errors.ts';
import { logger } from '../log.ts';
import { writeErr } from '../output.ts';
import { keepHostIpv6Off } from '../host-ipv6.ts';
import { addVlan, deleteLink, findVlan, listLinks, setLinkUp, type Link } from '../netlink/link.ts';
import { NetlinkError, type NetlinkSocket } from '../netlink/socket.ts';

const debug = logger('vlan');

/** The device group of VLAN links the helpers made. Not GROUP_MARK's prefix (lib/owner.ts): never taken for a helper macvtap. */
export const VLAN_GROUP = 0x52564c4e;
export const VLAN_NAME_TEMPLATE = 'qnhvlan%d';
const AUDIT_TAG = 'qemu-net-helper';

/** The VLAN link of `id` on `lower`, made when missing. */
export function vlanCarrier(nl: NetlinkSocket, lower: Link, id: number): Link {
  const found = findVlan(nl, lower.index, id);
  if (found) {
    debug('VLAN %d of %s is %s', id, lower.name, found.name);
    return found;
  }
  let made: Link;
  try {
    made = addVlan(nl, { lowerIndex: lower.index, id, name: VLAN_NAME_TEMPLATE, group: VLAN_GROUP });
  } catch (err) {
    if (!(err instanceof NetlinkError)) throw err;
    // Made by another run in the meantime.
    const again = err.code === 'EEXIST' ? findVlan(nl, lower.index, id) : undefined;
    if (again) return again;
    const kernel = err.extAck ? ` (kernel: ${err.extAck})` : '';
    if (err.code === 'EOPNOTSUPP') throw new HelperError(`this kernel cannot make VLAN ${id} on ${lower.name}: it has no 802.1Q support${kernel}`, "load it with 'modprobe 8021q'");
    throw new HelperError(`cannot make VLAN ${id} on ${lower.name}: ${err.message}`, 'check the device (ip -d link show), or make the VLAN by hand and retry');
  }
  try {
    keepHostIpv6Off(nl, made);
    setLinkUp(nl, made.index);
  } catch (err) {
    // Nothing can be on it yet but a macvtap of a run that found it in this instant, which then fails cleanly.
    try {
      deleteLink(nl, made.index);
    } catch {
      writeErr(`cannot delete ${made.name} after a failure; delete it with 'ip link del ${made.name}'\n`);
    }
    throw err;
  }
  audit(AUDIT_TAG, 'notice', [auditField('uid', String(process.getuid?.() ?? -1)), auditField('action', 'create'), auditField('ifname', made.name, true),
    auditField('ifindex', String(made.index)), auditField('lower', lower.name, true), auditField('vlan', String(id))].join(' '));
  debug('made %s: VLAN %d of %s', made.name, id, lower.name);
  return made;
}

/**
 * Whether anything uses the VLAN link `vlan`: a link of any kind on it (macvtap, macvlan,
 * another VLAN, ipvlan) or a bridge or bond it was made a port of (an administrator who
 * adopted it). One dump of every link: this runs in root's collection only.
 */
function inUse(nl: NetlinkSocket, vlan: Link): boolean {
  if (vlan.masterIndex !== undefined) return true;
  return listLinks(nl).some((l) => l.index !== vlan.index && l.lowerIndex === vlan.index && !l.lowerInOtherNetns);
}

/** Deletes every VLAN link the helpers made that nothing sits on; returns their names. Never fails the run. Root's runs only (see the top). */
export function pruneVlans(nl: NetlinkSocket): string[] {
  const pruned: string[] = [];
  try {
    for (const vlan of listLinks(nl, 'vlan').filter((l) => l.group === VLAN_GROUP)) {
      if (inUse(nl, vlan)) continue;
      try {
        // Decided, logged, then done.
        audit(AUDIT_TAG, 'notice', [auditField('uid', String(process.getuid?.() ?? -1)), auditField('action', 'delete'), auditField('ifname', vlan.name, true),
          auditField('ifindex', String(vlan.index)), auditField('vlan', String(vlan.vlanId)), auditField('reason', 'a VLAN link of the helpers with nothing on it', true)].join(' '));
        deleteLink(nl, vlan.index);
        pruned.push(vlan.name);
        debug('deleted %s (VLAN %d): nothing is on it any more', vlan.name, vlan.vlanId);
      } catch (err) {
        if (!(err instanceof NetlinkError && err.code === 'ENODEV')) throw err;
      }
    }
  } catch (err) {
    writeErr(`cannot delete unused VLAN links of the helpers: ${(err as Error).message}; 'ip -d link show group ${VLAN_GROUP}' lists them\n`);
  }
  return pruned;
}
