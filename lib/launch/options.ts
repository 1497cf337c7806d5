// qemu-net-launch's own command line, how it names the helpers it runs, and
// how it prints command lines for people. Pure.
//
//   qemu-net-launch [--dry-run] [--verbose] [--helper-dir=DIR | --helper-command=TEMPLATE] -- QEMU [ARGS...]

import { parseOptions, type OptionSpec } from '../args.ts';
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
  if (o.has('helper-dir') && o.has('helper-command')) {
    throw new UsageError('--helper-dir and --helper-command cannot be combined', `--helper-dir=DIR means --helper-command=DIR/${NAME_PLACEHOLDER}`);
  }
  let helperTemplate: HelperTemplate;
  if (o.has('helper-command')) {
    helperTemplate = parseHelperTemplate(o.get('helper-command') as string);
  } else {
    const dir = (o.get('helper-dir') as string | undefined) ?? libexecDir;
    if (!dir.startsWith('/') || /[ \t\n]/.test(dir)) {
      throw new UsageError(`--helper-dir=${JSON.stringify(dir)} is not an absolute path without white space`, 'give the directory of the helpers, e.g. --helper-dir=/usr/local/libexec');
    }
    helperTemplate = [`${dir.replace(/\/+$/, '')}/${NAME_PLACEHOLDER}`];
  }
  return { action: 'launch', dryRun: o.has('dry-run'), verbose: o.has('verbose'), helperTemplate, qemu };
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
    'See qemu-net-launch(1).',
    '',
  ].join('\n');
}
