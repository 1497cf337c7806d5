/**
 * Test support: run the repository's kernel-level tests under a second kernel, Debian 12's
 * own Linux 6.1 (generic flavour `linux-image-6.1.0-N-amd64`), booted under QEMU/TCG.
 *
 * - {@link buildKernelGuestImage} builds (and caches, through test/support/guest.ts) the
 *   kernel plus a busybox initramfs whose /init (test/support/kernel-guest-init.sh) loads the
 *   kernel's own modules (virtio, 9p, overlay, veth, macvlan/macvtap, tap/tun, vhost, bridge,
 *   8021q, ...; vhost_net only between the phases), mounts this machine's root shared
 *   read-only over 9p under a tmpfs overlay, chroots into it and runs node-tap there.
 * - {@link kernelGuestQemuArgs} gives the qemu-system-x86_64 arguments.
 * - {@link runKernelGuest} boots it, reads the console and parses every phase's TAP into
 *   per-file results ({@link parseKernelGuestConsole}).
 *
 * The guest runs two phases, because the existing tests expect this host's state (no
 * /dev/vhost-net): phase 1 runs test/kernel/*.test.ts without vhost_net, then /init loads
 * vhost_net, then phase 2 runs the tests that need a real /dev/vhost-net (test/kernel61/).
 * The tests see CI=true and QNH_KERNEL_GUEST=<tag> (e.g. 6.1) in their environment.
 *
 * Cache (default `<repo>/.cache/kernel61`, separate from the cloud-kernel guest's so that
 * neither falls back to the other's kernel when apt is offline): the same layout as
 * guest.ts's: `apt-resolution-linux-image-amd64.json`, `kernel-<pkg>_<version>_m<hash>/`
 * (vmlinuz and the modules needed), `image-<hash>/initrd.img`. `rm -rf .cache/kernel61` is
 * always safe.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGuestImage, REPO_ROOT, runGuest, type GuestImage, type GuestRunResult } from './guest.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const KERNEL_GUEST_INIT = path.join(HERE, 'kernel-guest-init.sh');
export const KERNEL_GUEST_CACHE_DIR = path.join(REPO_ROOT, '.cache', 'kernel61');
/** Debian 12's metapackage of the generic kernel (the cloud flavour has no 9p: `# CONFIG_NET_9P is not set`). */
export const KERNEL_GUEST_METAPACKAGE = 'linux-image-amd64';
/** What the guest's tests see as QNH_KERNEL_GUEST. */
export const KERNEL_GUEST_TAG = '6.1';

/**
 * Modules of the guest, in load order (each preceded by its `depends=` read from the .ko).
 * virtio-pci and 9p to reach the host's root, overlay to make it writable in memory, and what
 * the tests use: veth (lower devices), macvlan/macvtap/tap, tun and vhost (vhost_net's
 * dependencies), bridge (link dumps with other kinds), 8021q (VLAN tests), dummy.
 */
export const KERNEL_GUEST_MODULES = {
  wanted: ['virtio_pci', '9pnet_virtio', '9p', 'overlay', 'veth', 'macvlan', 'macvtap', 'tap', 'tun', 'vhost', 'bridge', '8021q', 'dummy', 'vhost_net'],
  required: ['virtio_pci', '9pnet_virtio', '9p', 'overlay', 'veth', 'macvtap', 'vhost_net'],
} as const;
/** Modules /init loads only after phase 1. */
export const KERNEL_GUEST_LATE_MODULES = ['vhost_net'];

/** The line that ends the guest's run; group 1 is the overall status (0: every phase passed). */
export const KERNEL_GUEST_DONE = /^QNH-KGUEST-DONE: status=(\d+) end[ \t]*$/m;

export interface BuildKernelGuestImageOptions {
  cacheDir?: string;
  log?: (s: string) => void;
  /** `name` or `name=version` instead of `linux-image-amd64`'s dependency (see guest.ts). */
  kernelPackage?: string;
}

/** Builds (or finds in the cache) Debian 12's generic 6.1 kernel and the initramfs of {@link KERNEL_GUEST_INIT}. */
export function buildKernelGuestImage(o: BuildKernelGuestImageOptions = {}): Promise<GuestImage> {
  return buildGuestImage({
    cacheDir: o.cacheDir ?? KERNEL_GUEST_CACHE_DIR,
    log: o.log,
    kernelPackage: o.kernelPackage,
    metapackage: KERNEL_GUEST_METAPACKAGE,
    modules: { wanted: [...KERNEL_GUEST_MODULES.wanted], required: [...KERNEL_GUEST_MODULES.required] },
    initScript: KERNEL_GUEST_INIT,
  });
}

export interface KernelGuestPlan {
  /** The repository as seen by the guest (the same path as on the host: the guest sees the host's root). */
  repo: string;
  /** The Node binary the guest runs (the host's pinned Node: `process.execPath`). */
  node: string;
  /** Test files, relative to `repo`, of phase 1 (without vhost_net) and phase 2 (with it). */
  phase1: string[];
  phase2: string[];
  /** tap --jobs in the guest (default 2: one per vCPU). */
  jobs?: number;
  /** tap --timeout per file in the guest, seconds (default 300). */
  fileTimeoutS?: number;
  /** QNH_KERNEL_GUEST's value in the guest (default {@link KERNEL_GUEST_TAG}). */
  tag?: string;
  /** Guest vCPUs (default 2) and memory (default 2048 MiB). */
  smp?: number;
  memoryMiB?: number;
}

const SAFE_FILE = /^[\w./-]+$/;

/** qemu-system-x86_64 arguments (without the binary) that boot `image` and run `plan`. */
export function kernelGuestQemuArgs(image: GuestImage, plan: KernelGuestPlan): string[] {
  for (const f of [...plan.phase1, ...plan.phase2]) if (!SAFE_FILE.test(f) || f.includes(',')) throw new Error(`test file name unusable on the kernel command line: ${f}`);
  for (const p of [plan.repo, plan.node]) if (!SAFE_FILE.test(p) || !p.startsWith('/')) throw new Error(`path unusable on the kernel command line: ${p}`);
  if (plan.phase1.length === 0) throw new Error('no test files for phase 1');
  const append = [
    'console=ttyS0', 'panic=-1', 'quiet', 'loglevel=4',
    `qnh_repo=${plan.repo.replace(/\/+$/, '')}`,
    `qnh_node=${plan.node}`,
    `qnh_tag=${plan.tag ?? KERNEL_GUEST_TAG}`,
    `qnh_p1=${plan.phase1.join(',')}`,
    ...(plan.phase2.length ? [`qnh_p2=${plan.phase2.join(',')}`] : []),
    `qnh_late=${KERNEL_GUEST_LATE_MODULES.join(',')}`,
    `qnh_jobs=${plan.jobs ?? 2}`,
    `qnh_timeout=${plan.fileTimeoutS ?? 300}`,
  ].join(' ');
  // x86's COMMAND_LINE_SIZE is 2048 bytes.
  if (append.length > 2000) throw new Error(`kernel command line too long (${append.length} bytes): run fewer files`);
  return [
    '-nodefaults',
    '-no-user-config',
    '-accel', 'tcg',
    '-cpu', 'max',
    '-smp', String(plan.smp ?? 2),
    '-m', String(plan.memoryMiB ?? 2048),
    '-display', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    '-kernel', image.kernel,
    '-initrd', image.initrd,
    '-append', append,
    // This machine's root, read-only. multidevs=remap: / spans several host file systems,
    // whose inode numbers would otherwise collide in the guest.
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
  ];
}

export interface GuestTestFile {
  phase: number;
  /** Path relative to the repository, as tap names it. */
  file: string;
  ok: boolean;
  /** tap's directive on the file's line (e.g. `SKIP needs root`, `TODO ...`), if any. */
  directive?: string;
  /** The file's top-level subtests: counts, and the names of the failed ones. */
  passed: number;
  failed: number;
  skipped: number;
  failures: string[];
  /** The file's TAP, as tap printed it (indented subtest output plus the result line). */
  tap: string;
}

export interface GuestPhase {
  phase: number;
  /** tap's exit status in the guest, or undefined when the phase never ended (guest died, timed out). */
  status?: number;
  /** tap's final count line, e.g. `{ total: 63, pass: 62, fail: 1 }`. */
  summary?: string;
}

export interface KernelGuestReport {
  /** `uname -r` the guest printed. */
  kernelVersion?: string;
  phases: GuestPhase[];
  files: GuestTestFile[];
  /** Overall status from the end marker; undefined without it. */
  status?: number;
  /** QNH-KGUEST-INFO lines. */
  info: string[];
}

/** Parses the console of a kernel guest run: the info lines, every phase's TAP, the end marker. */
export function parseKernelGuestConsole(consoleText: string): KernelGuestReport {
  const report: KernelGuestReport = { phases: [], files: [], info: [] };
  const lines = consoleText.replace(/\r\n?/g, '\n').split('\n');
  let phase: GuestPhase | undefined;
  let block: string[] = [];
  let current: string | undefined;
  for (const line of lines) {
    let m: RegExpExecArray | null;
    if ((m = /^QNH-KGUEST-INFO: (.*)$/.exec(line))) {
      report.info.push(m[1]!);
      const k = /^booted kernel=(\S+)/.exec(m[1]!);
      if (k) report.kernelVersion = k[1];
      continue;
    }
    if ((m = /^QNH-KGUEST-BEGIN: phase=(\d+)/.exec(line))) {
      phase = { phase: Number(m[1]) };
      report.phases.push(phase);
      block = [];
      current = undefined;
      continue;
    }
    if ((m = /^QNH-KGUEST-END: phase=(\d+) status=(\d+)/.exec(line))) {
      if (phase) phase.status = Number(m[2]);
      phase = undefined;
      continue;
    }
    if ((m = KERNEL_GUEST_DONE.exec(line))) {
      report.status = Number(m[1]);
      continue;
    }
    if (!phase) continue;
    if ((m = /^# Subtest: (.+)$/.exec(line))) {
      current = m[1];
      block = [line];
      continue;
    }
    if ((m = /^(not )?ok \d+ - (.+?)(?: # (.*))?$/.exec(line))) {
      const file = m[2]!;
      const directive = m[3] && !/^time=/.test(m[3]) ? m[3] : undefined;
      const body = file === current ? block : [];
      body.push(line);
      report.files.push({ phase: phase.phase, file, ok: !m[1], directive, ...countSubtests(body), tap: body.join('\n') });
      block = [];
      current = undefined;
      continue;
    }
    if ((m = /^# (\{ total: .*\})$/.exec(line))) {
      phase.summary = m[1];
      continue;
    }
    if (current !== undefined) block.push(line);
    else if (report.files.length && report.files[report.files.length - 1]!.phase === phase.phase && /^ {2}/.test(line)) {
      // The YAML diagnostics after a file's `not ok` line.
      report.files[report.files.length - 1]!.tap += `\n${line}`;
    }
  }
  // A phase cut short leaves a file without its result line: report it as failed.
  if (current !== undefined && block.length) {
    const last = report.phases[report.phases.length - 1];
    report.files.push({ phase: last?.phase ?? 0, file: current, ok: false, directive: 'unfinished: the guest stopped before this file ended', ...countSubtests(block), tap: block.join('\n') });
  }
  return report;
}

function countSubtests(body: string[]): { passed: number; failed: number; skipped: number; failures: string[] } {
  const r = { passed: 0, failed: 0, skipped: 0, failures: [] as string[] };
  for (const line of body) {
    const m = /^ {4}(not )?ok \d+ - (.*?)(?: # (.*))?$/.exec(line);
    if (!m) continue;
    if (m[1]) {
      r.failed++;
      r.failures.push(m[2]!);
    } else if (m[3] && /^(SKIP|TODO)\b/i.test(m[3])) r.skipped++;
    else r.passed++;
  }
  return r;
}

export interface RunKernelGuestOptions {
  /** Overall bound for QEMU, boot to power-off. */
  timeoutMs: number;
  onConsole?: (chunk: string) => void;
  qemu?: string;
}

export interface KernelGuestRun extends KernelGuestReport {
  run: GuestRunResult;
}

/** Boots the guest with `plan` and returns the parsed report; rejects when the guest never printed its end marker. */
export async function runKernelGuest(image: GuestImage, plan: KernelGuestPlan, o: RunKernelGuestOptions): Promise<KernelGuestRun> {
  const argv = [o.qemu ?? 'qemu-system-x86_64', ...kernelGuestQemuArgs(image, plan)];
  const run = await runGuest(argv, { timeoutMs: o.timeoutMs, onConsole: o.onConsole, resultMarker: KERNEL_GUEST_DONE, exitGraceMs: 15_000 });
  return { ...parseKernelGuestConsole(run.console), run };
}
