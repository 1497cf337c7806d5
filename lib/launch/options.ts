// qemu-net-launch's own command line, how it names the helpers it runs, and
// how it prints command lines for people. Pure.
//
//   qemu-net-launch [--dry-run] [--verbose] [--helper-dir=DIR | --helper-command=TEMPLATE] -- QEMU [ARGS...]
//   qemu-net-launch attach --qmp=SOCKET [--verbose] [HELPER OPTION] -netdev macvtap,id=ID,...
//   qemu-net-launch detach --qmp=SOCKET [--verbose] [--timeout=SECONDS] [HELPER OPTION] ID

import { parseDecimal, parseOptions, type OptionSpec } from '../args.ts';
import { UsageError } from '../errors.ts';
import { VERSION } from '../version.ts';

export const PROGRAM = 'qemu-net-launch';

/** Where the installed helpers are, unless the build says otherwise (packaging defines QNH_LIBEXEC_DIR). */
export const DEFAULT_LIBEXEC_DIR = '/usr/libexec';
declare const QNH_LIBEXEC_DIR: string | undefined;
export const LIBEXEC_DIR: string = typeof QNH_LIBEXEC_DIR === 'string' ? QNH_LIBEXEC_DIR : DEFAULT_LIBEXEC_DIR;

/** Stands for the helper's name in --helper-command. */
export const NAME_PLACEHOLDER = '{}';

export const LAUNCH_OPTIONS: readonly OptionSpec[] = [
  { name: 'dry-run', kind: 'flag' },
  { name: 'verbose', kind: 'flag' },
  { name: 'helper-dir', kind: 'value' },
  { name: 'helper-command', kind: 'value' },
  { name: 'help', kind: 'flag' },
  { name: 'version', kind: 'flag' },
];

/** attach and detach: no --dry-run (QEMU is running: there is nothing to show without doing it). */
export const HOTPLUG_OPTIONS: readonly OptionSpec[] = [
  { name: 'qmp', kind: 'value' },
  { name: 'verbose', kind: 'flag' },
  { name: 'timeout', kind: 'value' },
  { name: 'helper-dir', kind: 'value' },
  { name: 'helper-command', kind: 'value' },
];

/** How long detach waits, by default, for the guest to let its NIC go (DEVICE_DELETED). */
export const DEFAULT_DETACH_TIMEOUT_S = 30;
const MAX_DETACH_TIMEOUT_S = 3600;

/** How to run a helper: words, one of which contains {} (the helper's name). */
export type HelperTemplate = readonly string[];

export type LaunchRequest =
  | { action: 'help' }
  | { action: 'version' }
  | {
    action: 'launch';
    dryRun: boolean;
    verbose: boolean;
    helperTemplate: HelperTemplate;
    /** QEMU's argv: the program (as written) and its arguments. */
    qemu: string[];
  }
  | {
    action: 'attach';
    verbose: boolean;
    helperTemplate: HelperTemplate;
    /** QEMU's QMP unix socket. */
    qmp: string;
    /** The netdev as on QEMU's command line: ['-netdev', 'macvtap,id=ID,...'] (or a -net shorthand with id=). */
    netdev: [string, string];
  }
  | {
    action: 'detach';
    verbose: boolean;
    helperTemplate: HelperTemplate;
    qmp: string;
    /** The netdev id given to attach. */
    id: string;
    /** Bound on the wait for the guest to release the NIC, in ms. */
    timeoutMs: number;
  };

/** Parses --helper-command's value: words separated by white space, exactly one {} among them. */
export function parseHelperTemplate(text: string): HelperTemplate {
  const words = text.split(/[ \t\n]+/).filter((w) => w !== '');
  const placeholders = words.reduce((n, w) => n + w.split(NAME_PLACEHOLDER).length - 1, 0);
  if (words.length === 0 || placeholders !== 1) {
    throw new UsageError(`--helper-command=${JSON.stringify(text)} must contain ${NAME_PLACEHOLDER} exactly once`,
      `${NAME_PLACEHOLDER} stands for the helper's name, e.g. --helper-command='/opt/qnh/libexec/${NAME_PLACEHOLDER}'`);
  }
  return words;
}

/** The argv prefix that runs helper `name`. */
export function helperCommand(template: HelperTemplate, name: string): string[] {
  return template.map((w) => w.replace(NAME_PLACEHOLDER, name));
}

export function parseLaunchArgs(argv: readonly string[], libexecDir = LIBEXEC_DIR): LaunchRequest {
  if (argv[0] === 'attach' || argv[0] === 'detach') return parseHotplugArgs(argv[0], argv.slice(1), libexecDir);
  const sep = argv.indexOf('--');
  const own = sep < 0 ? argv : argv.slice(0, sep);
  const stray = sep < 0 ? own.find((w) => !w.startsWith('-')) : undefined;
  if (stray !== undefined) throw new UsageError(`no '--' before the QEMU command line`, `write ${PROGRAM} [OPTIONS] -- ${shellQuote(stray)} ARGS...`);
  const o = parseOptions(own, LAUNCH_OPTIONS);
  if (o.has('help')) return { action: 'help' };
  if (o.has('version')) return { action: 'version' };
  const qemu = sep < 0 ? [] : argv.slice(sep + 1);
  if (qemu.length === 0 || qemu[0] === '') {
    throw new UsageError('no QEMU command line', `write ${PROGRAM} [OPTIONS] -- qemu-system-x86_64 ARGS...`);
  }
  for (const word of qemu) {
    if (word.includes('\0')) throw new UsageError('a QEMU argument contains a NUL byte', 'remove it');
  }
  return { action: 'launch', dryRun: o.has('dry-run'), verbose: o.has('verbose'), helperTemplate: helperTemplateOf(o, libexecDir), qemu };
}

/** --helper-dir or --helper-command, else the built-in directory. */
function helperTemplateOf(o: Map<string, string | true>, libexecDir: string): HelperTemplate {
  if (o.has('helper-dir') && o.has('helper-command')) {
    throw new UsageError('--helper-dir and --helper-command cannot be combined', `--helper-dir=DIR means --helper-command=DIR/${NAME_PLACEHOLDER}`);
  }
  if (o.has('helper-command')) return parseHelperTemplate(o.get('helper-command') as string);
  const dir = (o.get('helper-dir') as string | undefined) ?? libexecDir;
  if (!dir.startsWith('/') || /[ \t\n]/.test(dir)) {
    throw new UsageError(`--helper-dir=${JSON.stringify(dir)} is not an absolute path without white space`, 'give the directory of the helpers, e.g. --helper-dir=/usr/local/libexec');
  }
  return [`${dir.replace(/\/+$/, '')}/${NAME_PLACEHOLDER}`];
}

const NETDEV_SPELLINGS = new Set(['-netdev', '--netdev', '-net', '--net']);

/** attach/detach: our --options first, then the netdev (attach) or its id (detach). */
function parseHotplugArgs(action: 'attach' | 'detach', argv: readonly string[], libexecDir: string): LaunchRequest {
  let split = 0;
  while (split < argv.length && argv[split]!.startsWith('--') && !NETDEV_SPELLINGS.has(argv[split]!)) {
    // A value option written "--qmp PATH" takes the next word too.
    const valueOption = HOTPLUG_OPTIONS.some((s) => s.kind === 'value' && `--${s.name}` === argv[split]);
    split += valueOption ? 2 : 1;
  }
  split = Math.min(split, argv.length);
  const own = argv.slice(0, split);
  const rest = argv.slice(split);
  const o = parseOptions(own, HOTPLUG_OPTIONS);
  const qmp = o.get('qmp') as string | undefined;
  const synopsis = action === 'attach' ? `${PROGRAM} attach --qmp=SOCKET -netdev macvtap,id=ID,dev=IFNAME,mode=vepa` : `${PROGRAM} detach --qmp=SOCKET ID`;
  if (qmp === undefined) throw new UsageError(`${action} needs --qmp=SOCKET (QEMU's QMP unix socket)`, `start QEMU with -qmp unix:PATH,server=on,wait=off and write ${synopsis}`);
  if (qmp.includes('\0') || Buffer.byteLength(qmp) > 107) throw new UsageError(`--qmp=${JSON.stringify(qmp)} cannot be a unix socket path`, 'give a path of at most 107 bytes');
  const helperTemplate = helperTemplateOf(o, libexecDir);
  const verbose = o.has('verbose');
  if (action === 'attach') {
    if (o.has('timeout')) throw new UsageError('--timeout is for detach', `write ${synopsis}`);
    if (rest.length !== 2 || !NETDEV_SPELLINGS.has(rest[0]!)) {
      throw new UsageError(rest.length === 0 ? 'attach needs a netdev' : `attach takes one netdev, not ${JSON.stringify(rest.join(' '))}`, `write ${synopsis}`);
    }
    if (rest[1]!.includes('\0')) throw new UsageError('the netdev contains a NUL byte', 'remove it');
    return { action, verbose, helperTemplate, qmp, netdev: [rest[0]!, rest[1]!] };
  }
  if (rest.length !== 1 || rest[0]!.startsWith('-')) {
    throw new UsageError(rest.length === 0 ? 'detach needs the netdev id given to attach' : `detach takes one netdev id, not ${JSON.stringify(rest.join(' '))}`, `write ${synopsis}`);
  }
  const id = rest[0]!;
  if (!/^[A-Za-z][A-Za-z0-9._-]*$/.test(id)) throw new UsageError(`${JSON.stringify(id)} is not a QEMU id`, "an id starts with a letter and has only letters, digits, '-', '.' and '_'");
  let timeoutS = DEFAULT_DETACH_TIMEOUT_S;
  if (o.has('timeout')) timeoutS = parseDecimal('timeout', o.get('timeout') as string, 1, MAX_DETACH_TIMEOUT_S);
  return { action, verbose, helperTemplate, qmp, id, timeoutMs: timeoutS * 1000 };
}

const SAFE_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** A word as a POSIX shell reads it back: bare when safe, else single-quoted. */
export function shellQuote(word: string): string {
  if (SAFE_WORD.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function shellLine(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

export function usage(): string {
  return [
    `Usage: ${PROGRAM} [--dry-run] [--verbose] [--helper-dir=DIR | --helper-command=TEMPLATE] -- QEMU [ARGS...]`,
    `       ${PROGRAM} attach --qmp=SOCKET [--verbose] [HELPER OPTION] -netdev macvtap,id=ID,...`,
    `       ${PROGRAM} detach --qmp=SOCKET [--verbose] [--timeout=SECONDS] [HELPER OPTION] ID`,
    '',
    `${PROGRAM} ${VERSION}: start QEMU with macvtap networking made by the qemu-net-helper`,
    'helpers, with multiqueue and vhost-net, then become QEMU (same process id).',
    '',
    'Among QEMU\'s arguments it replaces',
    '  -netdev macvtap,id=ID,(dev=IFNAME|network=NAME|pool=NAME|pf=IFNAME)[,mode=vepa|private|bridge|passthrough]',
    '          [,queues=N][,vhost=on|off|try][,mac=MAC][,ifname=NAME][,vlan=ID][,allmulti=on|off]',
    '  -net vepa,...  -net bridge-macvtap,...  -net passthrough,...   (same keys, id= optional;',
    '          adds a virtio-net-pci NIC)',
    'with -netdev tap,id=ID,fd(s)=...,vhost=... carrying the helper\'s file descriptors, and gives',
    'the NIC using the netdev the macvtap\'s MAC (and mq=on,vectors=2N+2 when queues=N > 1).',
    '',
    '  --dry-run         make the links, print the helper and QEMU command lines, release the',
    '                    links, and exit without starting QEMU',
    '  --verbose         print the same on standard error, then start QEMU',
    `  --helper-dir=DIR  run the helpers from DIR (default ${LIBEXEC_DIR})`,
    '  --helper-command=TEMPLATE',
    `                    run each helper as TEMPLATE's words, ${NAME_PLACEHOLDER} replaced by its name, e.g.`,
    `                    'env -i PATH=/usr/bin:/bin node /src/qemu-net-helper/helpers/${NAME_PLACEHOLDER}.ts'`,
    '  --help, --version',
    '',
    'attach adds a NIC to a running QEMU (started with -qmp unix:SOCKET,server=on,wait=off): it runs',
    'the helper for the -netdev macvtap (same keys, id= required), hands the fds to QEMU (getfd),',
    'then netdev_add (a tap netdev on them) and device_add (virtio-net-pci, id ID-nic, the macvtap\'s MAC);',
    'a failure undoes every step. detach removes NIC (waiting up to --timeout, default',
    `${DEFAULT_DETACH_TIMEOUT_S} s, for the guest to let it go) and netdev, and releases the macvtap QEMU held.`,
    '',
    'See qemu-net-launch(1).',
    '',
  ].join('\n');
}
