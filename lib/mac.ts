// Ethernet addresses: parsing the user's --mac, and making one when none is given.

import { UsageError } from './errors.ts';

/** QEMU's own prefix (52:54:00), which libvirt also uses for generated guest MACs. */
const GENERATED_PREFIX = [0x52, 0x54, 0x00];

/** Parses aa:bb:cc:dd:ee:ff (case-insensitive); refuses multicast and all-zero addresses. */
export function parseMac(text: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text)) {
    throw new UsageError(`--mac=${JSON.stringify(text)} is not a MAC address`, 'write it as six hex pairs such as 52:54:00:12:34:56');
  }
  const mac = Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
  if (mac[0]! & 1) {
    throw new UsageError(`--mac=${text} is a multicast address`, 'use a unicast address (the lowest bit of the first byte clear), such as 52:54:00:12:34:56');
  }
  if (mac.every((b) => b === 0)) throw new UsageError('--mac=00:00:00:00:00:00 is not usable', 'give a real unicast address');
  return mac;
}

export function formatMac(mac: Buffer): string {
  return [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * A random address under QEMU's prefix: what a guest gets when the caller
 * names none. The random source is the caller's (the helpers use getrandom(2)
 * through lib/libc.ts: loading node:crypto for three bytes cost 6 ms a run).
 */
export function generateMac(random: (n: number) => Buffer): Buffer {
  return Buffer.from([...GENERATED_PREFIX, ...random(3)]);
}
