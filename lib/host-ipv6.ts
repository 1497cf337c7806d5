// Keeps the host's IPv6 off a macvtap that a guest uses.
//
// A macvtap is the guest's NIC seen from the host. If the host configures
// IPv6 on it (a link-local address, SLAAC from router advertisements), the
// host answers neighbour discovery for addresses the guest's MAC derives,
// joins multicast groups in the guest's name and may take the guest's own
// EUI-64 address. So every helper-made macvtap gets disable_ipv6=1 before it
// is brought up, when no address can have been configured yet.
//
// There is no rtnetlink request for it (IFLA_INET6_CONF is read-only; only
// the token and addr_gen_mode can be set), so it is the sysctl file, written
// in the helper's own network namespace (/proc/sys/net follows the opener's)
// with CAP_NET_ADMIN, which the kernel's net sysctl permission check honours
// in place of root's ownership. The caller of turnOffHostIpv6 reads the
// result back through rtnetlink (getLinkIpv6Disabled), the kernel's own word.

import { writeSync } from 'node:fs';
import { IPV6_CONF_DIR, O_CLOEXEC, O_NOFOLLOW, O_WRONLY } from './constants.ts';
import { HelperError } from './errors.ts';
import * as libc from './libc.ts';
import { getLinkIpv6Disabled, type Link } from './netlink/link.ts';
import type { NetlinkSocket } from './netlink/socket.ts';
import { NET_ADMIN, withCapabilities } from './privileges.ts';

/** 'off': disable_ipv6 is 1 now. 'absent': this namespace has no IPv6 for the device (no module, ipv6.disable=1, an MTU under 1280). */
export type HostIpv6 = 'off' | 'absent';

/** Writes disable_ipv6=1 for device `name`; throws (with errno) when the file exists and cannot be written. */
export function turnOffHostIpv6(name: string): HostIpv6 {
  if (!/^[^/\0]{1,15}$/.test(name) || name === '.' || name === '..') throw new Error(`${JSON.stringify(name)} is not a device name`);
  const path = `${IPV6_CONF_DIR}/${name}/disable_ipv6`;
  let fd: number;
  try {
    fd = withCapabilities(NET_ADMIN, () => libc.open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw err;
  }
  try {
    // The kernel checks the permission again on write: the capability must be effective here too.
    withCapabilities(NET_ADMIN, () => writeSync(fd, '1\n'));
  } finally {
    libc.closeQuietly(fd);
  }
  return 'off';
}

/** disable_ipv6 on the new (still down) link, confirmed by the kernel's own report of it. */
export function keepHostIpv6Off(nl: NetlinkSocket, link: Link): HostIpv6 {
  let result: HostIpv6;
  try {
    result = turnOffHostIpv6(link.name);
  } catch (err) {
    throw new HelperError(`cannot turn the host's IPv6 off on ${link.name}: ${(err as Error).message}`,
      'the helper needs a writable /proc/sys/net/ipv6 in its network namespace (a container may mount /proc/sys read-only)');
  }
  const reported = getLinkIpv6Disabled(nl, link.index);
  if (result === 'off' && reported !== true) throw new HelperError(`the kernel does not report IPv6 off on ${link.name} after disable_ipv6 was written (it says ${reported === undefined ? 'no IPv6' : 'on'})`, 'report this as a bug');
  if (result === 'absent' && reported !== undefined) {
    throw new HelperError(`${link.name} has IPv6 (the kernel reports it) but no entry under /proc/sys/net/ipv6/conf`, "check that the helper sees this network namespace's /proc/sys");
  }
  return result;
}
