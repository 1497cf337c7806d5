// What a helper's command line asks for. Pure: argv in, HelperRequest out,
// UsageError (exit status 2) for anything wrong.
//
// QEMU's -netdev tap,helper=PROG runs PROG with "--use-vnet --fd=N --br=NAME"
// appended to the user's options (qemu-bridge-helper's contract). --br names
// the device to attach to, so it serves as --dev when --dev is absent: that
// lets a user write helper=qemu-net-helper-vepa,br=eth0 without a shell.

import { parseDecimal, parseOptions, type OptionSpec } from '../args.ts';
import { UsageError } from '../errors.ts';
import { parseMac } from '../mac.ts';
import type { ModeName } from '../modes.ts';
import { checkIfname } from '../names.ts';
import type { HelperProgram } from './programs.ts';

export const DEFAULT_IFNAME_TEMPLATE = 'macvtap%d';
const MAX_FD = 0x7fffffff;

export const HELPER_OPTIONS: readonly OptionSpec[] = [
  { name: 'dev', kind: 'value', aliases: ['arg-dev'] },
  { name: 'mode', kind: 'value' },
  { name: 'mac', kind: 'value' },
  { name: 'ifname', kind: 'value' },
  { name: 'fd', kind: 'value' },
  { name: 'socketpair', kind: 'value' },
  { name: 'probe', kind: 'flag' },
  { name: 'json', kind: 'flag' },
  { name: 'use-vnet', kind: 'flag' },
  { name: 'br', kind: 'value' },
  { name: 'try-vhost', kind: 'flag' },
  { name: 'help', kind: 'flag' },
  { name: 'version', kind: 'flag' },
];

/** Where the result goes: QEMU's one-fd protocol, our record protocol, or stdout. */
export type Output =
  | { kind: 'fd'; fd: number }
  | { kind: 'socketpair'; fd: number }
  | { kind: 'probe'; json: boolean };

export interface CreateRequest {
  action: 'create';
  lower: string;
  mode: ModeName;
  mac: Buffer | undefined;
  ifname: string;
  output: Output;
  vnetHdr: boolean;
}

export type HelperRequest = CreateRequest | { action: 'help' } | { action: 'version' };

/** The output socket named on the command line, if any, so even a failed parse can report on it. */
export function outputSocketFromArgv(argv: readonly string[]): { kind: 'fd' | 'socketpair'; fd: number } | undefined {
  for (const a of argv) {
    const m = /^--(fd|socketpair)=([1-9][0-9]{0,9})$/.exec(a);
    if (m && Number(m[2]) > 2 && Number(m[2]) <= MAX_FD) return { kind: m[1] as 'fd' | 'socketpair', fd: Number(m[2]) };
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

export function parseHelperArgs(program: HelperProgram, argv: readonly string[]): HelperRequest {
  const o = parseOptions(argv, HELPER_OPTIONS);
  if (o.has('help')) return { action: 'help' };
  if (o.has('version')) return { action: 'version' };

  const outputs = ['fd', 'socketpair', 'probe'].filter((k) => o.has(k));
  if (outputs.length !== 1) {
    throw new UsageError(outputs.length === 0 ? 'no output given' : `--${outputs.join(' and --')} cannot be combined`,
      'give exactly one of --fd=N (QEMU helper=), --socketpair=N or --probe');
  }
  let output: Output;
  if (o.has('fd')) output = { kind: 'fd', fd: replyFd('fd', o.get('fd') as string) };
  else if (o.has('socketpair')) output = { kind: 'socketpair', fd: replyFd('socketpair', o.get('socketpair') as string) };
  else output = { kind: 'probe', json: o.has('json') };
  if (o.has('json') && output.kind !== 'probe') throw new UsageError('--json goes with --probe', 'add --probe or drop --json');

  const lowerText = (o.get('dev') ?? o.get('br')) as string | undefined;
  if (lowerText === undefined) throw new UsageError('no lower device given', 'name the host device with --dev=IFNAME, e.g. --dev=eth0');
  const lower = checkIfname(o.has('dev') ? 'dev' : 'br', lowerText);
  if (o.has('br') && o.has('dev')) checkIfname('br', o.get('br') as string); // still validated, then ignored

  const modeText = (o.get('mode') as string | undefined) ?? program.modes[0];
  const mode = program.modes.find((m) => m === modeText);
  if (!mode) throw new UsageError(`--mode=${JSON.stringify(modeText)} is not a mode ${program.name} provides`, `use one of: ${program.modes.join(', ')}`);

  const macText = o.get('mac') as string | undefined;
  const ifname = checkIfname('ifname', (o.get('ifname') as string | undefined) ?? DEFAULT_IFNAME_TEMPLATE, { template: true });

  return {
    action: 'create',
    lower,
    mode,
    mac: macText === undefined ? undefined : parseMac(macText),
    ifname,
    output,
    // QEMU asks for the vnet header with --use-vnet; our own protocol always uses it.
    vnetHdr: output.kind === 'fd' ? o.has('use-vnet') : true,
  };
}
