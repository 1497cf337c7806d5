// Opening a queue of a macvtap, in a way that cannot be fooled into opening
// something else, and without ever creating a filesystem object.
//
// The kernel names a macvtap's character device /dev/tap<ifindex>, but
// ifindex is per network namespace while /dev is one devtmpfs for all of
// them: /dev/tap4 may be the macvtap with ifindex 4 of *another* namespace,
// and ours may have no node at all (docs/security.md, "Device nodes"). So the
// helper chooses the new link's ifindex itself, one whose /dev/tap<ifindex>
// does not exist yet (lib/helper/allocate.ts), and then:
//   1. learns our device number from sysfs (which `ip netns exec` mounts for
//      the namespace), after checking that sysfs describes our link;
//   2. uses /dev/tap<ifindex> only if lstat() shows a character device with
//      exactly that number, opened without O_CREAT and without following links,
//      and checked again with fstat() after the open.
// A node that is not ours is an error, never a reason to make one: a node
// made by the helper could be kept (hard-linked) by whoever can reach its
// directory, and reach a later link that gets the same device number.
// The queue flags are then set (TUNSETIFF) and read back (TUNGETIFF).

import { logger } from './log.ts';
import { lstatSync, readFileSync } from 'node:fs';
import {
  O_RDWR, O_CLOEXEC, O_NOCTTY, O_NOFOLLOW, S_IFMT, S_IFCHR, TUNSETIFF, TUNGETIFF, IFF_TAP, IFF_NO_PI,
  IFF_VNET_HDR, IFF_MULTI_QUEUE, IFREQ_SIZE, IFNAMSIZ, makedev, TUNGETVNETHDRSZ, TUNSETOFFLOAD,
  TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_UFO, TUN_F_USO4, TUN_F_USO6,
} from './constants.ts';
import * as libc from './libc.ts';
import { DAC_OVERRIDE, withCapabilities } from './privileges.ts';
import { HelperError } from './errors.ts';
import { ifnameProblem } from './names.ts';

const debug = logger('tap');

export interface TapQueueOptions {
  /** Prepend a virtio_net_hdr to every frame (IFF_VNET_HDR); QEMU's --use-vnet. */
  vnetHdr: boolean;
  /** Mark the queue IFF_MULTI_QUEUE (for a link with several queues). */
  multiQueue?: boolean;
}

/** Where the paths come from: fixed in production, moved by tests only. */
export interface TapPaths {
  sysClassNet: string;
  dev: string;
}

const DEFAULT_PATHS: TapPaths = { sysClassNet: '/sys/class/net', dev: '/dev' };

export interface OpenedQueue {
  fd: number;
}

/** The path of the character device the kernel makes for the macvtap with this ifindex. */
export function tapNodePath(index: number, paths: TapPaths = DEFAULT_PATHS): string {
  return `${paths.dev}/tap${index}`;
}

/** Whether anything at all is at /dev/tap<index> (a node of some namespace's link, or anything else). */
export function tapNodeExists(index: number, paths: TapPaths = DEFAULT_PATHS): boolean {
  try {
    lstatSync(tapNodePath(index, paths));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    return true; // cannot tell: treat as taken
  }
}

/** Whether /dev/tap<ifindex> is the character device of `link` itself (not another namespace's link). */
export function tapNodeIsOurs(link: { name: string; index: number }, paths: TapPaths = DEFAULT_PATHS): boolean {
  return sharedNodeProblem(tapNodePath(link.index, paths), tapDeviceNumber(link, paths)) === undefined;
}

/** Reads "MAJOR:MINOR" of the macvtap's char device from sysfs, after checking sysfs shows our link. */
export function tapDeviceNumber(link: { name: string; index: number }, paths: TapPaths = DEFAULT_PATHS): bigint {
  if (ifnameProblem(link.name)) throw new Error(`refusing to build a sysfs path from link name ${JSON.stringify(link.name)}`);
  const base = `${paths.sysClassNet}/${link.name}`;
  let sysIndex: string;
  try {
    sysIndex = readFileSync(`${base}/ifindex`, 'utf8').trim();
  } catch {
    throw new HelperError(`${base} does not exist, although the kernel just created ${link.name}`,
      "/sys belongs to another network namespace: run the helper with /sys mounted for its own namespace, as 'ip netns exec' does");
  }
  if (sysIndex !== String(link.index)) {
    throw new HelperError(`${base} has ifindex ${sysIndex}, but our ${link.name} has ifindex ${link.index}`,
      "/sys belongs to another network namespace: run the helper with /sys mounted for its own namespace, as 'ip netns exec' does");
  }
  const text = readFileSync(`${base}/macvtap/tap${link.index}/dev`, 'utf8');
  const m = /^([0-9]{1,9}):([0-9]{1,9})\n?$/.exec(text);
  if (!m) throw new Error(`unexpected contents of ${base}/macvtap/tap${link.index}/dev: ${JSON.stringify(text)}`);
  return makedev(Number(m[1]), Number(m[2]));
}

function isCharDevice(mode: number, rdev: bigint, expected: bigint): boolean {
  return (mode & S_IFMT) === S_IFCHR && rdev === expected;
}

const OPEN_FLAGS = O_RDWR | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW;

function openVerified(path: string, expected: bigint): number {
  // devtmpfs makes the node root's, mode 0600: CAP_DAC_OVERRIDE for the open only.
  const fd = withCapabilities(DAC_OVERRIDE, () => libc.open(path, OPEN_FLAGS));
  try {
    const st = libc.fstat(fd);
    if (!isCharDevice(st.mode, st.rdev, expected)) {
      throw new Error(`${path} changed under us: it is not the character device ${expected}`);
    }
    return fd;
  } catch (err) {
    libc.closeQuietly(fd);
    throw err;
  }
}

/** Why `path` is not the character device `expected`, or undefined when it is. */
function sharedNodeProblem(path: string, expected: bigint): string | undefined {
  let st;
  try {
    st = lstatSync(path, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return `${path} does not exist (its ifindex collides with a link in another namespace)`;
    return `${path}: ${(err as Error).message}`;
  }
  if (!isCharDevice(Number(st.mode), st.rdev, expected)) return `${path} is not its character device (it belongs to a link in another namespace)`;
  return undefined;
}

function setQueueFlags(fd: number, linkName: string, opts: TapQueueOptions): void {
  const wanted = IFF_TAP | IFF_NO_PI | (opts.vnetHdr ? IFF_VNET_HDR : 0) | (opts.multiQueue ? IFF_MULTI_QUEUE : 0);
  const ifr = Buffer.alloc(IFREQ_SIZE);
  ifr.writeUInt16LE(wanted, IFNAMSIZ);
  libc.ioctlPtr(fd, TUNSETIFF, ifr, 'TUNSETIFF');
  const got = readQueueInfo(fd);
  if (got.name !== linkName) throw new Error(`the opened queue belongs to ${got.name}, not ${linkName}`);
  if ((got.flags & wanted) !== wanted || (!opts.vnetHdr && got.flags & IFF_VNET_HDR)) {
    throw new Error(`queue flags are 0x${got.flags.toString(16)} after asking for 0x${wanted.toString(16)}`);
  }
}

/** TUNGETIFF: the link a queue belongs to and the queue's flags. */
export function readQueueInfo(fd: number): { name: string; flags: number } {
  const ifr = Buffer.alloc(IFREQ_SIZE);
  libc.ioctlPtr(fd, TUNGETIFF, ifr, 'TUNGETIFF');
  const nameBytes = ifr.subarray(0, IFNAMSIZ);
  const end = nameBytes.indexOf(0);
  return { name: nameBytes.subarray(0, end < 0 ? IFNAMSIZ : end).toString('utf8'), flags: ifr.readUInt16LE(IFNAMSIZ) };
}

/** Opens one queue of the macvtap `link` and sets its flags. The caller owns the fd. */
export function openTapQueue(link: { name: string; index: number }, opts: TapQueueOptions, paths: TapPaths = DEFAULT_PATHS): OpenedQueue {
  const expected = tapDeviceNumber(link, paths);
  const path = tapNodePath(link.index, paths);
  const problem = sharedNodeProblem(path, expected);
  if (problem) {
    throw new HelperError(`cannot open a queue of ${link.name}: ${problem}`,
      'give the link an ifindex whose /dev/tapN is free (the helpers choose one themselves)');
  }
  const fd = openVerified(path, expected);
  try {
    setQueueFlags(fd, link.name, opts);
  } catch (err) {
    libc.closeQuietly(fd);
    throw err;
  }
  debug('opened a queue of %s (ifindex %d): fd %d', link.name, link.index, fd);
  return { fd };
}

/** TUNGETVNETHDRSZ: the size of the virtio-net header this queue reads and writes. */
export function readVnetHdrSize(fd: number): number {
  const buf = Buffer.alloc(4);
  libc.ioctlPtr(fd, TUNGETVNETHDRSZ, buf, 'TUNGETVNETHDRSZ');
  return buf.readInt32LE(0);
}

const OFFLOADS: ReadonlyArray<[string, number]> = [
  ['csum', TUN_F_CSUM], ['tso4', TUN_F_TSO4], ['tso6', TUN_F_TSO6], ['tso_ecn', TUN_F_TSO_ECN],
  ['ufo', TUN_F_UFO], ['uso4', TUN_F_USO4], ['uso6', TUN_F_USO6],
];

/**
 * The offloads the kernel accepts on this queue, each tried with TUNSETOFFLOAD
 * (segmentation offloads together with checksum offload, which they need),
 * then all switched off again: QEMU sets what the guest negotiates, and starts
 * from none itself.
 */
export function probeOffloads(fd: number): string[] {
  const accepted: string[] = [];
  for (const [name, flag] of OFFLOADS) {
    try {
      libc.ioctlInt(fd, TUNSETOFFLOAD, flag | TUN_F_CSUM, 'TUNSETOFFLOAD');
      accepted.push(name);
    } catch (err) {
      if (!(err instanceof libc.SysError && err.code === 'EINVAL')) throw err;
    }
  }
  libc.ioctlInt(fd, TUNSETOFFLOAD, 0, 'TUNSETOFFLOAD');
  return accepted;
}
