// vhost-net fds for a guest's queues: one open of /dev/vhost-net per queue.
//
// The helper never issues VHOST_SET_OWNER: QEMU does that on every vhost fd
// it is handed, and an fd already owned by the (exiting) helper would be
// useless to it. It only reads VHOST_GET_FEATURES, to report them.
//
// The opener is injectable because /dev/vhost-net does not exist on every
// machine (nor on the test machines): tests drive the success path through
// a fake opener; production always uses openVhostNetDevice().

import {
  O_RDWR, O_CLOEXEC, O_NOCTTY, O_NOFOLLOW, S_IFMT, S_IFCHR, VHOST_GET_FEATURES, MISC_MAJOR, VHOST_NET_MINOR, makedev,
} from './constants.ts';
import * as libc from './libc.ts';
import { DAC_OVERRIDE, withCapabilities } from './privileges.ts';

export type VhostMode = 'on' | 'off' | 'try';

export const VHOST_NET_PATH = '/dev/vhost-net';

/** How vhost fds are made; production: openVhostNetDevice and readVhostFeatures. */
export interface VhostOpener {
  open(): number;
  features(fd: number): bigint | undefined;
}

/** Opens /dev/vhost-net, checking it is the vhost-net character device (10:238), not a planted file. */
export function openVhostNetDevice(): number {
  // Root's node (0600 or 0660 root:kvm): CAP_DAC_OVERRIDE for the open only.
  const fd = withCapabilities(DAC_OVERRIDE, () => libc.open(VHOST_NET_PATH, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW));
  const st = libc.fstat(fd);
  if ((st.mode & S_IFMT) !== S_IFCHR || st.rdev !== makedev(MISC_MAJOR, VHOST_NET_MINOR)) {
    libc.closeQuietly(fd);
    throw new Error(`${VHOST_NET_PATH} is not the vhost-net character device ${MISC_MAJOR}:${VHOST_NET_MINOR}`);
  }
  return fd;
}

/** VHOST_GET_FEATURES, or undefined when the kernel does not answer it. */
export function readVhostFeatures(fd: number): bigint | undefined {
  const buf = Buffer.alloc(8);
  try {
    libc.ioctlPtr(fd, VHOST_GET_FEATURES, buf, 'VHOST_GET_FEATURES');
  } catch {
    return undefined;
  }
  return buf.readBigUInt64LE(0);
}

export const SYSTEM_VHOST: VhostOpener = { open: openVhostNetDevice, features: readVhostFeatures };

export type VhostResult =
  | { enabled: true; fds: number[]; features: bigint | undefined }
  | { enabled: false; fds: []; reason: string | undefined };

/** Thrown for --vhost=on when vhost-net cannot be had. */
export class VhostUnavailableError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'VhostUnavailableError';
  }
}

/**
 * Opens one vhost-net fd per queue. 'off' opens nothing; 'try' falls back
 * to no vhost, with the reason, when any open fails; 'on' throws. On any
 * failure every fd opened so far is closed.
 */
export function openVhostQueues(queues: number, mode: VhostMode, opener: VhostOpener = SYSTEM_VHOST): VhostResult {
  if (mode === 'off') return { enabled: false, fds: [], reason: undefined };
  const fds: number[] = [];
  try {
    for (let i = 0; i < queues; i++) fds.push(opener.open());
  } catch (err) {
    libc.closeQuietly(...fds);
    const reason = `cannot open ${VHOST_NET_PATH}: ${err instanceof libc.SysError ? `${err.code} (${libc.describeErrno(err.errno)})` : (err as Error).message}`;
    if (mode === 'on') throw new VhostUnavailableError(reason);
    return { enabled: false, fds: [], reason };
  }
  return { enabled: true, fds, features: opener.features(fds[0]!) };
}
