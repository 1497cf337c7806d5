// qemu-net-launch attach / detach: a macvtap NIC added to, or removed from, a
// running QEMU over its QMP socket.
//
// attach: the netdev is read by the launcher's own planLaunch (same keys, same
// errors, before anything is made), QMP is reached (before any helper runs),
// the helper runs as for a launch (runRequest), then each fd goes to QEMU with
// `getfd` (SCM_RIGHTS on the same sendmsg), `netdev_add` makes a tap netdev on
// those names and `device_add` a virtio-net-pci NIC with the link's MAC. Every
// step that fails undoes the ones before it: closefd for names QEMU still
// holds, netdev_del, and the link released with the helper's --release.
//
// detach: which link a netdev uses is read from QEMU itself, not from a file
// attach left somewhere: `info network` gives the netdev's fd number in QEMU,
// /proc/QEMU/fd/N its device number, and /sys/dev/char/MAJ:MIN names the
// macvtap whose queue that is. Then device_del, the guest's DEVICE_DELETED
// (bounded), netdev_del and --release.
//
// Ownership: the helper records as owner the peer of its socket pair, this
// process, which exits after attach. The link is kept because QEMU holds its
// queues: a link some process holds a queue of is never collected, whoever its
// recorded owner is (lib/helper/ownership.ts unusedReason). Once QEMU lets the
// fds go (netdev_del, or its exit), nobody holds it and --gc deletes it.

import { readlinkSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { HelperError, UsageError, oneLine } from '../errors.ts';
import { VEPA_HELPER } from '../helper/programs.ts';
import { helperCommand, PROGRAM, type HelperTemplate } from './options.ts';
import { Qmp, QmpError } from './qmp.ts';
import { err, EXIT_FAILURE, EXIT_USAGE, failure, releaseAll, releaseLink, runRequest, write, type Made } from './main.ts';
import { planLaunch } from './plan.ts';
import { keyvalGet, parseKeyval } from './qemu-options.ts';
import { vectorsFor } from './render.ts';

/** Bound on reaching QEMU's QMP socket and each command it answers (QEMU answers at once unless stuck). */
const QMP_TIMEOUT_MS = 10_000;
const INTERRUPTS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface AttachRequest {
  verbose: boolean;
  helperTemplate: HelperTemplate;
  qmp: string;
  netdev: [string, string];
}

export interface DetachRequest {
  verbose: boolean;
  helperTemplate: HelperTemplate;
  qmp: string;
  id: string;
  timeoutMs: number;
}

/** The id of the NIC attach adds for netdev `id`. */
export function nicId(id: string): string {
  return `${id}-nic`;
}

/** The fd names attach gives QEMU (getfd) for a netdev's queues and vhost fds. A name must not be a number (QEMU would take it for an fd). */
export function fdNames(id: string, taps: number, vhosts: number): { taps: string[]; vhosts: string[] } {
  return {
    taps: Array.from({ length: taps }, (_, i) => `qnh-${id}-tap${i}`),
    vhosts: Array.from({ length: vhosts }, (_, i) => `qnh-${id}-vhost${i}`),
  };
}

/** netdev_add's arguments: a tap netdev on named fds (colon-separated for several queues). */
export function tapNetdevArgs(id: string, names: { taps: readonly string[]; vhosts: readonly string[] }): Record<string, unknown> {
  const args: Record<string, unknown> = { type: 'tap', id, fds: names.taps.join(':'), vhost: names.vhosts.length > 0 };
  if (names.vhosts.length > 0) args.vhostfds = names.vhosts.join(':');
  return args;
}

/** device_add's arguments: a virtio-net-pci NIC with the link's MAC, and multiqueue for several queues. */
export function nicArgs(id: string, mac: string, queues: number): Record<string, unknown> {
  const args: Record<string, unknown> = { driver: 'virtio-net-pci', id: nicId(id), netdev: id, mac };
  if (queues > 1) Object.assign(args, { mq: true, vectors: vectorsFor(queues) });
  return args;
}

function qmpProblem(socket: string, e: unknown): string {
  if (e instanceof QmpError) return oneLine(PROGRAM, new HelperError(`QEMU at ${socket} refused ${e.command}: ${e.errorClass}: ${e.desc}`, e.command === 'netdev_add' || e.command === 'device_add' ? 'choose another id, or see what QEMU already has with: info network' : 'see QEMU\'s own message'));
  return oneLine(PROGRAM, new HelperError(`QEMU at ${socket}: ${(e as Error).message}`, `check that QEMU runs with -qmp unix:${socket},server=on,wait=off and that no other client holds the socket`));
}

function connect(socket: string): Qmp {
  try {
    return Qmp.connect(socket, QMP_TIMEOUT_MS);
  } catch (e) {
    throw new HelperError(`cannot talk to QEMU at ${socket}: ${(e as Error).message}`, `start QEMU with -qmp unix:${socket},server=on,wait=off, and give that path to --qmp`);
  }
}

/** Runs `qemu-net-launch attach`. */
export async function runAttach(req: AttachRequest, env: NodeJS.ProcessEnv): Promise<number> {
  const [spelling, text] = req.netdev;
  let plan;
  try {
    plan = planLaunch([spelling, text]);
    if (plan.requests.length !== 1) {
      throw new UsageError(`${spelling} ${text} is not one of ours`, 'write -netdev macvtap,id=ID,... (or -net vepa|bridge-macvtap|passthrough,id=ID,...)');
    }
    if (keyvalGet(parseKeyval(text, 'type'), 'id') === undefined) throw new UsageError(`${spelling} ${text}: no id`, 'add id=NAME: detach removes the NIC by it');
  } catch (e) {
    err(failure(e));
    return e instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }
  const r = plan.requests[0]!;
  const show = req.verbose ? err : undefined;

  const qmp = connectOrReport(req.qmp);
  if (!qmp) return EXIT_FAILURE;
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => { interrupted ??= sig; };
  for (const sig of INTERRUPTS) process.on(sig, onSignal);

  const made: Made[] = [];
  const passed: string[] = [];
  let netdevAdded = false;
  const step = (name: string, args: Record<string, unknown>, fds?: number[]) => {
    show?.(`# QMP ${name} ${JSON.stringify(args)}${fds ? ` with fd ${fds.join(' ')}` : ''}`);
    return qmp.execute(name, args, { fds, timeoutMs: QMP_TIMEOUT_MS });
  };
  /** Undoes what was done, newest first; prints the failure and whatever could not be undone. */
  const fail = (line: string, status = EXIT_FAILURE): number => {
    err(line);
    if (netdevAdded) {
      try {
        step('netdev_del', { id: r.id });
      } catch (e) {
        err(oneLine(PROGRAM, new HelperError(`could not remove netdev ${r.id} from QEMU: ${(e as Error).message}`, `remove it by hand (netdev_del ${r.id})`)));
      }
    } else {
      for (const name of passed) {
        try {
          step('closefd', { fdname: name });
        } catch {
          // QEMU has already taken it (a netdev_add that failed after reading it closes it itself), or QEMU is gone.
        }
      }
    }
    for (const problem of releaseAll(made)) err(problem);
    qmp.close();
    return status;
  };
  const check = (): number | undefined => interrupted
    ? fail(oneLine(PROGRAM, new HelperError(`interrupted by ${interrupted}`, 'nothing was attached; every link made was released')), 128 + osConstants.signals[interrupted])
    : undefined;

  const problem = await runRequest(r, req.helperTemplate, env, req.verbose, show, made);
  if (problem) return fail(problem);
  const stop = check();
  if (stop !== undefined) return stop;
  const { result } = made[0]!;
  const rec = result.record;
  const names = fdNames(r.id, result.tapFds.length, result.vhostFds.length);
  try {
    const all: Array<[string, number]> = [...names.taps.map((n, i) => [n, result.tapFds[i]!] as [string, number]), ...names.vhosts.map((n, i) => [n, result.vhostFds[i]!] as [string, number])];
    for (const [name, fd] of all) {
      step('getfd', { fdname: name }, [fd]);
      passed.push(name);
    }
    step('netdev_add', tapNetdevArgs(r.id, names));
    netdevAdded = true;
    const late = check();
    if (late !== undefined) return late;
    step('device_add', nicArgs(r.id, rec.mac, rec.queues));
  } catch (e) {
    return fail(qmpProblem(req.qmp, e));
  }
  // QEMU holds the queues now; ours go. The link stays while QEMU holds them (see the top of this file).
  result.close();
  qmp.close();
  for (const sig of INTERRUPTS) process.removeListener(sig, onSignal);
  write(1, `${r.id}: ${rec.ifname} on ${rec.lower}, mode ${rec.mode}, mac ${rec.mac}, ${rec.queues} queue${rec.queues === 1 ? '' : 's'}, vhost ${rec.vhost ? 'on' : 'off'}; NIC ${nicId(r.id)} in QEMU pid ${qmp.peer.pid}\n`);
  return 0;
}

/** One entry of HMP `info network`: a NIC, or a netdev (under its NIC when it has one). */
export interface NetworkEntry {
  name: string;
  type: string;
  /** The rest of the line: "fd=12", "model=virtio-net-pci,macaddr=...". */
  info: string;
  /** For a netdev shown under a NIC: that NIC's name. */
  nic: string | undefined;
}

/** Parses QEMU 7.2's `info network` ("NAME: index=N,type=T,INFO", a NIC's netdev on the next line after " \ "). */
export function parseInfoNetwork(text: string): NetworkEntry[] {
  const out: NetworkEntry[] = [];
  let lastNic: string | undefined;
  for (const line of text.split(/\r?\n/)) {
    const m = /^(\s*\\\s+)?(\S+): index=\d+,type=([a-z0-9_-]+)(?:,(.*))?$/.exec(line);
    if (!m) continue;
    const [, under, name, type, info] = m;
    if (!under) lastNic = type === 'nic' ? name : undefined;
    out.push({ name: name!, type: type!, info: info ?? '', nic: under ? lastNic : undefined });
  }
  return out;
}

/** The tap fd numbers (in QEMU) of netdev `id`, from `info network`. */
export function tapFdsOf(entries: readonly NetworkEntry[], id: string): number[] {
  return entries.filter((e) => e.name === id && e.type === 'tap').flatMap((e) => {
    const m = /(?:^|,)fd=(\d+)(?:,|$)/.exec(e.info);
    return m ? [Number(m[1])] : [];
  });
}

/**
 * The macvtap whose queue QEMU (pid) holds as fd `fd`: the device number of
 * /proc/PID/fd/FD, named by the kernel's /sys/dev/char/MAJ:MIN link
 * (.../net/IFNAME/macvtap/tapN); device numbers are global, so this reads the
 * same from any network namespace.
 */
export function macvtapOfFd(pid: number, fd: number, proc = '/proc', sys = '/sys'): string {
  const st = statSync(`${proc}/${pid}/fd/${fd}`, { bigint: true });
  if (!st.isCharacterDevice()) throw new Error(`fd ${fd} of QEMU is not a character device`);
  const major = Number((st.rdev >> 8n) & 0xfffn);
  const minor = Number((st.rdev & 0xffn) | ((st.rdev >> 12n) & 0xfff00n));
  const target = readlinkSync(`${sys}/dev/char/${major}:${minor}`);
  const m = /\/net\/([^/]+)\/macvtap\/tap[0-9]+$/.exec(target);
  if (!m) throw new Error(`fd ${fd} of QEMU is device ${major}:${minor} (${target}), not a macvtap queue`);
  return m[1]!;
}

/** QEMU's QMP socket, or undefined after printing why it cannot be reached. */
function connectOrReport(path: string): Qmp | undefined {
  try {
    return connect(path);
  } catch (e) {
    err(failure(e));
    return undefined;
  }
}

/** Runs `qemu-net-launch detach`. */
export async function runDetach(req: DetachRequest, _env: NodeJS.ProcessEnv): Promise<number> {
  const show = req.verbose ? err : undefined;
  const qmp = connectOrReport(req.qmp);
  if (!qmp) return EXIT_FAILURE;
  const step = (name: string, args: Record<string, unknown>, timeoutMs = QMP_TIMEOUT_MS) => {
    show?.(`# QMP ${name} ${JSON.stringify(args)}`);
    return qmp.execute(name, args, { timeoutMs });
  };
  try {
    // Which link: from QEMU's own fd for the netdev, before anything is removed.
    const info = step('human-monitor-command', { 'command-line': 'info network' });
    const entries = parseInfoNetwork(String(info));
    const own = entries.filter((e) => e.name === req.id && e.type !== 'nic');
    if (own.length === 0) throw new HelperError(`QEMU has no netdev ${req.id}`, 'give the id given to attach (see info network)');
    const fds = tapFdsOf(entries, req.id);
    if (fds.length === 0) throw new HelperError(`netdev ${req.id} is not a tap netdev on an fd (${own[0]!.type}${own[0]!.info ? `, ${own[0]!.info}` : ''})`, 'detach removes only what attach added');
    let ifname: string;
    try {
      const links = new Set(fds.map((fd) => macvtapOfFd(qmp.peer.pid, fd)));
      if (links.size !== 1) throw new Error(`its fds are queues of ${[...links].join(' and ')}`);
      ifname = [...links][0]!;
    } catch (e) {
      throw new HelperError(`cannot tell which macvtap netdev ${req.id} uses: ${(e as Error).message}`, 'detach removes only what attach added; nothing was removed');
    }
    show?.(`# netdev ${req.id} uses ${ifname} (fd ${fds.join(' ')} of QEMU pid ${qmp.peer.pid})`);
    const nic = own.find((e) => e.nic !== undefined)?.nic;
    if (nic !== undefined) {
      try {
        step('device_del', { id: nic });
      } catch (e) {
        // A detach that timed out before has asked already; wait for the guest again.
        if (!(e instanceof QmpError && /in the process of unplug|pending/i.test(e.desc))) throw e;
      }
      const deleted = qmp.waitEvent('DEVICE_DELETED', (d) => d.device === nic, req.timeoutMs);
      if (!deleted) {
        throw new HelperError(`the guest did not release NIC ${nic} within ${req.timeoutMs / 1000} s (QEMU asked it through ACPI hotplug); netdev ${req.id} and ${ifname} are left as they were`,
          'run detach again once the guest has let it go, or give it longer with --timeout=SECONDS');
      }
    }
    step('netdev_del', { id: req.id });
    qmp.close();
    const problem = releaseLink(helperCommand(req.helperTemplate, VEPA_HELPER.name), ifname);
    if (problem) {
      err(problem);
      return EXIT_FAILURE;
    }
    write(1, `${req.id}: removed${nic !== undefined ? ` NIC ${nic} and` : ''} netdev ${req.id} from QEMU pid ${qmp.peer.pid}, released ${ifname}\n`);
    return 0;
  } catch (e) {
    qmp.close();
    err(e instanceof HelperError ? failure(e) : qmpProblem(req.qmp, e));
    return EXIT_FAILURE;
  }
}
