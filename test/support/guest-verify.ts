/**
 * End-to-end proof that a QEMU guest NIC works through a Linux macvtap, with no project
 * code involved (it checks the test-support guest itself, and documents the plumbing):
 *
 *   netns A: v0 (veth) ── mt0 (macvtap, mode vepa, MAC M, explicit random ifindex N)
 *   netns B: v1 (veth peer of v0), 169.254.77.1/16
 *   `ip netns exec A qemu-system-x86_64 ... -netdev tap,id=n0,fd=3
 *        -device virtio-net-pci,netdev=n0,mac=<guest MAC>`   (fd 3 = /dev/tapN opened r+)
 *   guest: eth0 169.254.77.2/16, pings 169.254.77.1, prints QNH-GUEST-RESULT: ping=ok|fail
 *
 * With guest MAC == M the ping succeeds; with any other MAC it fails (the macvtap only
 * delivers frames addressed to its own MAC).
 *
 * Needs root. Run: `node test/support/guest-verify.ts [--cache-dir DIR] [--verbose]`
 * (exit 0 when the positive case printed ping=ok and the negative case ping=fail).
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildGuestImage, guestQemuArgs, runGuest, QEMU_BINARY, type GuestImage, type GuestRunResult } from './guest.ts';

export interface MacvtapGuestOptions {
  /** Image to boot; default `buildGuestImage({ cacheDir })`. */
  image?: GuestImage;
  cacheDir?: string;
  /** MAC of the macvtap; default a random 52:54:00:xx:xx:xx. */
  tapMac?: string;
  /** MAC of the guest NIC; default `tapMac` (any other value must make the ping fail). */
  guestMac?: string;
  /** default 169.254.77.2/16 */
  guestIp?: string;
  /** default 169.254.77.1/16 (the address goes on v1 in netns B; the guest pings its address part) */
  peerCidr?: string;
  pingCount?: number;
  /** Bound on the QEMU run; default 120 s. */
  timeoutMs?: number;
  log?: (s: string) => void;
  /** Streams the guest console. */
  onConsole?: (chunk: string) => void;
}

export interface MacvtapGuestResult extends GuestRunResult {
  tapMac: string;
  guestMac: string;
  tapIndex: number;
  namespaces: [string, string];
}

/** Namespaces created and not yet deleted (deleted by {@link cleanupSync} on a signal). */
const liveNamespaces = new Set<string>();

function ip(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

export function randomMac(): string {
  return ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** Same MAC with the last byte changed. */
export function otherMac(mac: string): string {
  const parts = mac.split(':');
  const last = parseInt(parts[5] ?? '0', 16);
  parts[5] = ((last + 1) & 0xff).toString(16).padStart(2, '0');
  return parts.join(':');
}

function devNumbers(p: string): { major: number; minor: number } {
  const rdev = fs.statSync(p, { bigint: true }).rdev;
  // glibc's encoding of dev_t
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}

async function waitFor(cond: () => boolean, timeoutMs: number, stepMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Deletes every namespace this module created and still holds (synchronous: usable from signal handlers). */
export function cleanupSync(): void {
  for (const ns of liveNamespaces) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
    liveNamespaces.delete(ns);
  }
}

/** Sets up the two namespaces, veth pair and macvtap, boots the guest on the tap, tears everything down. */
export async function runGuestThroughMacvtap(o: MacvtapGuestOptions = {}): Promise<MacvtapGuestResult> {
  const log = o.log ?? (() => {});
  const image = o.image ?? (await buildGuestImage({ cacheDir: o.cacheDir, log }));
  const tapMac = (o.tapMac ?? randomMac()).toLowerCase();
  const guestMac = (o.guestMac ?? tapMac).toLowerCase();
  const guestIp = o.guestIp ?? '169.254.77.2/16';
  const peerCidr = o.peerCidr ?? '169.254.77.1/16';
  const peerIp = peerCidr.split('/')[0]!;
  const tag = `qnhg-${process.pid}-${randomBytes(3).toString('hex')}`;
  const nsA = `${tag}-a`;
  const nsB = `${tag}-b`;
  let fd: number | undefined;
  let tapIndex = -1;
  let tapPath = '';

  try {
    for (const ns of [nsA, nsB]) {
      await ip(['netns', 'add', ns]);
      liveNamespaces.add(ns);
    }
    await ip(['-n', nsA, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1', 'netns', nsB]);
    await ip(['-n', nsB, 'addr', 'add', peerCidr, 'dev', 'v1']);
    await ip(['-n', nsB, 'link', 'set', 'lo', 'up']);
    await ip(['-n', nsB, 'link', 'set', 'v1', 'up']);
    await ip(['-n', nsA, 'link', 'set', 'v0', 'up']);

    // /dev is shared by all namespaces and /dev/tap<ifindex> is named by ifindex only: use an
    // explicit random index whose node does not exist yet, then check the node is ours.
    for (let i = 0; i < 50 && tapIndex < 0; i++) {
      const idx = 4000 + (randomBytes(2).readUInt16LE(0) % 60000);
      if (!fs.existsSync(`/dev/tap${idx}`)) tapIndex = idx;
    }
    if (tapIndex < 0) throw new Error('no free /dev/tapN name found');
    tapPath = `/dev/tap${tapIndex}`;
    await ip(['-n', nsA, 'link', 'add', 'link', 'v0', 'name', 'mt0', 'index', String(tapIndex), 'address', tapMac, 'type', 'macvtap', 'mode', 'vepa']);
    await ip(['-n', nsA, 'link', 'set', 'mt0', 'up']);

    if (!(await waitFor(() => fs.existsSync(tapPath), 5000))) throw new Error(`${tapPath} did not appear`);
    const st = fs.statSync(tapPath);
    if (!st.isCharacterDevice()) throw new Error(`${tapPath} is not a character device`);
    const sysDev = (
      await new Promise<string>((resolve, reject) =>
        execFile('ip', ['netns', 'exec', nsA, 'cat', `/sys/class/net/mt0/macvtap/tap${tapIndex}/dev`], (err, out) => (err ? reject(err) : resolve(String(out)))),
      )
    ).trim();
    const { major, minor } = devNumbers(tapPath);
    if (sysDev !== `${major}:${minor}`) throw new Error(`${tapPath} is ${major}:${minor} but mt0's tap is ${sysDev}: another namespace's device`);
    fd = fs.openSync(tapPath, 'r+');
    log(`netns ${nsA}: mt0 index ${tapIndex} mac ${tapMac} (${tapPath} ${sysDev}); netns ${nsB}: v1 ${peerCidr}; guest mac ${guestMac}`);

    const argv = [
      'ip', 'netns', 'exec', nsA,
      QEMU_BINARY,
      ...guestQemuArgs(image, { netdevId: 'n0', mac: guestMac, guestIp, peerIp, pingCount: o.pingCount }),
      '-netdev', 'tap,id=n0,fd=3',
    ];
    log(`running ${argv.join(' ')}`);
    const r = await runGuest(argv, { timeoutMs: o.timeoutMs ?? 120_000, extraFds: [fd], onConsole: o.onConsole });
    return { ...r, tapMac, guestMac, tapIndex, namespaces: [nsA, nsB] };
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
    // Delete the macvtap explicitly: netns deletion is asynchronous, and /dev/tapN would linger.
    await ip(['-n', nsA, 'link', 'del', 'mt0']).catch(() => {});
    for (const ns of [nsA, nsB]) {
      if (!liveNamespaces.has(ns)) continue;
      await ip(['netns', 'del', ns]).catch((e: Error) => log(`cleanup: ${e.message}`));
      liveNamespaces.delete(ns);
    }
    if (tapPath && !(await waitFor(() => !fs.existsSync(tapPath), 5000))) log(`cleanup: ${tapPath} still exists`);
  }
}

export interface VerifySummary {
  ok: boolean;
  image: GuestImage;
  buildMs: number;
  positive: MacvtapGuestResult;
  negative: MacvtapGuestResult;
}

/** Positive (same MAC: expects ping=ok) and negative (different guest MAC: expects ping=fail) runs. */
export async function verifyGuestThroughMacvtap(o: { cacheDir?: string; log?: (s: string) => void; onConsole?: (c: string) => void } = {}): Promise<VerifySummary> {
  const t0 = performance.now();
  const image = await buildGuestImage({ cacheDir: o.cacheDir, log: o.log });
  const buildMs = performance.now() - t0;
  const tapMac = randomMac();
  const positive = await runGuestThroughMacvtap({ image, tapMac, log: o.log, onConsole: o.onConsole });
  const negative = await runGuestThroughMacvtap({ image, tapMac, guestMac: otherMac(tapMac), log: o.log, onConsole: o.onConsole });
  return { ok: positive.pingOk && !negative.pingOk, image, buildMs, positive, negative };
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  const argv = process.argv.slice(2);
  const verbose = argv.includes('--verbose');
  const ci = argv.indexOf('--cache-dir');
  const cacheDir = ci >= 0 ? argv[ci + 1] : undefined;
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => {
      cleanupSync();
      process.exit(130);
    });
  const log = (s: string) => console.error(`[guest] ${s}`);
  try {
    const s = await verifyGuestThroughMacvtap({ cacheDir, log, onConsole: verbose ? (c) => process.stderr.write(c) : undefined });
    const line = (name: string, r: MacvtapGuestResult) =>
      `${name}: guest mac ${r.guestMac} on macvtap ${r.tapMac}: ping=${r.pingOk ? 'ok' : 'fail'}, result after ${(r.resultMs / 1000).toFixed(1)} s, QEMU exit ${r.exitCode} after ${(r.totalMs / 1000).toFixed(1)} s`;
    console.log(`image: ${s.image.kernelPackage} ${s.image.kernelPackageVersion} (${s.image.kernelVersion}), built/found in ${s.buildMs.toFixed(0)} ms`);
    console.log(line('positive (same MAC, expect ok)', s.positive));
    console.log(line('negative (other MAC, expect fail)', s.negative));
    console.log(s.ok ? 'PASS' : 'FAIL');
    if (!s.ok) console.log(`--- positive console ---\n${s.positive.console}\n--- negative console ---\n${s.negative.console}`);
    process.exitCode = s.ok ? 0 : 1;
  } catch (err) {
    console.error(err);
    cleanupSync();
    process.exitCode = 2;
  }
}
