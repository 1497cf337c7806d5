// Ethernet addresses: parsing the user's --mac, and making one when none is given.

import { UsageError } from './errors.ts';

/** QEMU's own prefix (52:54:00), which libvirt also uses for generated guest MACs. */
const GENERATED_PREFIX = [0x52, 0x54, 0x00];

const MAC_TEXT = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/**
 * What is wrong with a MAC address as written, for a message that names the
 * option ("--mac=TEXT " + cause; fix), or undefined when it is a usable unicast
 * address. The helpers' --mac and the launcher's mac=/macaddr= share it.
 */
export function macProblem(text: string): { cause: string; fix: string } | undefined {
  if (!MAC_TEXT.test(text)) return { cause: 'is not a MAC address', fix: 'write it as six hex pairs such as 52:54:00:12:34:56' };
  const first = parseInt(text.slice(0, 2), 16);
  if (first & 1) return { cause: 'is a multicast address', fix: 'use a unicast address (the lowest bit of the first byte clear), such as 52:54:00:12:34:56' };
  if (/^(00:){5}00$/.test(text)) return { cause: 'is not usable', fix: 'give a real unicast address' };
  return undefined;
}

/** Parses aa:bb:cc:dd:ee:ff (case-insensitive); refuses multicast and all-zero addresses. */
export function parseMac(text: string): Buffer {
  const problem = macProblem(text);
  // Text that is no MAC at all is quoted: it may hold anything.
  if (problem) throw new UsageError(`--mac=${MAC_TEXT.test(text) ? text : JSON.stringify(text)} ${problem.cause}`, problem.fix);
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
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
