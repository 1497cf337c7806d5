// What a helper's command line asks for. Pure: argv in, HelperRequest out,
// UsageError (exit status 2) for anything wrong.
//
// QEMU's -netdev tap,helper=PROG runs PROG with "--use-vnet --fd=N --br=NAME"
// appended to the user's options (qemu-bridge-helper's contract). --br names
// the device to attach to, so it serves as --dev when --dev is absent: that
// lets a user write helper=qemu-net-helper-vepa,br=eth0 without a shell.

import { parseDecimal, parseOptions, type OptionSpec } from '../args.ts';
import { MAX_TAP_QUEUES, MAX_VLAN_ID, MIN_VLAN_ID } from '../constants.ts';
import { UsageError } from '../errors.ts';
import { parseMac } from '../mac.ts';
import type { ModeName } from '../modes.ts';
import { checkCallerIfname, checkIfname, ifnameProblem } from '../names.ts';
import { policyNameProblem } from '../policy/syntax.ts';
import type { VhostMode } from '../vhost.ts';
import type { HelperProgram } from './programs.ts';

export const DEFAULT_IFNAME_TEMPLATE = 'macvtap%d';
const MAX_FD = 0x7fffffff;
const MAX_POOL_MEMBERS = 256;

const COMMON_OPTIONS: readonly OptionSpec[] = [
  { name: 'dev', kind: 'value', aliases: ['arg-dev'] },
  { name: 'network', kind: 'value' },
  { name: 'config', kind: 'value' },
  { name: 'check-config', kind: 'flag' },
  { name: 'mode', kind: 'value' },
  { name: 'mac', kind: 'value' },
  { name: 'ifname', kind: 'value' },
  { name: 'queues', kind: 'value' },
  { name: 'vhost', kind: 'value' },
  { name: 'try-vhost', kind: 'flag' },
  { name: 'allmulti', kind: 'value' },
  { name: 'vlan', kind: 'value' },
  { name: 'fd', kind: 'value' },
  { name: 'socketpair', kind: 'value' },
  { name: 'probe', kind: 'flag' },
  { name: 'persistent', kind: 'flag' },
  { name: 'json', kind: 'flag' },
  { name: 'use-vnet', kind: 'flag' },
  { name: 'br', kind: 'value' },
  { name: 'list', kind: 'flag' },
  { name: 'release', kind: 'value' },
  { name: 'gc', kind: 'flag' },
  { name: 'help', kind: 'flag' },
  { name: 'version', kind: 'flag' },
];

/** The options `program` accepts: the common ones plus its ways of naming devices. */
export function optionSpecs(program: HelperProgram): OptionSpec[] {
  const specs = [...COMMON_OPTIONS];
  if (program.targets.includes('pool')) specs.push({ name: 'pool', kind: 'value' });
  if (program.targets.includes('pf')) specs.push({ name: 'pf', kind: 'value' });
  return specs;
}

/** Where the result goes: QEMU's one-fd protocol, our record protocol, or stdout. */
export type Output =
  | { kind: 'fd'; fd: number }
  | { kind: 'socketpair'; fd: number }
  | { kind: 'probe'; json: boolean }
  /** A persistent link: made, given to the caller (its /dev/tapN theirs), described on stdout; no fd handed over. */
  | { kind: 'persistent'; json: boolean };

/** The lower device(s) to try, in order; a network or named pool is looked up in the policy. */
export type Target =
  | { kind: 'dev'; name: string }
  | { kind: 'pool'; members: string[] }
  | { kind: 'pf'; name: string }
  | { kind: 'network'; name: string }
  | { kind: 'named-pool'; name: string }
  /** QEMU's and libvirt's --br=NAME without --dev: a network the policy defines, or else a device. */
  | { kind: 'br'; name: string };

export interface CreateRequest {
  action: 'create';
  target: Target;
  mode: ModeName;
  /** Whether --mode was given (a network brings its own mode). */
  modeGiven: boolean;
  /** --config=PATH: another policy file (refused in a privileged run). */
  config: string | undefined;
  mac: Buffer | undefined;
  ifname: string;
  queues: number;
  vhost: VhostMode;
  /** --allmulti=on|off; absent: on, unless the policy rule says allmulti off. */
  allmulti: 'on' | 'off' | undefined;
  /** --vlan=ID: the macvtap goes on the 802.1Q VLAN ID of the lower device. */
  vlan: number | undefined;
  output: Output;
  vnetHdr: boolean;
}

export type HelperRequest =
  | CreateRequest
  | { action: 'list'; json: boolean }
  | { action: 'release'; ifname: string }
  | { action: 'gc' }
  | { action: 'check-config'; config: string | undefined }
  | { action: 'help' }
  | { action: 'version' };

const MAINTENANCE = ['list', 'release', 'gc'] as const;

function parseMaintenance(o: Map<string, string | true>): HelperRequest | undefined {
  const actions = MAINTENANCE.filter((k) => o.has(k));
  if (actions.length === 0) return undefined;
  if (actions.length > 1) throw new UsageError(`--${actions.join(' and --')} cannot be combined`, 'give one action');
  const action = actions[0]!;
  const extra = [...o.keys()].filter((k) => k !== action && !(action === 'list' && k === 'json'));
  if (extra.length) throw new UsageError(`--${action} takes no other options (got --${extra.join(', --')})`, `run --${action}${action === 'list' ? ' [--json]' : ''} alone`);
  if (action === 'list') return { action, json: o.has('json') };
  if (action === 'release') return { action, ifname: checkIfname('release', o.get('release') as string) };
  return { action };
}

/** The output socket named on the command line, if any, so even a failed parse can report on it. */
export function outputSocketFromArgv(argv: readonly string[]): { kind: 'fd' | 'socketpair'; fd: number } | undefined {
  // Both forms the option parser accepts: --socketpair=5 and --socketpair 5.
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(fd|socketpair)(?:=(.*))?$/.exec(argv[i]!);
    if (!m) continue;
    const value = m[2] ?? argv[i + 1];
    if (value !== undefined && /^[1-9][0-9]{0,9}$/.test(value) && Number(value) > 2 && Number(value) <= MAX_FD) return { kind: m[1] as 'fd' | 'socketpair', fd: Number(value) };
  }
  return undefined;
}

const STANDARD_STREAMS = ['standard input', 'standard output', 'standard error'];

/**
 * The reply socket's fd number. 0-2 are refused even when they are sockets:
 * a pipe from Node or systemd is a unix stream socket, and the tap fd must
 * never go down someone's stderr.
 */
function replyFd(option: 'fd' | 'socketpair', text: string): number {
  const fd = parseDecimal(option, text, 0, MAX_FD);
  if (fd <= 2) {
    throw new UsageError(`--${option}=${fd} names ${STANDARD_STREAMS[fd]}, not a socket made for the helper`,
      option === 'fd' ? 'QEMU passes a socket of its own above fd 2; to try the helper by hand use --probe' : 'pass the socket as fd 3 or higher');
  }
  return fd;
}

function policyName(option: string, name: string): string {
  const problem = policyNameProblem(name);
  if (problem) throw new UsageError(`--${option}=${JSON.stringify(name)}: ${problem}`, 'use the name of a network or pool defined in /etc/qemu/net-helper.conf');
  return name;
}

/**
 * --br=NAME as QEMU and libvirt pass it: a device name (at most 15 bytes) or
 * a policy network's name (at most 64). A name too long for a device can only
 * ever be taken as a network, never cut short into a device (CVE-2019-13164).
 */
function brName(name: string): string {
  if (ifnameProblem(name) === undefined || policyNameProblem(name) === undefined) return name;
  return checkIfname('br', name);
}

function parseTarget(program: HelperProgram, o: Map<string, string | true>): Target {
  const given = (['dev', 'pool', 'pf', 'network'] as const).filter((k) => o.has(k));
  if (given.length > 1) throw new UsageError(`--${given.join(' and --')} cannot be combined`, 'name the lower device one way only');
  const ways = [...program.targets.map((k) => `--${k}=${k === 'pool' ? 'IF1,IF2,...' : 'IFNAME'}`), '--network=NAME'].join(', ');
  if (o.has('network')) return { kind: 'network', name: policyName('network', o.get('network') as string) };
  if (o.has('pool') && (o.get('pool') as string).startsWith('@')) {
    return { kind: 'named-pool', name: policyName('pool', (o.get('pool') as string).slice(1)) };
  }
  if (o.has('pool')) {
    const text = o.get('pool') as string;
    const members = text.split(',');
    if (members.length > MAX_POOL_MEMBERS) throw new UsageError(`--pool has ${members.length} members; at most ${MAX_POOL_MEMBERS} are allowed`, 'use a shorter list');
    members.forEach((m) => checkIfname('pool', m));
    if (new Set(members).size !== members.length) throw new UsageError(`--pool=${text} names a device twice`, 'list each device once');
    return { kind: 'pool', members };
  }
  if (o.has('pf')) return { kind: 'pf', name: checkIfname('pf', o.get('pf') as string) };
  if (o.has('dev')) {
    if (o.has('br')) checkIfname('br', o.get('br') as string); // QEMU's default, validated, then ignored
    return { kind: 'dev', name: checkIfname('dev', o.get('dev') as string) };
  }
  if (o.has('br')) return { kind: 'br', name: brName(o.get('br') as string) };
  throw new UsageError('no lower device given', `name it with ${ways}`);
}

function parseVhost(o: Map<string, string | true>): VhostMode {
  if (o.has('vhost') && o.has('try-vhost')) throw new UsageError('--vhost and --try-vhost cannot be combined', '--try-vhost means --vhost=try; give one');
  if (o.has('try-vhost')) return 'try';
  const text = (o.get('vhost') as string | undefined) ?? 'try';
  if (text !== 'on' && text !== 'off' && text !== 'try') throw new UsageError(`--vhost=${JSON.stringify(text)} is not on, off or try`, 'use --vhost=on, --vhost=off or --vhost=try');
  return text;
}

export function parseHelperArgs(program: HelperProgram, argv: readonly string[]): HelperRequest {
  const o = parseOptions(argv, optionSpecs(program));
  if (o.has('help') || o.has('version')) {
    // QEMU reads a tap fd from --fd once the helper exits 0: after a --help
    // that sent none it would use fd 0 as the tap. Exit 2 makes it say the
    // helper failed.
    const socket = ['fd', 'socketpair'].find((k) => o.has(k));
    if (socket) throw new UsageError(`--${o.has('help') ? 'help' : 'version'} hands nothing over --${socket}`, `run it alone: ${program.name} --${o.has('help') ? 'help' : 'version'}`);
    return { action: o.has('help') ? 'help' : 'version' };
  }
  if (o.has('check-config')) {
    const extra = [...o.keys()].filter((k) => k !== 'check-config' && k !== 'config');
    if (extra.length) throw new UsageError(`--check-config takes only --config (got --${extra.join(', --')})`, 'run --check-config [--config=PATH] alone');
    return { action: 'check-config', config: o.get('config') as string | undefined };
  }
  const maintenance = parseMaintenance(o);
  if (maintenance) return maintenance;

  const outputs = ['fd', 'socketpair', 'probe', 'persistent'].filter((k) => o.has(k));
  if (outputs.length !== 1) {
    throw new UsageError(outputs.length === 0 ? 'no output given' : `--${outputs.join(' and --')} cannot be combined`,
      'give exactly one of --fd=N (QEMU helper=), --socketpair=N, --probe or --persistent (or --list, --release=IFNAME, --gc)');
  }
  let output: Output;
  if (o.has('fd')) output = { kind: 'fd', fd: replyFd('fd', o.get('fd') as string) };
  else if (o.has('socketpair')) output = { kind: 'socketpair', fd: replyFd('socketpair', o.get('socketpair') as string) };
  else if (o.has('persistent')) output = { kind: 'persistent', json: o.has('json') };
  else output = { kind: 'probe', json: o.has('json') };
  if (o.has('json') && output.kind !== 'probe' && output.kind !== 'persistent') throw new UsageError('--json goes with --probe or --persistent', 'add --probe or drop --json');

  const target = parseTarget(program, o);

  const modeText = (o.get('mode') as string | undefined) ?? program.modes[0];
  const mode = program.modes.find((m) => m === modeText);
  if (!mode) throw new UsageError(`--mode=${JSON.stringify(modeText)} is not a mode ${program.name} provides`, `use one of: ${program.modes.join(', ')}`);

  const queues = o.has('queues') ? parseDecimal('queues', o.get('queues') as string, 1, MAX_TAP_QUEUES) : 1;
  let vhost = parseVhost(o);
  if (output.kind === 'fd') {
    if (queues > 1) {
      throw new UsageError(`--queues=${queues} cannot be used with --fd: QEMU's helper= protocol carries exactly one fd`,
        'use --socketpair (as qemu-net-launch does) for several queues');
    }
    if (vhost === 'on') {
      throw new UsageError("--vhost=on cannot be used with --fd: QEMU's helper= protocol carries no vhost fd",
        'ask QEMU for vhost instead: -netdev tap,helper=...,vhost=on');
    }
    vhost = 'off'; // QEMU opens /dev/vhost-net itself when asked
  }
  if (output.kind === 'persistent') {
    if (vhost === 'on') throw new UsageError('--vhost=on cannot be used with --persistent: no fd is handed over', 'whoever opens the link\'s /dev/tapN opens /dev/vhost-net too');
    vhost = 'off';
  }

  const allmultiText = o.get('allmulti') as string | undefined;
  if (allmultiText !== undefined && allmultiText !== 'on' && allmultiText !== 'off') {
    throw new UsageError(`--allmulti=${JSON.stringify(allmultiText)} is not on or off`, 'use --allmulti=off to keep the guest from multicast it has not been sent by address, or leave it out');
  }
  const macText = o.get('mac') as string | undefined;
  const ifname = checkCallerIfname('ifname', (o.get('ifname') as string | undefined) ?? DEFAULT_IFNAME_TEMPLATE);

  const config = o.get('config') as string | undefined;
  if (config !== undefined && !config.startsWith('/')) throw new UsageError(`--config=${JSON.stringify(config)} is not an absolute path`, 'give the policy file as an absolute path');
  return {
    action: 'create',
    target,
    mode,
    modeGiven: o.has('mode'),
    config,
    mac: macText === undefined ? undefined : parseMac(macText),
    ifname,
    queues,
    vhost,
    allmulti: allmultiText,
    vlan: o.has('vlan') ? parseDecimal('vlan', o.get('vlan') as string, MIN_VLAN_ID, MAX_VLAN_ID) : undefined,
    output,
    // QEMU asks for the vnet header with --use-vnet; our own protocol always uses it.
    vnetHdr: output.kind === 'fd' ? o.has('use-vnet') : true,
  };
}
