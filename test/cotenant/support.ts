// The machinery of the hostile co-tenant suite (test/cotenant/suite.ts):
// the installed Debian package, three real unprivileged users, the agents
// they run (agent.py), the captured syslog, and the checks that every test
// ends with.
//
// Where the package is installed. deb.test.ts throws under CI when it finds
// the package installed, and it cannot be told to wait (it takes no lock, and
// tap's `jobs`/`serial` settings live in package.json, which this suite does
// not own). Files are started in name order with two jobs, so a lock could
// only serialise these files among themselves; whether deb.test.ts starts
// while this suite has the package installed would be left to timing. So this
// suite never installs on the host at all: each test file starts one holder
// process in a mount namespace of its own (`unshare -m --propagation slave`)
// that mounts overlays over /usr, /etc and /var (their upper layers on a
// tmpfs), and everything of the suite that must see the package (dpkg -i,
// useradd, the policy, every helper run, every user's process) runs in that
// mount namespace (nsenter --mount). It is the real package, installed by the
// real dpkg, its postinst running setcap (or falling back to setuid root)
// on files that every process of the suite sees at /usr/libexec; only the host
// does not see it: `dpkg -s qemu-net-helper` there says not installed
// throughout, whatever the two files and deb.test.ts do at the same time, and
// the install (and the users) vanish with the namespace even if the test
// process is killed. Teardown still purges it (and userdels the users), and
// checks the purge. /dev, /sys, /proc, the network namespaces (host mounts
// propagate into the slave namespace) and the kernel are the host's.
//
// The syslog. The helpers send to /dev/log, which does not exist on this
// machine; a mount point is needed for a private socket there. If /dev/log is
// missing, an empty root-owned regular file is put there for as long as a file
// of this suite runs (senders on the host get ECONNREFUSED, as with no
// syslog), and the holder bind-mounts its own socket over it in its
// namespace. The files share the placeholder under flock(1) held on this
// directory: each holds a shared lock while it runs; the one that can then
// take the lock exclusively removes the placeholder. A real /dev/log is only
// covered in the namespace, never touched.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildAll } from '../../packaging/build.ts';
import { CONFFILE, DEB_BUILD, LIBEXEC, PACKAGE, buildDeb } from '../../packaging/deb.ts';
import type { Netns } from '../support/netns.ts';

export type Mode = 'file-caps' | 'setuid';
export type Program = 'vepa' | 'bridge' | 'passthrough';
export const PROGRAMS: readonly Program[] = ['vepa', 'bridge', 'passthrough'];
export const PYTHON = '/usr/bin/python3';
const HERE = fileURLToPath(new URL('.', import.meta.url));
const AGENT_SOURCE = `${HERE}agent.py`;
const SYSLOG = '/dev/log';
/** What setpriv leaves the users: the helpers replace it anyway; python and the agents need this much. */
const USER_PATH = 'PATH=/usr/bin:/bin';

export function helperPath(program: Program): string {
  return `${LIBEXEC}/qemu-net-helper-${program}`;
}

// ------------------------------------------------------------------ processes

export interface Exit {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  pid: number;
}

/** Runs argv to completion (killed after timeoutMs), without blocking the event loop. */
export function run(argv: readonly string[], opts: { timeoutMs?: number; input?: string; onSpawn?: (pid: number) => void } = {}): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    const pid = child.pid ?? 0;
    if (pid) opts.onSpawn?.(pid);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (status, signal) => { clearTimeout(timer); resolve({ status, signal, stdout, stderr, pid }); });
  });
}

/** Synchronous, for quick root commands; throws with stderr on failure unless `check` is false. */
export function sh(argv: readonly string[], check = true): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 120_000 });
  if (check && r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status ?? r.signal}): ${(r.stderr ?? '').trim()}${r.error ? ` ${r.error.message}` : ''}`);
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

type Json = Record<string, any>;

/** A long-running process that prints JSON lines (an agent, the holder). */
/** A helper run whose output blocked: its /proc status fields while it waited to write, and how it ended. */
export interface BlockedRun {
  status: number | null;
  signal: number | null;
  while_writing: { Uid: string[]; Gid: string[]; CapEff: string[]; CapPrm: string[] } | null;
  stdout: string;
  stderr: string;
}

export class JsonProc {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: Json[] = [];
  stderr = '';
  readonly exited: Promise<{ status: number | null; signal: NodeJS.Signals | null }>;
  private done = false;
  private waiters: Array<() => void> = [];

  readonly what: string;

  constructor(what: string, argv: readonly string[]) {
    this.what = what;
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.pid = this.child.pid ?? 0;
    let buf = '';
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(line) as Json);
        } catch {
          this.lines.push({ unparsed: line });
        }
      }
      this.wake();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => { if (this.stderr.length < 65536) this.stderr += d; });
    this.child.stdin!.on('error', () => {});
    this.exited = new Promise((resolve) => {
      this.child.on('close', (status, signal) => { this.done = true; this.wake(); resolve({ status, signal }); });
      this.child.on('error', (err) => { this.stderr += String(err); this.done = true; this.wake(); resolve({ status: null, signal: null }); });
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get alive(): boolean {
    return !this.done;
  }

  /** The first line (already printed or still to come) that has `key`; rejects when the process ends without it or time runs out. */
  next(key: string, timeoutMs = 30_000): Promise<Json> {
    return this.nth(key, 1, timeoutMs);
  }

  /** The n-th line (1-based) that has `key`. */
  async nth(key: string, n: number, timeoutMs = 30_000): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.filter((l) => key in l)[n - 1];
      if (found) return found;
      if (this.done) throw new Error(`${this.what} ended without printing "${key}" #${n} (stderr: ${this.stderr.trim().slice(0, 500)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.what} printed no "${key}" #${n} within ${timeoutMs} ms (stderr: ${this.stderr.trim().slice(0, 500)})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  write(text: string): void {
    if (this.alive) this.child.stdin!.write(text);
  }

  /** EOF on stdin (agents then end), then SIGKILL if it has not ended within graceMs. */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.alive) return;
    this.child.stdin!.end();
    // A process it forked may hold its stdout after it is gone: then stop listening too.
    const timer = setTimeout(() => {
      this.child.kill('SIGKILL');
      this.child.stdout!.destroy();
      this.child.stderr!.destroy();
    }, graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  kill(): void {
    if (this.alive) this.child.kill('SIGKILL');
  }
}

/** Kills a helper process an agent started, if that pid still runs a helper (root may signal it). */
export function killHelper(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('qemu-net-helper')) return;
    process.kill(pid, signal);
  } catch {
    // gone
  }
}

/** A reproducible source of random numbers (mulberry32): test/support/random.ts. */
export { prng } from '../support/random.ts';

// ------------------------------------------------------------------ syslog lines

export interface LogLine {
  pri: number;
  facility: number;
  severity: number;
  tag: string;
  pid: number;
  message: string;
  raw: string;
}

export function parseSyslog(raw: string): LogLine | undefined {
  const m = /^<(\d{1,3})>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ([^\[\s]+)\[(\d+)\]: (.*)$/s.exec(raw);
  if (!m) return undefined;
  const pri = Number(m[1]);
  return { pri, facility: pri >> 3, severity: pri & 7, tag: m[2]!, pid: Number(m[3]), message: m[4]!, raw };
}

const SAFE_VALUE = /^[A-Za-z0-9_.:,/@+-]*$/;

/**
 * Splits an audit message into its fields, strictly: `key=value` words separated by one
 * space, each value either plain ([A-Za-z0-9_.:,/@+-]*) or a JSON string. Anything else
 * (a value with '=' or a quote in it, a repeated key) is an error: a field a caller could
 * have forged.
 */
export function auditFields(message: string): Map<string, string> {
  const fields = new Map<string, string>();
  let i = 0;
  while (i < message.length) {
    const key = /^[a-z][a-z0-9_]*=/.exec(message.slice(i));
    if (!key) throw new Error(`not a key=value field at ${JSON.stringify(message.slice(i, i + 40))}`);
    const name = key[0].slice(0, -1);
    i += key[0].length;
    let value: string;
    if (message[i] === '"') {
      let j = i + 1;
      while (j < message.length && message[j] !== '"') j += message[j] === '\\' ? 2 : 1;
      if (j >= message.length) throw new Error(`unterminated quoted value of ${name}`);
      value = JSON.parse(message.slice(i, j + 1)) as string;
      i = j + 1;
    } else {
      const end = message.indexOf(' ', i);
      value = message.slice(i, end < 0 ? message.length : end);
      if (!SAFE_VALUE.test(value)) throw new Error(`unquoted value of ${name} has characters a caller could use to forge fields: ${JSON.stringify(value)}`);
      i += value.length;
    }
    if (fields.has(name)) throw new Error(`field ${name} appears twice`);
    fields.set(name, value);
    if (i < message.length) {
      if (message[i] !== ' ') throw new Error(`no space after field ${name}`);
      i++;
    }
  }
  return fields;
}

// ------------------------------------------------------------------ users

export interface User {
  role: 'attacker' | 'victim' | 'nobody-allowed';
  name: string;
  uid: number;
  gid: number;
}

export const ROOT = 'root' as const;
export type Who = User | typeof ROOT;

// ------------------------------------------------------------------ the host

export interface OwnOptions {
  proto?: 'socketpair' | 'fd';
  hold?: boolean;
  killOnFd?: boolean;
  stopOnLink?: boolean;
  zombie?: boolean;
  /** Pass the fds on to a child that keeps them, and exit (a manager handing them to QEMU). */
  handoff?: boolean;
  connect?: string;
  /** Variables for the helper (env VAR=... before it). */
  env?: string[];
  /** A wrapper the helper is exec'd through, e.g. ['sh', '-c', 'ulimit -n 20; exec "$0" "$@"']. */
  pre?: string[];
  timeoutS?: number;
}

export interface OwnResult {
  helper_pid: number;
  owner_pid: number;
  status: number | null;
  signal: number | null;
  killed_on_fd: boolean;
  /** With handoff: the child that keeps the fds. */
  holder_pid?: number;
  stopped_link: string | null;
  data: string;
  record: Record<string, string> | null;
  fds: Array<{ fd: number; chr: boolean; rdev: string; tun_name?: string; tun_flags?: number; tun_error?: string }>;
  stdout: string;
  stderr: string;
}

export interface Occupation {
  proc: JsonProc;
  indexes: number[];
  /** Makes again the nodes of ours that went away. */
  refresh(): Promise<void>;
  /** Keeps the RTNL lock busy from the user's namespace for at most `seconds` (link add/del in a loop)... */
  churn(seconds: number): Promise<void>;
  /** ...until this. */
  calm(): Promise<void>;
}

/** A stand-in for QEMU run by a user: owns whatever the helper hands it. */
export class Owner {
  readonly proc: JsonProc;
  private readonly onHelper: (pid: number) => void;
  constructor(proc: JsonProc, onHelper: (pid: number) => void) {
    this.proc = proc;
    this.onHelper = onHelper;
  }

  async helperPid(timeoutMs = 30_000): Promise<number> {
    const pid = (await this.proc.next('spawned', timeoutMs)).spawned as number;
    this.onHelper(pid);
    return pid;
  }

  async result(timeoutMs = 40_000): Promise<OwnResult> {
    await this.helperPid(timeoutMs);
    return (await this.proc.next('result', timeoutMs)).result as OwnResult;
  }

  /** Ends the owner (its fds close; a link it owned becomes stale). */
  stop(): Promise<void> {
    return this.proc.stop();
  }
}

interface Placeholder {
  lock: JsonProc | undefined;
  created: boolean;
}

export class CoTenantHost {
  readonly tmp: string;
  readonly agent: string;
  readonly syslogFile: string;
  holder!: JsonProc;
  users!: { attacker: User; victim: User; nobody: User };
  packagedPolicy = '';
  installLog = '';
  private placeholder: Placeholder = { lock: undefined, created: false };
  private markCounter = 0;
  private procs = new Set<JsonProc>();
  private helperPids = new Set<number>();
  private childPids = new Set<number>();

  readonly mode: Mode;

  constructor(mode: Mode) {
    this.mode = mode;
    // Root's, entered by everyone: the users read agent.py here.
    this.tmp = mkdtempSync('/tmp/qnh-cotenant-');
    chmodSync(this.tmp, 0o755);
    this.agent = `${this.tmp}/agent.py`;
    copyFileSync(AGENT_SOURCE, this.agent);
    chmodSync(this.agent, 0o644);
    this.syslogFile = `${this.tmp}/syslog.jsonl`;
    writeFileSync(this.syslogFile, '', { mode: 0o600 });
  }

  // ---------------------------------------------------------------- setup

  /** Builds the .deb from this checkout (into a directory of its own). */
  async buildPackage(): Promise<string> {
    const dist = `${this.tmp}/dist`;
    mkdirSync(dist, { mode: 0o700 });
    const info = await buildAll({ ...DEB_BUILD, distDir: dist });
    return buildDeb(dist, info, 'zstd');
  }

  /** The placeholder at /dev/log (see the top of this file), under a shared lock. */
  async takePlaceholder(): Promise<void> {
    const lock = new JsonProc('flock --shared', ['flock', '--shared', HERE, PYTHON, '-c', 'import json,sys; print(json.dumps({"locked": 1}), flush=True); sys.stdin.read()']);
    this.placeholder.lock = lock;
    await lock.next('locked', 120_000);
    try {
      closeSync(openSync(SYSLOG, 'wx', 0o644));
      this.placeholder.created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }

  /**
   * Runs fn while holding an exclusive flock shared by the suite's files (on agent.py in the
   * checkout): for the races that another file's racing on the same two CPUs would spoil.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const lock = new JsonProc('flock --exclusive', ['flock', '--exclusive', AGENT_SOURCE, PYTHON, '-c', 'import json,sys; print(json.dumps({"locked": 1}), flush=True); sys.stdin.read()']);
    try {
      await lock.next('locked', 120_000);
      return await fn();
    } finally {
      await lock.stop();
    }
  }

  private async releasePlaceholder(): Promise<void> {
    await this.placeholder.lock?.stop();
    // Whoever can lock exclusively now is the last: it removes our placeholder (an empty regular file, never a real syslog socket).
    sh(['flock', '--exclusive', '--nonblock', HERE, 'sh', '-c',
      `if [ -f ${SYSLOG} ] && [ ! -s ${SYSLOG} ] && [ ! -L ${SYSLOG} ] && [ "$(stat -c %u ${SYSLOG})" = 0 ]; then rm -f ${SYSLOG}; fi`], false);
  }

  async startHolder(): Promise<void> {
    const work = `${this.tmp}/ns`;
    mkdirSync(work, { mode: 0o755 });
    this.holder = new JsonProc('the namespace holder', ['unshare', '--mount', '--propagation', 'slave', PYTHON, this.agent, 'holder', work, this.syslogFile]);
    await this.holder.next('ready', 30_000);
  }

  /** argv prefix: run as root in the suite's mount namespace. */
  get inNs(): string[] {
    return ['nsenter', `--mount=/proc/${this.holder.pid}/ns/mnt`, '--'];
  }

  /** A path as the suite's mount namespace sees it, for reading and writing from here. */
  nsPath(path: string): string {
    return `/proc/${this.holder.pid}/root${path}`;
  }

  /** dpkg -i in the namespace; the setuid mode installs with setcap out of postinst's reach, so postinst takes its fallback. */
  installPackage(deb: string): void {
    if (sh([...this.inNs, 'dpkg-query', '-W', '-f=${Status}', PACKAGE], false).stdout.includes('installed')) {
      sh([...this.inNs, 'dpkg', '--purge', PACKAGE]); // someone's install on the host, seen through the overlay: purged here only
    }
    // The namespace's own copy of dpkg's statoverride file, without any override of our helpers:
    // through the overlay it would otherwise follow the host's, where test/packaging/deb.test.ts
    // adds one for a while (postinst then leaves mode and capabilities alone: seen as 0750, no caps).
    sh([...this.inNs, 'sh', '-c', "f=/var/lib/dpkg/statoverride; [ ! -e \"$f\" ] || sed -i '\\#/usr/libexec/qemu-net-#d' \"$f\""]);
    const setcap = sh([...this.inNs, 'sh', '-c', 'command -v setcap'], false).stdout.trim();
    const hidden = `${setcap}.qnh-cotenant-hidden`;
    if (this.mode === 'setuid' && setcap) sh([...this.inNs, 'mv', setcap, hidden]);
    try {
      const r = sh([...this.inNs, 'dpkg', '-i', '--no-triggers', deb]);
      this.installLog = r.stdout + r.stderr;
    } finally {
      if (this.mode === 'setuid' && setcap) sh([...this.inNs, 'mv', hidden, setcap]);
    }
    this.packagedPolicy = readFileSync(this.nsPath(CONFFILE), 'utf8');
  }

  /** Three users with ids no one on the host or in the other file's namespace has. */
  createUsers(rng: () => number): void {
    const taken = (file: string, id: number) => readFileSync(this.nsPath(file), 'utf8').split('\n').some((l) => l.split(':')[2] === String(id));
    const base0 = this.mode === 'file-caps' ? 41000 : 51000;
    let base = 0;
    for (let tries = 0; tries < 50; tries++) {
      const b = base0 + 3 * Math.floor(rng() * 3000);
      if ([0, 1, 2].every((k) => !taken('/etc/passwd', b + k) && !taken('/etc/group', b + k))) {
        base = b;
        break;
      }
    }
    if (!base) throw new Error('no free uids for the test users');
    const tag = Math.floor(rng() * 0xffffff).toString(16).padStart(6, '0');
    const make = (role: User['role'], prefix: string, k: number): User => {
      const user = { role, name: `qnh-${prefix}-${tag}`, uid: base + k, gid: base + k };
      sh([...this.inNs, 'groupadd', '-g', String(user.gid), user.name]);
      sh([...this.inNs, 'useradd', '-u', String(user.uid), '-g', String(user.gid), '-K', 'UID_MAX=65000', '--no-create-home', '--shell', '/usr/sbin/nologin', user.name]);
      return user;
    };
    this.users = { attacker: make('attacker', 'att', 0), victim: make('victim', 'vic', 1), nobody: make('nobody-allowed', 'non', 2) };
  }

  get allUsers(): User[] {
    return this.users ? [this.users.attacker, this.users.victim, this.users.nobody] : [];
  }

  // ---------------------------------------------------------------- running things

  /** argv: `argv` as `who` in network namespace `ns`, with a clean environment plus `env`. */
  as(who: Who, ns: Netns, argv: readonly string[], env: readonly string[] = [], pre: readonly string[] = []): string[] {
    const drop = who === ROOT ? [] : ['setpriv', `--reuid=${who.uid}`, `--regid=${who.gid}`, '--init-groups'];
    return [...this.inNs, 'ip', 'netns', 'exec', ns.name, ...drop, 'env', '-i', USER_PATH, ...env, ...pre, ...argv];
  }

  /** Runs an installed helper; `pre` goes between env and the helper (e.g. sh -c 'ulimit ...; exec "$0" "$@"'). */
  helper(who: Who, ns: Netns, program: Program, args: readonly string[], opts: { env?: string[]; pre?: string[]; onSpawn?: (pid: number) => void; timeoutMs?: number } = {}): Promise<Exit> {
    return run(this.as(who, ns, [helperPath(program), ...args], opts.env, opts.pre), {
      timeoutMs: opts.timeoutMs ?? 30_000,
      onSpawn: (pid) => { this.helperPids.add(pid); opts.onSpawn?.(pid); },
    });
  }

  /** Starts an agent as `who` in `ns`. */
  agentProc(what: string, who: Who, ns: Netns, args: readonly string[], wrap: readonly string[] = []): JsonProc {
    const p = new JsonProc(what, this.as(who, ns, [...wrap, PYTHON, this.agent, ...args]));
    this.procs.add(p);
    return p;
  }

  own(who: Who, ns: Netns, program: Program, args: readonly string[], opts: OwnOptions = {}): Owner {
    const flags = [
      `--proto=${opts.proto ?? 'socketpair'}`, `--timeout=${opts.timeoutS ?? 30}`,
      ...(opts.hold ? ['--hold'] : []), ...(opts.killOnFd ? ['--kill-on-fd'] : []), ...(opts.stopOnLink ? ['--stop-on-link'] : []),
      ...(opts.zombie ? ['--zombie'] : []), ...(opts.handoff ? ['--handoff'] : []), ...(opts.connect ? [`--connect=${opts.connect}`] : []),
    ];
    const env = opts.env ?? [];
    const helperArgv = [...(env.length ? ['env', ...env] : []), ...(opts.pre ?? []), helperPath(program), ...args];
    return new Owner(this.agentProc(`${program} owner`, who, ns, ['own', ...flags, '--', ...helperArgv]), (pid) => this.helperPids.add(pid));
  }

  listen(who: Who, ns: Netns, name: string): JsonProc {
    return this.agentProc(`daemon ${name}`, who, ns, ['listen', name]);
  }

  /** What `who` gets opening each path read-write (errno, or the device and TUNGETIFF). */
  async tryOpen(who: Who, ns: Netns, paths: readonly string[]): Promise<Array<Json>> {
    const r = await run(this.as(who, ns, [PYTHON, this.agent, 'tryopen', ...paths]));
    if (r.status !== 0) throw new Error(`tryopen failed: ${r.stderr}`);
    return JSON.parse(r.stdout).opened as Json[];
  }

  /** Runs `who`'s helper with stdout on a full pipe; what /proc said of it while it waited in write(2) (agent.py blocked, as root, to read /proc/PID/syscall). */
  async blockedWriting(who: User, ns: Netns, program: Program, args: readonly string[]): Promise<BlockedRun> {
    const drop = ['setpriv', `--reuid=${who.uid}`, `--regid=${who.gid}`, '--init-groups'];
    const r = await run(this.as(ROOT, ns, [PYTHON, this.agent, 'blocked', '--', ...drop, helperPath(program), ...args]));
    if (r.status !== 0) throw new Error(`blocked failed: ${r.stderr}`);
    return JSON.parse(r.stdout).blocked as BlockedRun;
  }

  /** The user's own network namespace (unshare -rn) with macvtaps at ifindex first.., so /dev/tap<first>.. are its devices. */
  async occupy(who: User, ns: Netns, first: number, count: number): Promise<Occupation> {
    const proc = this.agentProc(`${who.role}'s own namespace`, who, ns, ['occupy', String(first), String(count)], ['unshare', '--user', '--map-root-user', '--net']);
    const ready = await proc.next('ready');
    let n = 0;
    return {
      proc,
      indexes: ready.indexes as number[],
      // Another namespace's link that held a node may have gone since; ours then has none: make it again.
      refresh: async () => {
        const tag = String(++n);
        proc.write(`${tag}\n`);
        for (let k = 1; k < 1000; k++) if ((await proc.nth('refreshed', k, 10_000)).refreshed === tag) return;
      },
      churn: async (seconds: number) => {
        const before = proc.lines.filter((l) => 'churning' in l).length;
        proc.write(`churn ${seconds}\n`);
        await proc.nth('churning', before + 1, 10_000);
      },
      calm: async () => {
        const before = proc.lines.filter((l) => 'calm' in l).length;
        proc.write('calm\n');
        await proc.nth('calm', before + 1, 40_000);
      },
    };
  }

  // ---------------------------------------------------------------- policy and log

  writePolicy(text: string): void {
    const path = this.nsPath(CONFFILE);
    writeFileSync(path, text, { mode: 0o644 });
    chmodSync(path, 0o644);
  }

  restorePolicy(): void {
    this.writePolicy(this.packagedPolicy);
  }

  /** Every syslog line received so far, including everything sent before this call. */
  async syslog(): Promise<LogLine[]> {
    const n = String(++this.markCounter);
    this.holder.write(`mark ${n}\n`);
    for (let tries = 0; tries < 1000; tries++) {
      const line = await this.holder.next('mark', 10_000);
      if (line.mark === n) break;
      this.holder.lines.splice(this.holder.lines.indexOf(line), 1);
    }
    this.holder.lines.splice(this.holder.lines.findIndex((l) => l.mark === n), 1);
    return readFileSync(this.syslogFile, 'utf8').split('\n').filter(Boolean)
      .map((l) => parseSyslog((JSON.parse(l) as { log: string }).log)).filter((l): l is LogLine => l !== undefined);
  }

  /** The lines a helper process sent. */
  async helperLog(pid: number): Promise<LogLine[]> {
    return (await this.syslog()).filter((l) => l.pid === pid && l.tag.startsWith('qemu-net-helper-'));
  }

  // ---------------------------------------------------------------- what is left

  /** Files and directories under /dev owned by the test users. */
  devFilesOfUsers(): string[] {
    if (!this.users) return [];
    const ids = this.allUsers.flatMap((u, i) => [...(i ? ['-o'] : []), '-uid', String(u.uid)]);
    return sh(['find', '/dev', '(', ...ids, ')', '-print'], false).stdout.split('\n').filter(Boolean);
  }

  /** /dev/.qemu-net-helper-* that stay (a concurrent test's running helper may have one for a moment). */
  async privateNodeDirs(settleMs = 1500): Promise<string[]> {
    const list = () => readdirSync('/dev').filter((n) => n.startsWith('.qemu-net-helper-')).map((n) => `/dev/${n}`);
    let left = list();
    const deadline = Date.now() + settleMs;
    while (left.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      const now = new Set(list());
      left = left.filter((d) => now.has(d));
    }
    return left;
  }

  /** The helpers an agent started that may still run (stopped ones included), and the agents' children. */
  killHelpers(): void {
    for (const pid of this.helperPids) killHelper(pid);
    this.helperPids.clear();
    for (const pid of this.childPids) killHelper(pid, 'SIGTERM');
    this.childPids.clear();
  }

  /** A process an agent forked (its command line is the agent's, with a helper's path in it). */
  trackChild(pid: number): void {
    this.childPids.add(pid);
  }

  async stopAgents(): Promise<void> {
    const procs = [...this.procs];
    this.procs.clear();
    await Promise.all(procs.map((p) => p.stop()));
  }

  /** dpkg --purge in the namespace; returns its problems. */
  purge(): string[] {
    if (!sh([...this.inNs, 'dpkg-query', '-W', '-f=${Status}', PACKAGE], false).stdout.includes('install ok installed')) return [];
    const purge = sh([...this.inNs, 'dpkg', '--purge', PACKAGE], false);
    return purge.status === 0 ? [] : [`dpkg --purge: ${purge.stderr.trim()}`];
  }

  /** Whether dpkg in the namespace knows the package at all. */
  packageKnown(): boolean {
    const r = sh([...this.inNs, 'dpkg-query', '-W', '-f=${Status}', PACKAGE], false);
    return r.status === 0 && r.stdout.trim() !== '' && !/not-installed/.test(r.stdout);
  }

  // ---------------------------------------------------------------- teardown

  async teardown(): Promise<string[]> {
    const problems: string[] = [];
    this.killHelpers();
    await this.stopAgents().catch((e: Error) => problems.push(e.message));
    if (this.holder?.alive) {
      try {
        problems.push(...this.purge());
        for (const u of this.allUsers) {
          const del = sh([...this.inNs, 'userdel', '-f', u.name], false);
          if (del.status !== 0) problems.push(`userdel ${u.name}: ${del.stderr.trim()}`);
          sh([...this.inNs, 'groupdel', u.name], false);
        }
      } catch (err) {
        problems.push((err as Error).message);
      }
      await this.holder.stop(5000);
    }
    // What the users may have left under /dev (the checks report it; nothing stays).
    for (const path of this.devFilesOfUsers().sort().reverse()) rmSync(path, { recursive: true, force: true });
    await this.releasePlaceholder();
    try {
      // The holder's mount namespace is gone with its last process: the mount point is an empty directory again.
      rmSync(this.tmp, { recursive: true, force: true });
    } catch (err) {
      problems.push(`removing ${this.tmp}: ${(err as Error).message}`);
    }
    return problems;
  }
}

/** Whether the kernel here can stack overlayfs (the suite's private install needs it). */
export function haveOverlayfs(): boolean {
  try {
    return readFileSync('/proc/filesystems', 'utf8').split('\n').some((l) => /\boverlay$/.test(l)) || sh(['modprobe', 'overlay'], false).status === 0;
  } catch {
    return false;
  }
}

/** Major:minor of a macvtap's char device, from sysfs as its namespace sees it. */
export function sysfsDev(ns: Netns, ifname: string, ifindex: number): string | undefined {
  const r = sh([...ns.exec, 'cat', `/sys/class/net/${ifname}/macvtap/tap${ifindex}/dev`], false);
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Linux's dev_t as "major:minor". */
function devText(d: bigint): string {
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** Major:minor of a path (lstat), if it is a character device. */
export function nodeDev(path: string): string | undefined {
  try {
    const st = lstatSync(path, { bigint: true });
    return st.isCharacterDevice() ? devText(st.rdev) : undefined;
  } catch {
    return undefined;
  }
}

/** Every character device under /dev with this major:minor. */
export function nodesWithDev(dev: string): string[] {
  const paths = sh(['find', '/dev', '-type', 'c', '-print'], false).stdout.split('\n').filter(Boolean);
  return paths.filter((p) => nodeDev(p) === dev);
}
