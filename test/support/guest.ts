/**
 * Test support: a tiny bootable Linux guest for end-to-end tests.
 *
 * - {@link buildGuestImage} builds (and caches) a Debian cloud kernel plus a busybox
 *   initramfs whose /init (test/support/guest-init.sh) brings up eth0 (virtio-net),
 *   pings a peer and prints `QNH-GUEST-RESULT: ping=ok|fail` on ttyS0, then powers off.
 * - {@link guestQemuArgs} gives qemu-system-x86_64 arguments that boot it with a
 *   virtio NIC on a netdev the caller supplies (e.g. `-netdev tap,id=n0,fd=3`).
 * - {@link runGuest} runs QEMU (any argv, so `ip netns exec NS` can be prefixed),
 *   reads the serial console from QEMU's stdout and resolves with the ping result.
 *
 * Host requirements (Debian 12): `apt-get install -y qemu-system-x86 busybox-static`,
 * plus apt/dpkg-deb (always there) and Debian's apt repositories to fetch the kernel
 * package `linux-image-cloud-amd64`'s dependency with `apt-get download` (it is
 * unpacked into the cache, never installed). `.ko.xz` modules, if a kernel ships them,
 * are decompressed with `xz` or busybox's `xzcat`; `.ko.zst` needs `zstd`.
 *
 * Cache layout (default `<repo>/.cache/guest`, override with `cacheDir`):
 *   apt-resolution-<want>.json     kernel package resolved by apt, keyed by a fingerprint of
 *                                  apt's package lists and config (avoids a 0.6 s apt-cache
 *                                  call per run; any apt-get update invalidates it)
 *   kernel-<pkg>_<version>/        vmlinuz + the needed modules (decompressed) + meta.json
 *   image-<sha256 prefix>/         initrd.img (gzip'd newc cpio) + meta.json; the key covers
 *                                  the kernel package + version, the init script, the
 *                                  busybox binary, the module list and FORMAT_VERSION.
 * Every directory is built in a temporary sibling and renamed into place, so concurrent
 * builders never see a half-written entry (the loser of a rename race discards its copy).
 * Old entries are never pruned automatically: `rm -rf .cache/guest` is always safe.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync, gunzipSync } from 'node:zlib';

export interface GuestImage {
  /** Absolute path of the kernel (bzImage). */
  kernel: string;
  /** Absolute path of the gzip'd cpio initramfs. */
  initrd: string;
  /** `uname -r` of the kernel, e.g. `6.1.0-56-cloud-amd64`. */
  kernelVersion: string;
  /** Debian package the kernel came from and its version, e.g. `linux-image-6.1.0-56-cloud-amd64`, `6.1.192-2`. */
  kernelPackage: string;
  kernelPackageVersion: string;
  /** Module names insmod'ed by /init, in order (modules built into the kernel are left out). */
  modules: string[];
}

export interface BuildGuestImageOptions {
  /** Cache directory; default `<repo root>/.cache/guest`. */
  cacheDir?: string;
  /** Progress messages (downloads, builds, fallbacks). */
  log?: (s: string) => void;
  /** Kernel package to use instead of resolving `linux-image-cloud-amd64`'s dependency; `name` or `name=version`. */
  kernelPackage?: string;
  /** Statically linked busybox to put in the initramfs; default `/bin/busybox` (Debian package busybox-static). */
  busybox?: string;
  /** Metapackage whose `linux-image-*` dependency is the kernel (default `linux-image-cloud-amd64`); ignored with `kernelPackage`. */
  metapackage?: string;
  /**
   * Modules to put in the initramfs instead of the virtio-net set: `wanted` in load order (each
   * preceded by its `depends=`; missing or built-in ones are skipped), `required` must be there.
   * The kernel cache entry is then keyed by the list too.
   */
  modules?: { wanted: readonly string[]; required: readonly string[] };
  /** The initramfs's /init (default test/support/guest-init.sh); its bytes are part of the image key. */
  initScript?: string;
}

export interface GuestQemuOptions {
  /** id of the `-netdev` the caller adds (e.g. `-netdev tap,id=n0,fd=3`). */
  netdevId: string;
  /** MAC of the guest NIC, `52:54:00:xx:xx:xx`; must equal the macvtap's MAC for traffic to reach the guest. */
  mac: string;
  /** Guest address in CIDR form, e.g. `169.254.77.2/16`. */
  guestIp: string;
  /** Address the guest pings, e.g. `169.254.77.1`. */
  peerIp: string;
  /** Echo requests to send (default 3); the result is ok when at least one reply arrives. */
  pingCount?: number;
  /** QEMU accelerator (default `tcg`: KVM guests were seen to hang on the test machines). */
  accel?: string;
  /** Guest memory in MiB (default 256). */
  memoryMiB?: number;
  /** Seconds /init waits for eth0 (default 10): longer when a test hot-plugs the NIC. */
  waitForNicS?: number;
  /** After the result, stay up (report "eth0 removed" on hot-unplug) instead of powering off. */
  hold?: boolean;
  /** An IPv6 address for eth0 in CIDR form (added without duplicate address detection), e.g. `fe80::77:2/64`. */
  guestIp6?: string;
  /** Add no NIC (the test hot-plugs one; netdevId and mac are then unused). */
  noNic?: boolean;
}

export interface RunGuestOptions {
  /** Overall bound, from spawn to QEMU's exit. On expiry QEMU's process group is killed and the promise rejects. */
  timeoutMs: number;
  /** Open file descriptors handed to the child as fd 3, 4, ... (e.g. an opened /dev/tapN). The caller keeps ownership and closes them. */
  extraFds?: number[];
  /** How long to wait for QEMU to exit after the result marker (default 20 s, capped by timeoutMs) before killing it; the result still counts. */
  exitGraceMs?: number;
  /** Called with each chunk of console output as it arrives. */
  onConsole?: (chunk: string) => void;
  /** Environment of the child (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** The line that ends the run (default {@link RESULT_MARKER}); group 1 becomes `result`. Must use the `m` flag and `^`. */
  resultMarker?: RegExp;
}

export interface GuestRunResult {
  /** True when the guest printed `QNH-GUEST-RESULT: ping=ok`. */
  pingOk: boolean;
  /** Group 1 of the result marker (`ok`/`fail` for the default one). */
  result: string;
  /** Serial console (QEMU's stdout), with `\r\n` normalised to `\n`. */
  console: string;
  /** QEMU's stderr. */
  stderr: string;
  /** QEMU's exit code, or null if it was killed by a signal (then see `signal`). */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Milliseconds from spawn to the result marker (i.e. boot + ping). */
  resultMs: number;
  /** Milliseconds from spawn to QEMU's exit. */
  totalMs: number;
}

/** The QEMU binary the arguments of {@link guestQemuArgs} are meant for. */
export const QEMU_BINARY = 'qemu-system-x86_64';
/** Regular expression matching the guest's result line; group 1 is `ok` or `fail`. */
export const RESULT_MARKER = /^QNH-GUEST-RESULT: ping=(ok|fail)[ \t]*$/m;

/** Bumped whenever the image layout or builder logic changes in a way the other key parts don't capture. */
const FORMAT_VERSION = 1;
const KERNEL_METAPACKAGE = 'linux-image-cloud-amd64';
/** virtio-net and what it needs, in load order; missing or built-in ones are skipped, dependencies are added. */
const WANTED_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_modern_dev',
  'virtio_pci_legacy_dev',
  'virtio_pci',
  'failover',
  'net_failover',
  'virtio_net',
];
/** Without these, there is no eth0: fail the build instead of booting a useless guest. */
const REQUIRED_MODULES = ['virtio_pci', 'virtio_net'];

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..');
export const DEFAULT_CACHE_DIR = path.join(REPO_ROOT, '.cache', 'guest');
export const INIT_SCRIPT = path.join(HERE, 'guest-init.sh');

// ---------------------------------------------------------------------------------------------
// small process helpers

interface ExecResult {
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { cwd?: string; maxBuffer?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, maxBuffer: opts.maxBuffer ?? 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const e = err as Error & { code?: unknown };
        e.message = `${cmd} ${args.join(' ')} failed: ${e.message.trim()}\n${String(stderr).trim()}`;
        reject(e);
      } else resolve({ stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function runBuffer(cmd: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        err.message = `${cmd} ${args.join(' ')} failed: ${err.message.trim()}\n${stderr.toString().trim()}`;
        reject(err);
      } else resolve(stdout);
    });
  });
}

function sha256(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    h.update(typeof p === 'string' ? Buffer.from(p) : p);
    h.update('\0');
  }
  return h.digest('hex');
}

function exists(p: string): boolean {
  return fs.existsSync(p);
}

function tmpSibling(cacheDir: string, what: string): string {
  return path.join(cacheDir, `.tmp-${what}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Renames `tmp` to `final`; if another process got there first, keeps theirs and discards ours. */
async function publish(tmp: string, final: string): Promise<void> {
  try {
    await fsp.rename(tmp, final);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && exists(path.join(final, 'meta.json'))) {
      await fsp.rm(tmp, { recursive: true, force: true });
      return;
    }
    await fsp.rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// kernel package resolution (apt)

interface KernelRef {
  pkg: string;
  version: string;
}

const APT_STATE_PATHS = ['/var/lib/apt/lists', '/etc/apt/sources.list', '/etc/apt/sources.list.d', '/etc/apt/preferences', '/etc/apt/preferences.d'];

/** Cheap fingerprint of everything apt's answer depends on: names, sizes and mtimes of the lists and apt config. */
function aptFingerprint(): string {
  const rows: string[] = [];
  for (const p of APT_STATE_PATHS) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      rows.push(`${p} -`);
      continue;
    }
    const files = st.isDirectory() ? fs.readdirSync(p).sort().map((f) => path.join(p, f)) : [p];
    for (const f of files) {
      try {
        const s = fs.statSync(f);
        if (s.isFile()) rows.push(`${f} ${s.size} ${s.mtimeMs}`);
      } catch {
        /* vanished: ignore */
      }
    }
  }
  return sha256(rows.join('\n'));
}

function parseShow(stdout: string): { version?: string; depends?: string } {
  const out: { version?: string; depends?: string } = {};
  for (const line of stdout.split('\n')) {
    if (line === '') break; // first stanza only
    const m = /^(Version|Depends): (.*)$/.exec(line);
    if (m?.[1] === 'Version') out.version = m[2];
    if (m?.[1] === 'Depends') out.depends = m[2];
  }
  return out;
}

async function aptShow(pkg: string): Promise<{ version?: string; depends?: string } | null> {
  try {
    const { stdout } = await run('apt-cache', ['show', '--no-all-versions', pkg]);
    const r = parseShow(stdout);
    return r.version ? r : null;
  } catch {
    return null;
  }
}

async function resolveViaApt(log: (s: string) => void, explicit?: string, metapackage = KERNEL_METAPACKAGE): Promise<KernelRef> {
  let updated = false;
  const show = async (pkg: string) => {
    let r = await aptShow(pkg);
    if (!r && !updated) {
      log(`apt-cache knows no ${pkg}: running apt-get update once`);
      updated = true;
      await run('apt-get', ['update', '-qq']);
      r = await aptShow(pkg);
    }
    if (!r) throw new Error(`apt-cache show ${pkg}: no such package (is Debian's apt repository reachable?)`);
    return r;
  };
  if (explicit) {
    const [pkg, ver] = explicit.split('=', 2) as [string, string | undefined];
    return { pkg, version: ver ?? (await show(pkg)).version! };
  }
  const meta = await show(metapackage);
  // e.g. "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)"
  const dep = (meta.depends ?? '')
    .split(',')
    .map((s) => s.trim().split('|')[0]!.trim())
    .map((s) => /^(linux-image-[^\s(]+)(?:\s*\(\s*=\s*([^)\s]+)\s*\))?/.exec(s))
    .find((m) => m !== null);
  if (!dep?.[1]) throw new Error(`cannot find the kernel package in ${metapackage}'s Depends: ${meta.depends ?? '(none)'}`);
  const pkg = dep[1];
  return { pkg, version: dep[2] ?? (await show(pkg)).version! };
}

async function resolveKernel(cacheDir: string, log: (s: string) => void, explicit?: string, metapackage = KERNEL_METAPACKAGE): Promise<KernelRef> {
  if (explicit?.includes('=')) {
    const [pkg, version] = explicit.split('=', 2) as [string, string];
    return { pkg, version }; // fully pinned: no apt look-up
  }
  const want = explicit ?? metapackage;
  const memoFile = path.join(cacheDir, `apt-resolution-${want.replace(/[^\w.+-]/g, '_')}.json`);
  const fp = aptFingerprint();
  try {
    const memo = JSON.parse(fs.readFileSync(memoFile, 'utf8')) as { fingerprint: string; want: string; pkg: string; version: string };
    if (memo.fingerprint === fp && memo.want === want) return { pkg: memo.pkg, version: memo.version };
  } catch {
    /* no memo */
  }
  let ref: KernelRef;
  try {
    ref = await resolveViaApt(log, explicit, metapackage);
  } catch (err) {
    // Offline or broken apt: fall back to the newest kernel already in the cache.
    const cached = newestCachedKernel(cacheDir, explicit);
    if (!cached) throw err;
    log(`apt resolution failed (${(err as Error).message.split('\n')[0]}); using cached ${cached.pkg} ${cached.version}`);
    return cached;
  }
  const tmp = `${memoFile}.${process.pid}.${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, JSON.stringify({ fingerprint: aptFingerprint(), want, ...ref }, null, 2));
  fs.renameSync(tmp, memoFile);
  return ref;
}

function newestCachedKernel(cacheDir: string, explicit?: string): KernelRef | null {
  let best: (KernelRef & { t: number }) | null = null;
  let names: string[] = [];
  try {
    names = fs.readdirSync(cacheDir);
  } catch {
    return null;
  }
  for (const n of names) {
    if (!n.startsWith('kernel-')) continue;
    try {
      const metaPath = path.join(cacheDir, n, 'meta.json');
      const meta = JSON.parse(fs.readFileSync(metaPath, 'utf8')) as KernelMeta;
      if (explicit && explicit !== meta.pkg && explicit !== `${meta.pkg}=${meta.version}`) continue;
      const t = fs.statSync(metaPath).mtimeMs;
      if (!best || t > best.t) best = { pkg: meta.pkg, version: meta.version, t };
    } catch {
      /* incomplete or foreign entry */
    }
  }
  return best && { pkg: best.pkg, version: best.version };
}

// ---------------------------------------------------------------------------------------------
// kernel layer: vmlinuz + needed modules, from the .deb

interface KernelMeta {
  pkg: string;
  version: string;
  kernelVersion: string;
  /** Modules (file `modules/<name>.ko`), in load order. */
  modules: string[];
  builtin: string[];
  missing: string[];
}

const modName = (file: string) => path.basename(file).replace(/\.ko(\.(xz|gz|zst))?$/, '').replace(/-/g, '_');

/** `depends=` of a module's .modinfo section (NUL-separated key=value strings). */
function moduleDepends(ko: Buffer): string[] {
  const key = Buffer.from('\0depends=');
  const i = ko.indexOf(key);
  if (i < 0) return [];
  const start = i + key.length;
  const end = ko.indexOf(0, start);
  const v = ko.subarray(start, end < 0 ? undefined : end).toString('latin1');
  return v === '' ? [] : v.split(',').map((d) => d.trim().replace(/-/g, '_')).filter(Boolean);
}

async function commandExists(cmd: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

async function readModule(file: string, busybox: string): Promise<Buffer> {
  if (file.endsWith('.ko')) return fs.readFileSync(file);
  if (file.endsWith('.ko.gz')) return gunzipSync(fs.readFileSync(file));
  if (file.endsWith('.ko.xz')) {
    if (await commandExists('xz')) return runBuffer('xz', ['-dc', file]);
    return runBuffer(busybox, ['xzcat', file]);
  }
  if (file.endsWith('.ko.zst')) return runBuffer('zstd', ['-dcq', file]);
  throw new Error(`unknown module format: ${file}`);
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

interface ModuleSpec {
  wanted: readonly string[];
  required: readonly string[];
}

async function ensureKernel(cacheDir: string, ref: KernelRef, busybox: string, log: (s: string) => void, spec?: ModuleSpec): Promise<{ dir: string; meta: KernelMeta }> {
  const wantedModules = spec?.wanted ?? WANTED_MODULES;
  const requiredModules = spec?.required ?? REQUIRED_MODULES;
  // The default set keeps its historical entry name; another set gets its own entry.
  const suffix = spec ? `_m${sha256(wantedModules.join(','), requiredModules.join(',')).slice(0, 12)}` : '';
  const dir = path.join(cacheDir, `kernel-${ref.pkg}_${ref.version}${suffix}`.replace(/[^\w.+-]/g, '_'));
  const metaPath = path.join(dir, 'meta.json');
  if (exists(metaPath)) return { dir, meta: JSON.parse(fs.readFileSync(metaPath, 'utf8')) as KernelMeta };

  const tmp = tmpSibling(cacheDir, 'kernel');
  await fsp.mkdir(tmp, { recursive: true });
  try {
    const dl = path.join(tmp, 'dl');
    await fsp.mkdir(dl, { mode: 0o755 });
    log(`downloading ${ref.pkg}=${ref.version} with apt-get download`);
    await run('apt-get', ['download', '-q', `${ref.pkg}=${ref.version}`], { cwd: dl });
    const deb = fs.readdirSync(dl).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${ref.pkg}=${ref.version} produced no .deb`);
    const root = path.join(tmp, 'root');
    await run('dpkg-deb', ['-x', path.join(dl, deb), root]);

    const bootDir = path.join(root, 'boot');
    const vmlinuz = fs.readdirSync(bootDir).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Error(`${deb} has no /boot/vmlinuz-*`);
    const kernelVersion = vmlinuz.slice('vmlinuz-'.length);
    const modRoot = [path.join(root, 'lib', 'modules', kernelVersion), path.join(root, 'usr', 'lib', 'modules', kernelVersion)].find(exists);
    if (!modRoot) throw new Error(`${deb} has no modules directory for ${kernelVersion}`);

    const files = new Map<string, string>();
    for (const f of walk(modRoot)) if (/\.ko(\.(xz|gz|zst))?$/.test(f)) files.set(modName(f), f);
    const builtin = new Set<string>();
    const builtinFile = path.join(modRoot, 'modules.builtin');
    if (exists(builtinFile)) for (const l of fs.readFileSync(builtinFile, 'utf8').split('\n')) if (l.trim()) builtin.add(modName(l.trim()));

    // Load order: WANTED_MODULES order, each preceded by its (transitive) dependencies.
    const order: string[] = [];
    const missing: string[] = [];
    const contents = new Map<string, Buffer>();
    const visit = async (name: string, stack: string[]): Promise<void> => {
      if (order.includes(name) || missing.includes(name) || builtin.has(name) || stack.includes(name)) return;
      const file = files.get(name);
      if (!file) {
        missing.push(name);
        return;
      }
      const ko = await readModule(file, busybox);
      for (const d of moduleDepends(ko)) await visit(d, [...stack, name]);
      contents.set(name, ko);
      order.push(name);
    };
    for (const m of wantedModules) await visit(m, []);
    for (const m of requiredModules)
      if (!order.includes(m) && !builtin.has(m)) throw new Error(`${deb} has no module ${m} (neither a file nor built in)`);
    if (missing.length) log(`modules neither shipped nor built in (skipped): ${missing.join(', ')}`);

    const out = path.join(tmp, 'out');
    await fsp.mkdir(path.join(out, 'modules'), { recursive: true });
    await fsp.copyFile(path.join(bootDir, vmlinuz), path.join(out, 'vmlinuz'));
    for (const [name, ko] of contents) await fsp.writeFile(path.join(out, 'modules', `${name}.ko`), ko);
    const meta: KernelMeta = { pkg: ref.pkg, version: ref.version, kernelVersion, modules: order, builtin: wantedModules.filter((m) => builtin.has(m)), missing };
    await fsp.writeFile(path.join(out, 'meta.json'), JSON.stringify(meta, null, 2));
    await publish(out, dir);
    const final = JSON.parse(fs.readFileSync(metaPath, 'utf8')) as KernelMeta;
    return { dir, meta: final };
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// initramfs: newc cpio, gzip'd

interface CpioEntry {
  name: string; // without leading slash
  mode: number; // including file type bits
  data?: Buffer;
  rdevMajor?: number;
  rdevMinor?: number;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/** Serialises entries as a "newc" (SVR4 without CRC) cpio archive, as the kernel's initramfs unpacker wants. */
export function cpioNewc(entries: CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer) => {
    chunks.push(b);
    offset += b.length;
  };
  const pad4 = () => {
    const n = (4 - (offset % 4)) % 4;
    if (n) push(Buffer.alloc(n));
  };
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  const all = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  all.forEach((e, i) => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`);
    const isTrailer = e.name === 'TRAILER!!!';
    const fields = [
      isTrailer ? 0 : i + 1, // ino
      e.mode,
      0, // uid
      0, // gid
      (e.mode & 0o170000) === S_IFDIR ? 2 : 1, // nlink
      0, // mtime: fixed, so identical inputs give identical archives
      data.length,
      0, // devmajor
      0, // devminor
      e.rdevMajor ?? 0,
      e.rdevMinor ?? 0,
      name.length,
      0, // check
    ];
    push(Buffer.from(`070701${fields.map(hex).join('')}`, 'ascii'));
    push(name);
    pad4();
    if (data.length) {
      push(data);
      pad4();
    }
  });
  return Buffer.concat(chunks);
}

/** Returns true if the ELF file has no PT_INTERP program header (i.e. it is statically linked). */
function isStaticElf(file: string): boolean {
  const b = fs.readFileSync(file);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return false; // ELF64 LE only
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) if (b.readUInt32LE(phoff + i * phentsize) === 3 /* PT_INTERP */) return false;
  return true;
}

function buildInitramfs(kernelDir: string, meta: KernelMeta, init: Buffer, busybox: Buffer): Buffer {
  const dir = (name: string): CpioEntry => ({ name, mode: S_IFDIR | 0o755 });
  const entries: CpioEntry[] = [
    ...['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'etc', 'lib', 'lib/modules', 'tmp', 'root'].map(dir),
    // The kernel opens /dev/console for init's stdio before /init can mount devtmpfs.
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 },
    { name: 'dev/null', mode: S_IFCHR | 0o666, rdevMajor: 1, rdevMinor: 3 },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: busybox },
    { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
    { name: 'init', mode: S_IFREG | 0o755, data: init },
    { name: 'etc/qnh-modules', mode: S_IFREG | 0o644, data: Buffer.from(meta.modules.map((m) => `${m}\n`).join('')) },
    ...meta.modules.map((m) => ({ name: `lib/modules/${m}.ko`, mode: S_IFREG | 0o644, data: fs.readFileSync(path.join(kernelDir, 'modules', `${m}.ko`)) })),
  ];
  return gzipSync(cpioNewc(entries), { level: 6 });
}

const memo = new Map<string, Promise<GuestImage>>();

/**
 * Builds (or finds in the cache) the guest kernel + initramfs.
 * Cold: ~1 s apt-get download (27 MB) + unpack; warm: a few ms (no apt call while apt's lists are unchanged).
 */
export function buildGuestImage(opts: BuildGuestImageOptions = {}): Promise<GuestImage> {
  const cacheDir = path.resolve(opts.cacheDir ?? DEFAULT_CACHE_DIR);
  const k = JSON.stringify([cacheDir, opts.kernelPackage, opts.busybox, opts.metapackage, opts.modules, opts.initScript]);
  let p = memo.get(k);
  if (!p) {
    p = buildGuestImageUncached(cacheDir, opts);
    memo.set(k, p);
    p.catch(() => memo.delete(k));
  }
  return p;
}

async function buildGuestImageUncached(cacheDir: string, opts: BuildGuestImageOptions): Promise<GuestImage> {
  const log = opts.log ?? (() => {});
  const busyboxPath = opts.busybox ?? '/bin/busybox';
  if (!exists(busyboxPath)) throw new Error(`${busyboxPath} not found: apt-get install -y busybox-static`);
  if (!isStaticElf(busyboxPath)) throw new Error(`${busyboxPath} is not a statically linked x86-64 ELF: apt-get install -y busybox-static`);
  await fsp.mkdir(cacheDir, { recursive: true });

  const ref = await resolveKernel(cacheDir, log, opts.kernelPackage, opts.metapackage);
  const { dir: kernelDir, meta } = await ensureKernel(cacheDir, ref, busyboxPath, log, opts.modules);

  const init = fs.readFileSync(opts.initScript ?? INIT_SCRIPT);
  const busybox = fs.readFileSync(busyboxPath);
  const key = sha256(`format=${FORMAT_VERSION}`, ref.pkg, ref.version, meta.kernelVersion, meta.modules.join(','), init, busybox);
  const imageDir = path.join(cacheDir, `image-${key.slice(0, 24)}`);
  const image: GuestImage = {
    kernel: path.join(kernelDir, 'vmlinuz'),
    initrd: path.join(imageDir, 'initrd.img'),
    kernelVersion: meta.kernelVersion,
    kernelPackage: meta.pkg,
    kernelPackageVersion: meta.version,
    modules: meta.modules,
  };
  if (exists(path.join(imageDir, 'meta.json'))) return image;

  log(`building initramfs ${imageDir}`);
  const tmp = tmpSibling(cacheDir, 'image');
  await fsp.mkdir(tmp);
  try {
    await fsp.writeFile(path.join(tmp, 'initrd.img'), buildInitramfs(kernelDir, meta, init, busybox));
    await fsp.writeFile(path.join(tmp, 'meta.json'), JSON.stringify({ key, ...image, initrd: 'initrd.img', kernel: kernelDir }, null, 2));
    await publish(tmp, imageDir);
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
  return image;
}

// ---------------------------------------------------------------------------------------------
// QEMU

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * Arguments for qemu-system-x86_64 (without the binary itself) that boot `image` with a
 * virtio-net NIC on the netdev `o.netdevId`, which the caller must add (e.g.
 * `-netdev tap,id=n0,fd=3`). The console is the first serial port on QEMU's stdout.
 */
export function guestQemuArgs(image: GuestImage, o: GuestQemuOptions): string[] {
  const count = o.pingCount ?? 3;
  if (!/^[A-Za-z][\w.-]*$/.test(o.netdevId)) throw new Error(`bad netdev id: ${o.netdevId}`);
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(o.mac)) throw new Error(`bad MAC: ${o.mac}`);
  const [addr, prefix, ...rest] = o.guestIp.split('/');
  if (rest.length || !addr || !IPV4.test(addr) || !prefix || !/^\d+$/.test(prefix) || Number(prefix) > 32)
    throw new Error(`bad guest address (want a.b.c.d/len): ${o.guestIp}`);
  if (!IPV4.test(o.peerIp)) throw new Error(`bad peer address: ${o.peerIp}`);
  if (!Number.isInteger(count) || count < 1 || count > 100) throw new Error(`bad ping count: ${count}`);
  if (o.guestIp6 !== undefined && !/^[0-9a-f:]+\/\d{1,3}$/i.test(o.guestIp6)) throw new Error(`bad guest IPv6 address (want ADDR/len): ${o.guestIp6}`);
  const wait = o.waitForNicS;
  if (wait !== undefined && (!Number.isInteger(wait) || wait < 1 || wait > 600)) throw new Error(`bad wait: ${wait}`);
  const append = ['console=ttyS0', 'panic=-1', 'quiet', `qnh_ip=${o.guestIp}`, `qnh_peer=${o.peerIp}`, `qnh_count=${count}`,
    ...(wait !== undefined ? [`qnh_wait=${wait}`] : []), ...(o.hold ? ['qnh_hold=1'] : []), ...(o.guestIp6 ? [`qnh_ip6=${o.guestIp6}`] : [])].join(' ');
  return [
    '-nodefaults',
    '-no-user-config',
    '-accel', o.accel ?? 'tcg',
    '-m', String(o.memoryMiB ?? 256),
    '-smp', '1',
    '-display', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    '-kernel', image.kernel,
    '-initrd', image.initrd,
    '-append', append,
    // romfile= : no iPXE option ROM (not needed for -kernel boot, saves the ipxe-qemu dependency)
    ...(o.noNic ? [] : ['-device', `virtio-net-pci,netdev=${o.netdevId},mac=${o.mac.toLowerCase()},romfile=`]),
  ];
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

/**
 * Runs `argv` (QEMU, possibly behind `ip netns exec NS`) in its own process group, with
 * `extraFds` as fd 3, 4, ...; resolves once the guest printed its result marker and QEMU
 * exited. Rejects (after killing the process group) if `timeoutMs` passes first, or if QEMU
 * exits without the marker; the error message carries the console and stderr.
 */
export function runGuest(argv: string[], o: RunGuestOptions): Promise<GuestRunResult> {
  const [cmd, ...args] = argv;
  if (!cmd) return Promise.reject(new Error('runGuest: empty argv'));
  const start = performance.now();
  return new Promise((resolve, reject) => {
    let consoleText = '';
    let stderr = '';
    const resultMarker = o.resultMarker ?? RESULT_MARKER;
    let marker: string | null = null;
    let scanFrom = 0; // console offset of the first line not yet searched for the marker
    let resultMs = -1;
    let timedOut = false;
    let graceTimer: NodeJS.Timeout | undefined;

    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe', ...(o.extraFds ?? [])],
      detached: true, // own process group, killed as a whole
      env: o.env ?? process.env,
    });
    const onParentExit = () => killGroup(child);
    process.once('exit', onParentExit);

    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, o.timeoutMs);

    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      o.onConsole?.(chunk);
      consoleText += chunk;
      if (marker === null) {
        // Search only the lines not searched yet (a long console would make rescanning it quadratic).
        const m = resultMarker.exec(consoleText.slice(scanFrom).replace(/\r/g, ''));
        scanFrom = consoleText.lastIndexOf('\n') + 1;
        if (m) {
          marker = m[1] ?? '';
          resultMs = performance.now() - start;
          const remaining = o.timeoutMs - resultMs;
          graceTimer = setTimeout(() => killGroup(child), Math.max(0, Math.min(remaining, o.exitGraceMs ?? 20_000)));
        }
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
    });

    let done = false;
    const finish = (err: Error | null, exitCode: number | null, signal: NodeJS.Signals | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(graceTimer);
      process.removeListener('exit', onParentExit);
      killGroup(child); // stragglers in the group, if any
      const text = consoleText.replace(/\r\n?/g, '\n');
      const totalMs = performance.now() - start;
      const details = () => `\n--- console ---\n${text.slice(-8000)}\n--- stderr ---\n${stderr.slice(-4000)}`;
      if (err) return reject(Object.assign(err, { message: err.message + details() }));
      if (marker === null) {
        const why = timedOut ? `timed out after ${o.timeoutMs} ms` : `exited (code ${exitCode}, signal ${signal}) before printing the result marker`;
        return reject(new Error(`guest ${why}: ${argv.join(' ')}${details()}`));
      }
      resolve({ pingOk: marker === 'ok', result: marker, console: text, stderr, exitCode, signal, resultMs, totalMs });
    };
    child.once('error', (err) => finish(err, null, null));
    // 'close' (not 'exit'): all console output has been read by then.
    child.once('close', (code, signal) => finish(null, code, signal));
  });
}
