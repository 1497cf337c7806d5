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
 * The guest runs the test files in phases, each with its own modules: the existing tests
 * expect this host's state (no /dev/vhost-net), so vhost_net is loaded only for the phase of
 * the tests that need a real /dev/vhost-net (test/kernel61/) and unloaded after it.
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
/** Modules loaded only for the phases that ask for them (`KernelGuestPhase.with`). */
export const KERNEL_GUEST_PHASE_MODULES = ['vhost_net'];

/**
 * No AVX: with `-cpu max` (AVX and AVX2, which QEMU 7.2's TCG emulates since 7.2) Node
 * died of SIGSEGV at start-up in the guest, every time for an uncached `--help` of a
 * helper (measured 2026-12-01); with Westmere (SSE4.2, no AVX) it never did, and Node
 * starts faster under TCG.
 */
export const KERNEL_GUEST_CPU = 'Westmere';

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
  /** Up to 4 phases, run in order: test files relative to `repo`, and modules loaded for that phase only. */
  phases: KernelGuestPhase[];
  /** tap --jobs in the guest (default 2: one per vCPU). */
  jobs?: number;
  /** tap --timeout per file in the guest, seconds (default 300). */
  fileTimeoutS?: number;
  /** QNH_KERNEL_GUEST's value in the guest (default {@link KERNEL_GUEST_TAG}). */
  tag?: string;
  /**
   * A host directory the guest keeps Node's compile cache in (shared read-write over 9p as
   * tag `qnhcache`), so that a later run starts with the helpers' and node-tap's modules
   * already compiled; without it the cache lives in guest memory and dies with the guest.
   */
  compileCacheDir?: string;
  /** More kernel command line parameters. */
  append?: string[];
  /** QEMU -cpu (default {@link KERNEL_GUEST_CPU}). */
  cpu?: string;
  /** Guest vCPUs (default 2) and memory (default 4096 MiB: the tests copy Node into the guest's tmpfs, and tmpfs is memory). */
  smp?: number;
  memoryMiB?: number;
}

export interface KernelGuestPhase {
  files: string[];
  /** Modules of {@link KERNEL_GUEST_PHASE_MODULES} loaded before the phase and unloaded after it. */
  with?: string[];
}

const SAFE_FILE = /^[\w./-]+$/;

/** qemu-system-x86_64 arguments (without the binary) that boot `image` and run `plan`. */
export function kernelGuestQemuArgs(image: GuestImage, plan: KernelGuestPlan): string[] {
  const phases = plan.phases.filter((p) => p.files.length > 0);
  if (phases.length === 0 || phases.length > 4) throw new Error(`want 1 to 4 phases with test files, not ${phases.length}`);
  for (const p of phases) {
    for (const f of p.files) if (!SAFE_FILE.test(f)) throw new Error(`test file name unusable on the kernel command line: ${f}`);
    for (const m of p.with ?? []) if (!KERNEL_GUEST_PHASE_MODULES.includes(m)) throw new Error(`module ${m} is not one the image keeps for a phase`);
  }
  for (const p of [plan.repo, plan.node]) if (!SAFE_FILE.test(p) || !p.startsWith('/')) throw new Error(`path unusable on the kernel command line: ${p}`);
  if (plan.compileCacheDir !== undefined && (!SAFE_FILE.test(plan.compileCacheDir) || !plan.compileCacheDir.startsWith('/'))) throw new Error(`compile cache path unusable in -virtfs: ${plan.compileCacheDir}`);
  const append = [
    'console=ttyS0', 'panic=-1', 'quiet', 'loglevel=4',
    `qnh_repo=${plan.repo.replace(/\/+$/, '')}`,
    `qnh_node=${plan.node}`,
    `qnh_tag=${plan.tag ?? KERNEL_GUEST_TAG}`,
    ...phases.flatMap((p, i) => [`qnh_p${i + 1}=${p.files.join(',')}`, ...(p.with?.length ? [`qnh_p${i + 1}_with=${p.with.join(',')}`] : [])]),
    `qnh_jobs=${plan.jobs ?? 2}`,
    `qnh_timeout=${plan.fileTimeoutS ?? 300}`,
    ...(plan.compileCacheDir ? ['qnh_cache=1'] : []),
    ...(plan.append ?? []),
  ].join(' ');
  // x86's COMMAND_LINE_SIZE is 2048 bytes.
  if (append.length > 2000) throw new Error(`kernel command line too long (${append.length} bytes): run fewer files`);
  return [
    '-nodefaults',
    '-no-user-config',
    '-accel', 'tcg',
    '-cpu', plan.cpu ?? KERNEL_GUEST_CPU,
    '-smp', String(plan.smp ?? 2),
    '-m', String(plan.memoryMiB ?? 4096),
    '-display', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    '-kernel', image.kernel,
    '-initrd', image.initrd,
    '-append', append,
    // This machine's root, read-only. multidevs=remap: / spans several host file systems,
    // whose inode numbers would otherwise collide in the guest.
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    ...(plan.compileCacheDir ? ['-virtfs', `local,path=${plan.compileCacheDir},mount_tag=qnhcache,security_model=none`] : []),
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
  /** tap's `time=` for the file, in the guest. */
  timeMs?: number;
}

export interface GuestPhase {
  phase: number;
  /** tap's exit status in the guest, or undefined when the phase never ended (guest died, timed out). */
  status?: number;
  /** tap's final count line, e.g. `{ total: 63, pass: 62, fail: 1 }`. */
  summary?: string;
  /** The test processes' stderr (its last lines), printed by /init after the phase. */
  stderr: string[];
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

/**
 * Reads a kernel guest's console line by line as it arrives: the info lines, every phase's
 * TAP, the end marker. `onFile` is told each test file's result as soon as it is complete
 * (its result line and diagnostics), so a caller can report files while the guest still runs.
 */
export class KernelGuestConsoleParser {
  readonly report: KernelGuestReport = { phases: [], files: [], info: [] };
  private readonly onFile: ((f: GuestTestFile) => void) | undefined;
  private partial = '';
  private phase: GuestPhase | undefined;
  private block: string[] = [];
  private current: string | undefined;
  /** A file whose result line was seen; its YAML diagnostics may still follow. */
  private pending: GuestTestFile | undefined;

  constructor(onFile?: (f: GuestTestFile) => void) {
    this.onFile = onFile;
  }

  /** Feeds console output (any chunking; `\r\n` or `\n`). */
  push(chunk: string): void {
    const text = this.partial + chunk.replace(/\r/g, '');
    const lines = text.split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) this.line(line);
  }

  /** The console ended: takes the last partial line, and reports a file cut short as failed. */
  end(): KernelGuestReport {
    if (this.partial) this.line(this.partial);
    this.partial = '';
    this.flush();
    if (this.current !== undefined && this.block.length) {
      const file: GuestTestFile = {
        phase: this.phase?.phase ?? 0, file: this.current, ok: false, directive: 'unfinished: the guest stopped before this file ended',
        ...countSubtests(this.block), tap: this.block.join('\n'),
      };
      this.current = undefined;
      this.report.files.push(file);
      this.onFile?.(file);
    }
    return this.report;
  }

  private flush(): void {
    if (!this.pending) return;
    const f = this.pending;
    this.pending = undefined;
    this.onFile?.(f);
  }

  private line(line: string): void {
    const report = this.report;
    let m: RegExpExecArray | null;
    if (this.pending && !/^ {2}/.test(line)) this.flush();
    if ((m = /^QNH-KGUEST-INFO: (.*)$/.exec(line))) {
      report.info.push(m[1]!);
      const k = /^booted kernel=(\S+)/.exec(m[1]!);
      if (k) report.kernelVersion = k[1];
      return;
    }
    if ((m = /^QNH-KGUEST-BEGIN: phase=(\d+)/.exec(line))) {
      this.phase = { phase: Number(m[1]), stderr: [] };
      report.phases.push(this.phase);
      this.block = [];
      this.current = undefined;
      return;
    }
    if ((m = /^QNH-KGUEST-END: phase=(\d+) status=(\d+)/.exec(line))) {
      if (this.phase) this.phase.status = Number(m[2]);
      this.phase = undefined;
      return;
    }
    if ((m = /^QNH-KGUEST-STDERR: phase=(\d+) ?(.*)$/.exec(line))) {
      const n = Number(m[1]);
      report.phases.find((p) => p.phase === n)?.stderr.push(m[2]!);
      return;
    }
    if ((m = KERNEL_GUEST_DONE.exec(line))) {
      report.status = Number(m[1]);
      return;
    }
    const phase = this.phase;
    if (!phase) return;
    if ((m = /^# Subtest: (.+)$/.exec(line))) {
      this.current = m[1];
      this.block = [line];
      return;
    }
    if ((m = /^(not )?ok \d+ - (.+?)(?: # (.*))?$/.exec(line))) {
      const file = m[2]!;
      const rest = m[3] ?? '';
      const time = /(?:^|\s)time=([\d.]+)ms\s*$/.exec(rest);
      const directive = rest.replace(/(?:^|\s*)time=[\d.]+ms\s*$/, '').trim() || undefined;
      const body = file === this.current ? this.block : [];
      body.push(line);
      const f: GuestTestFile = { phase: phase.phase, file, ok: !m[1], directive, ...countSubtests(body), tap: body.join('\n') };
      if (time) f.timeMs = Number(time[1]);
      report.files.push(f);
      this.pending = f;
      this.block = [];
      this.current = undefined;
      return;
    }
    if ((m = /^# (\{ total: .*\})$/.exec(line))) {
      phase.summary = m[1];
      return;
    }
    if (this.current !== undefined) this.block.push(line);
    else if (this.pending) this.pending.tap += `\n${line}`; // the YAML diagnostics after a file's `not ok` line
  }
}

/** Parses a whole console of a kernel guest run (see {@link KernelGuestConsoleParser}). */
export function parseKernelGuestConsole(consoleText: string): KernelGuestReport {
  const p = new KernelGuestConsoleParser();
  p.push(consoleText);
  return p.end();
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
  /** Told each test file's result as soon as the guest has printed it. */
  onFile?: (f: GuestTestFile) => void;
  qemu?: string;
}

export interface KernelGuestRun {
  /** What the console said, complete or not. */
  report: KernelGuestReport;
  /** QEMU's run; undefined when it failed (timed out, died before the end marker): see `error`. */
  run?: GuestRunResult;
  error?: Error;
}

/** Boots the guest with `plan`; resolves with what it reported, also when it never printed its end marker. */
export async function runKernelGuest(image: GuestImage, plan: KernelGuestPlan, o: RunKernelGuestOptions): Promise<KernelGuestRun> {
  const argv = [o.qemu ?? 'qemu-system-x86_64', ...kernelGuestQemuArgs(image, plan)];
  const parser = new KernelGuestConsoleParser(o.onFile);
  try {
    const run = await runGuest(argv, {
      timeoutMs: o.timeoutMs,
      onConsole: (chunk) => {
        parser.push(chunk);
        o.onConsole?.(chunk);
      },
      resultMarker: KERNEL_GUEST_DONE,
      exitGraceMs: 15_000,
    });
    return { report: parser.end(), run };
  } catch (err) {
    return { report: parser.end(), error: err as Error };
  }
}
