// Acting as the guest on a tap queue a helper handed over: frames go in and
// come out behind a virtio-net header (IFF_VNET_HDR, which the helpers set),
// and every wait is bounded in time and in frames, because a macvtap with
// IFF_ALLMULTI also queues whatever multicast the host's neighbours send
// (IPv6 neighbour discovery, MLD) in between.

import { readSync, writeSync } from 'node:fs';
import { POLLIN, VIRTIO_NET_HDR_LEN } from '../../lib/constants.ts';
import * as libc from '../../lib/libc.ts';

/** A bound on the frames any one wait reads: far more than a test's namespace produces in its time. */
const MAX_FRAMES = 1000;

/** Sends one Ethernet frame as the guest would (an all-zero vnet header: no offloads). */
export function writeTapFrame(fd: number, frame: Buffer): void {
  writeSync(fd, Buffer.concat([Buffer.alloc(VIRTIO_NET_HDR_LEN), frame]));
}

/** Waits up to timeoutMs for one frame; returns it without its vnet header, or undefined when none came. */
export function readTapFrame(fd: number, timeoutMs: number): Buffer | undefined {
  if (!(libc.pollOne(fd, POLLIN, Math.max(0, Math.ceil(timeoutMs))) & POLLIN)) return undefined;
  const buf = Buffer.alloc(65536);
  const n = readSync(fd, buf, 0, buf.length, null);
  return buf.subarray(VIRTIO_NET_HDR_LEN, n);
}

export interface AwaitedFrame {
  /** The first frame that matched, or undefined when none came in time. */
  frame: Buffer | undefined;
  /** The frames read before it (or before the time ran out), in order. */
  others: Buffer[];
}

/** Reads frames until one satisfies `matches`, for at most timeoutMs and MAX_FRAMES frames. */
export function awaitTapFrame(fd: number, matches: (frame: Buffer) => boolean, timeoutMs: number): AwaitedFrame {
  const deadline = performance.now() + timeoutMs;
  const others: Buffer[] = [];
  while (others.length < MAX_FRAMES) {
    const frame = readTapFrame(fd, deadline - performance.now());
    if (frame === undefined) break;
    if (matches(frame)) return { frame, others };
    others.push(frame);
  }
  return { frame: undefined, others };
}

/** Every frame queued right now (at most MAX_FRAMES), without waiting. */
export function drainTapQueue(fd: number): Buffer[] {
  const frames: Buffer[] = [];
  for (let f = readTapFrame(fd, 0); f && frames.length < MAX_FRAMES; f = readTapFrame(fd, 0)) frames.push(f);
  return frames;
}
