// Everything a guest needs from one macvtap: N tap queues, optionally N
// vhost-net fds, and the facts about them that go into the record.
// All or nothing: on failure every fd opened here is closed.

import * as libc from '../libc.ts';
import { openTapQueue, probeOffloads, readVnetHdrSize } from '../tap.ts';
import { openVhostQueues, SYSTEM_VHOST, type VhostMode, type VhostOpener } from '../vhost.ts';

export interface QueueSet {
  tapFds: number[];
  vhostFds: number[];
  multiQueue: boolean;
  vnetHdrSize: number;
  offloads: string[];
  vhostFeatures: bigint | undefined;
  /** Why vhost is off although it was tried. */
  vhostError: string | undefined;
  close(): void;
}

export interface QueueRequest {
  queues: number;
  vnetHdr: boolean;
  vhost: VhostMode;
}

export function openQueueSet(link: { name: string; index: number }, req: QueueRequest, vhostOpener: VhostOpener = SYSTEM_VHOST): QueueSet {
  const multiQueue = req.queues > 1;
  const tapFds: number[] = [];
  try {
    for (let i = 0; i < req.queues; i++) tapFds.push(openTapQueue(link, { vnetHdr: req.vnetHdr, multiQueue }).fd);
    const vnetHdrSize = readVnetHdrSize(tapFds[0]!);
    const offloads = probeOffloads(tapFds[0]!);
    const vhost = openVhostQueues(req.queues, req.vhost, vhostOpener);
    return {
      tapFds,
      vhostFds: vhost.fds,
      multiQueue,
      vnetHdrSize,
      offloads,
      vhostFeatures: vhost.enabled ? vhost.features : undefined,
      vhostError: vhost.enabled ? undefined : vhost.reason,
      close: () => libc.closeQuietly(...tapFds, ...vhost.fds),
    };
  } catch (err) {
    libc.closeQuietly(...tapFds);
    throw err;
  }
}
