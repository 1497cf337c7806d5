// Test support for libvirt's unprivileged session mode (qemu:///session, as
// virt-manager and GNOME Boxes use it) with macvtaps made by the helpers.
//
// openSession() gives a test everything it needs, and removes all of it when
// the test ends, passed, failed or killed:
//   - a real user (useradd qnh-lv-XXXXXX, shell /usr/sbin/nologin, no home
//     beyond a temporary one), userdel'd at the end;
//   - a root-owned 0755 directory with a file-capability copy of the pinned
//     node (the helpers' capabilities: AT_SECURE as for the installed
//     executables), the policy files and any bridge_helper wrapper;
//   - the user's HOME (0700, theirs) with XDG_RUNTIME_DIR inside it and
//     copies of the guest's kernel and initramfs (test/support/guest.ts);
//   - the network layout of the QEMU end-to-end tests: namespace "host" with
//     veth v0 (the macvtaps' lower device), its peer v1 in namespace "peer"
//     at 169.254.77.1/16;
//   - virsh -c qemu:///session run as the user inside "host": the session
//     daemon (libvirtd --timeout=120, and virtlogd) it starts inherits that
//     network namespace, and every QEMU it runs does too.
// The cleanup is done by a guard process (session-guard.ts) started before
// anything is made: it holds the read end of a pipe whose write end only
// this process has, and cleans up when that closes, in the test's teardown
// or when tap kills a test that timed out (SIGALRM, then SIGKILL a second
// later: no time for a teardown). The teardown waits for it and fails the
// test on anything left behind.

import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { HELPER_CAPS } from '../../packaging/deb.ts';
import { buildGuestImage, guestQemuArgs, RESULT_MARKER } from '../support/guest.ts';
import { ip, type Netns } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import type { GuardState } from './session-guard.ts';

export const GUEST_MAC = '52:54:00:77:00:02';
export const GUEST_IP = '169.254.77.2/16';
export const PEER_IP = '169.254.77.1';

/** Tools the libvirt tests need; under CI their absence is a failure (see privilegedSkipReason). */
export function libvirtSkipReason(): string | false {
  return privilegedSkipReason(['ip', 'setcap', 'setpriv', 'useradd', 'userdel', 'virsh', 'libvirtd', 'qemu-system-x86_64', 'apt-get', 'dpkg-deb']);
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export interface ProcInfo {
  pid: number;
  comm: string;
  cmdline: string[];
  state: string;
}

export interface Session {
  user: { name: string; uid: number; gid: number };
  /** Root-owned 0755: the file-capability node, policies, wrappers. */
  dir: string;
  /** The user's HOME (0700, theirs); XDG_RUNTIME_DIR is `${home}/run`. */
  home: string;
  runtimeDir: string;
  /** Copies of the guest image in HOME, readable by the user. */
  kernel: string;
  initrd: string;
  capNode: string;
  host: Netns;
  peer: Netns;
  /** Writes a root-owned 0644 policy file in `dir`; returns its path. */
  policy(text: string): string;
  /** argv prefix that runs `program` from the sources with the policy, privileged through the file-capability node; its own args follow. */
  helperArgv(program: string, policy: string): string[];
  /** Runs a helper as the user in "host". */
  helper(program: string, policy: string, args: string[]): SpawnSyncReturns<string>;
  /** Runs a helper action as root in "host" (--list, --gc: root's view). */
  rootHelper(args: string[]): SpawnSyncReturns<string>;
  /** `virsh -c qemu:///session ARGS` as the user in "host". */
  virsh(args: string[], timeoutMs?: number): SpawnSyncReturns<string>;
  /** Writes a root-owned 0755 executable (e.g. a bridge_helper wrapper). */
  writeRootScript(path: string, text: string): void;
  /** Writes ~/.config/libvirt/qemu.conf (read when the session daemon starts). */
  writeQemuConf(text: string): void;
  /** Stops the user's libvirtd (SIGTERM by pid) and waits for it to go; the next virsh starts a new one. */
  stopDaemon(): Promise<void>;
  /** The user's live processes (zombies excluded). */
  processes(): ProcInfo[];
  /** Writes a file in HOME (relative path), owned by the user, 0600. */
  userFile(name: string, text: string): string;
}

const FIELD = (text: string, name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';

/** Every process whose real uid is `uid`, zombies included, read from /proc. */
function processesOf(uid: number): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      if (Number(FIELD(status, 'Uid').split(/\s+/)[0]) !== uid) continue;
      let cmdline: string[] = [];
      try {
        cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
      } catch {
        /* exiting */
      }
      out.push({ pid: Number(name), comm: FIELD(status, 'Name'), cmdline, state: FIELD(status, 'State').slice(0, 1) });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** Bounded asynchronous wait for `cond`; resolves with whether it became true. */
export async function waitFor(cond: () => boolean, timeoutMs: number, stepMs = 100): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

function must(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr.trim()}`);
  return r.stdout;
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');

/** A namespace made here (the guard deletes it, not a teardown of netns.ts). */
function netns(name: string): Netns {
  ip('netns', 'add', name);
  const ns: Netns = {
    name,
    exec: ['ip', 'netns', 'exec', name],
    ip: (...args) => ip('-n', name, ...args),
    macvtaps: () => (JSON.parse(ip('-n', name, '-d', '-j', 'link', 'show')) as Array<Record<string, any>>)
      .filter((l) => l.linkinfo?.info_kind === 'macvtap').map((l) => l.ifname as string),
    link: (linkName) => {
      const r = spawnSync('ip', ['-n', name, '-d', '-j', 'link', 'show', 'dev', linkName], { encoding: 'utf8' });
      return r.status === 0 ? (JSON.parse(r.stdout) as Array<Record<string, any>>)[0] : undefined;
    },
    destroy: () => void spawnSync('ip', ['netns', 'del', name]),
  };
  ns.ip('link', 'set', 'lo', 'up');
  return ns;
}

let sessionCounter = 0;

/** Sets up the user, the directories, the guest image copies and the namespaces; all removed when `t` ends (or the process dies). */
export async function openSession(t: Teardown, label: string): Promise<Session> {
  const image = await buildGuestImage();

  // The guard first: from here on, whatever is recorded in the state file is removed however this process ends.
  const tag = `${process.pid}-${++sessionCounter}`;
  const stateFile = `/tmp/qnh-lv-guard-${tag}-${randomBytes(3).toString('hex')}.json`;
  const state: GuardState = { namespaces: [] };
  const record = () => {
    writeFileSync(`${stateFile}.new`, JSON.stringify(state), { mode: 0o600 });
    renameSync(`${stateFile}.new`, stateFile);
  };
  record();
  const guard = spawn(process.execPath, [new URL('./session-guard.ts', import.meta.url).pathname, stateFile], {
    detached: true, // its own session: not killed with this process
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, // not tap's NODE_OPTIONS
  });
  let guardOut = '';
  guard.stdout!.setEncoding('utf8').on('data', (c: string) => (guardOut += c));
  guard.stderr!.setEncoding('utf8').on('data', (c: string) => (guardOut += c));
  const guardExit = new Promise<number | null>((resolve) => guard.once('close', (code) => resolve(code)));
  const finish = async () => {
    guard.stdin!.end();
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([guardExit, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 90_000)))]);
    clearTimeout(timer);
    if (code === 'timeout') throw new Error(`libvirt session cleanup did not finish within 90 s (guard pid ${guard.pid}): ${guardOut}`);
    if (code !== 0) throw new Error(`libvirt session cleanup left things behind: ${guardOut.trim()}`);
  };
  t.teardown(finish);

  const dir = mkdtempSync('/tmp/qnh-lv-');
  state.dir = dir;
  record();
  chmodSync(dir, 0o755);

  const name = `qnh-lv-${randomBytes(3).toString('hex')}`;
  const home = `${dir}/home`;
  // Other tests add users too: /etc/passwd's lock may be taken for a moment (bounded retries).
  const useradd = ['--no-create-home', '--home-dir', home, '--shell', '/usr/sbin/nologin', '--comment', 'qemu-net-helper libvirt test', name];
  for (let attempt = 1; ; attempt++) {
    const r = spawnSync('useradd', useradd, { encoding: 'utf8', timeout: 30_000 });
    if (r.status === 0) break;
    if (attempt >= 20 || !/lock/i.test(r.stderr)) throw new Error(`useradd ${name} failed (${r.status ?? r.signal}): ${r.stderr.trim()}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  // Recorded once made (never a name that may be someone else's).
  state.user = name;
  record();
  const uid = Number(must('id', ['-u', name]).trim());
  const gid = Number(must('id', ['-g', name]).trim());

  mkdirSync(home, { mode: 0o700 });
  chownSync(home, uid, gid);
  const runtimeDir = `${home}/run`;
  mkdirSync(runtimeDir, { mode: 0o700 });
  chownSync(runtimeDir, uid, gid);
  const kernel = `${home}/vmlinuz`;
  const initrd = `${home}/initrd.img`;
  for (const [from, to] of [[image.kernel, kernel], [image.initrd, initrd]] as const) {
    copyFileSync(from, to);
    chmodSync(to, 0o644);
    chownSync(to, uid, gid);
  }

  const capNode = `${dir}/node`;
  copyFileSync(process.execPath, capNode);
  chmodSync(capNode, 0o755);
  must('setcap', [HELPER_CAPS, capNode]);

  // As test/support/netns.ts hostAndPeer: v0 in "host", its peer v1 in "peer" with the peer's address.
  const hostName = `qnh-${label}host-${tag}`;
  const peerName = `qnh-${label}peer-${tag}`;
  const host = netns(hostName);
  state.hostNs = hostName;
  state.namespaces.push(hostName);
  record();
  const peer = netns(peerName);
  state.namespaces.push(peerName);
  record();
  host.ip('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1', 'netns', peer.name);
  host.ip('link', 'set', 'v0', 'up');
  peer.ip('addr', 'add', `${PEER_IP}/16`, 'dev', 'v1');
  peer.ip('link', 'set', 'v1', 'up');

  const asUser = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--init-groups', 'env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin'];
  let policyCounter = 0;
  const s: Session = {
    user: { name, uid, gid },
    dir,
    home,
    runtimeDir,
    kernel,
    initrd,
    capNode,
    host,
    peer,
    policy(text) {
      const p = `${dir}/policy-${++policyCounter}.conf`;
      writeFileSync(p, text, { mode: 0o644 });
      return p;
    },
    helperArgv: (program, policy) => [capNode, `${REPO}test/support/helper-with-seams.ts`, program, `--seam-policy=${policy}`, '--'],
    helper(program, policy, args) {
      const argv = [...host.exec, ...asUser, ...s.helperArgv(program, policy), ...args];
      return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
    },
    rootHelper(args) {
      const argv = [...host.exec, 'env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', process.execPath, `${REPO}helpers/qemu-net-helper-vepa.ts`, ...args];
      return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
    },
    virsh(args, timeoutMs = 60_000) {
      const argv = [...host.exec, ...asUser, `HOME=${home}`, `XDG_RUNTIME_DIR=${runtimeDir}`, 'virsh', '-q', '-c', 'qemu:///session', ...args];
      return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: timeoutMs });
    },
    writeRootScript(path, text) {
      writeFileSync(path, text, { mode: 0o755 });
      chmodSync(path, 0o755);
    },
    writeQemuConf(text) {
      for (const d of [`${home}/.config`, `${home}/.config/libvirt`]) {
        mkdirSync(d, { recursive: true, mode: 0o700 });
        chownSync(d, uid, gid);
      }
      s.userFile('.config/libvirt/qemu.conf', text);
    },
    async stopDaemon() {
      const daemons = () => processesOf(uid).filter((p) => p.comm === 'libvirtd' && p.state !== 'Z');
      for (const p of daemons()) process.kill(p.pid, 'SIGTERM');
      if (!(await waitFor(() => daemons().length === 0, 15_000))) throw new Error(`libvirtd of ${name} did not stop`);
    },
    processes: () => processesOf(uid).filter((p) => p.state !== 'Z'),
    userFile(rel, text) {
      const p = `${home}/${rel}`;
      writeFileSync(p, text, { mode: 0o600 });
      chownSync(p, uid, gid);
      return p;
    },
  };
  return s;
}

export interface DomainOptions {
  name: string;
  /** The <interface> element. */
  iface: string;
  /** Serial console file (written by libvirt as the user; read here as root). */
  consolePath: string;
  pingCount?: number;
}

/**
 * A transient TCG domain booting the test guest directly (kernel + initrd), with the
 * kernel command line guestQemuArgs gives QEMU. No ACPI (libvirt then passes -no-acpi):
 * the guest's poweroff halts it and the domain stays until `virsh destroy`.
 */
export function domainXml(s: Session, o: DomainOptions): string {
  const args = guestQemuArgs({ kernel: s.kernel, initrd: s.initrd, kernelVersion: '', kernelPackage: '', kernelPackageVersion: '', modules: [] },
    { netdevId: 'n0', mac: GUEST_MAC, guestIp: GUEST_IP, peerIp: PEER_IP, pingCount: o.pingCount });
  const cmdline = args[args.indexOf('-append') + 1]!;
  return `<domain type='qemu'>
  <name>${xml(o.name)}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${xml(s.kernel)}</kernel>
    <initrd>${xml(s.initrd)}</initrd>
    <cmdline>${xml(cmdline)}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    ${o.iface.trim()}
    <serial type='file'><source path='${xml(o.consolePath)}'/><target port='0'/></serial>
    <console type='file'><source path='${xml(o.consolePath)}'/><target type='serial' port='0'/></console>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

/** `<interface type='ethernet'>` on an existing (persistent) macvtap: libvirt opens its /dev/tapN itself, once per queue. */
export function ethernetInterface(ifname: string, queues = 1): string {
  return `<interface type='ethernet'>
      <mac address='${GUEST_MAC}'/>
      <target dev='${xml(ifname)}' managed='no'/>
      <model type='virtio'/>${queues > 1 ? `\n      <driver name='qemu' queues='${queues}'/>` : ''}
      <rom enabled='no'/>
    </interface>`;
}

/** `<interface type='bridge'>`: in session mode libvirt runs qemu.conf's bridge_helper with --use-vnet --br=BRIDGE --fd=N. */
export function bridgeInterface(bridge: string): string {
  return `<interface type='bridge'>
      <source bridge='${xml(bridge)}'/>
      <mac address='${GUEST_MAC}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>`;
}

export interface BootResult {
  pingOk: boolean;
  console: string;
  /** The domain's QEMU. */
  qemu: ProcInfo;
  /** Milliseconds from `virsh create` to the result line. */
  resultMs: number;
}

let domainCounter = 0;
export function domainName(s: Session): string {
  return `${s.user.name}-${++domainCounter}`;
}

/** The QEMU of domain `name`, if it runs. */
export function qemuOf(s: Session, name: string): ProcInfo | undefined {
  return s.processes().find((p) => p.comm.startsWith('qemu-system') && p.cmdline.some((a) => a.startsWith(`guest=${name},`)));
}

/** Paths of /proc/PID/fd entries that point at `target`. */
export function fdsTo(pid: number, target: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) out.push(fd);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** Every process of the user holding an fd on `target`. */
export function holdersOf(s: Session, target: string): number[] {
  return s.processes().filter((p) => {
    try {
      return fdsTo(p.pid, target).length > 0;
    } catch {
      return false;
    }
  }).map((p) => p.pid);
}

/** Thrown when `virsh create` fails; carries libvirt's message. */
export class CreateError extends Error {
  readonly stderr: string;
  constructor(stderr: string) {
    super(`virsh create failed: ${stderr.trim()}`);
    this.stderr = stderr;
  }
}

/**
 * `virsh create` a domain with `iface`, waits (bounded) for the guest's result line on
 * the console file, and returns it. The domain is left running (halted guest): the caller
 * destroys it. On a timeout the domain is destroyed and the console is in the error.
 */
export async function boot(s: Session, iface: string, o: { timeoutMs?: number; name?: string } = {}): Promise<BootResult & { name: string }> {
  const name = o.name ?? domainName(s);
  const consolePath = `${s.home}/${name}.console`;
  const xmlPath = s.userFile(`${name}.xml`, domainXml(s, { name, iface, consolePath }));
  const start = Date.now();
  const created = s.virsh(['create', xmlPath]);
  if (created.status !== 0) throw new CreateError(created.stderr || created.stdout || String(created.error));
  const text = () => {
    try {
      return readFileSync(consolePath, 'utf8').replace(/\r\n?/g, '\n');
    } catch {
      return '';
    }
  };
  const qemu = qemuOf(s, name);
  const timeoutMs = o.timeoutMs ?? 120_000;
  // Until the result line, or QEMU's end (then there will be none).
  const seen = qemu !== undefined && await waitFor(() => RESULT_MARKER.test(text()) || qemuOf(s, name) === undefined, timeoutMs, 200) && RESULT_MARKER.test(text());
  if (!seen) {
    const why = !qemu ? 'no QEMU process after virsh create' : qemuOf(s, name) ? `no result within ${timeoutMs} ms` : 'QEMU exited without a result';
    s.virsh(['destroy', name]);
    throw new Error(`domain ${name}: ${why}\n--- console ---\n${text().slice(-6000)}\n--- domain log ---\n${domainLog(s, name).slice(-4000)}`);
  }
  const m = RESULT_MARKER.exec(text())!;
  return { name, pingOk: m[1] === 'ok', console: text(), qemu, resultMs: Date.now() - start };
}

/** The domain's QEMU log (libvirt writes QEMU's command line there). */
export function domainLog(s: Session, name: string): string {
  try {
    return readFileSync(`${s.home}/.cache/libvirt/qemu/log/${name}.log`, 'utf8');
  } catch {
    return '';
  }
}

/** Files under /dev owned by the user (a persistent link's node while it exists). */
export function devNodesOf(s: Session): string[] {
  return spawnSync('find', ['/dev', '-xdev', '-user', String(s.user.uid)], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l !== '');
}
