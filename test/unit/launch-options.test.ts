// qemu-net-launch's own command line, helper command templates, shell
// quoting of the lines it prints, and finding QEMU as execvp(3) would.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { oneLine, UsageError } from '../../lib/errors.ts';
import { resolveProgram } from '../../lib/launch/exec.ts';
import {
  DEFAULT_LIBEXEC_DIR, LAUNCH_OPTIONS, LIBEXEC_DIR, helperCommand, parseHelperTemplate, parseLaunchArgs, shellLine, shellQuote, usage,
} from '../../lib/launch/options.ts';
import { SHORTHANDS } from '../../lib/launch/helper-modes.ts';
import { MACVTAP_KEYS } from '../../lib/launch/macvtap-form.ts';
import { REPO } from '../support/paths.ts';

function usageError(argv: string[]): string {
  try {
    parseLaunchArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    return oneLine('qemu-net-launch', err);
  }
  throw new Error(`no error for ${argv.join(' ')}`);
}

t.test('the launcher\'s options come before --, QEMU\'s command line after it', async (t) => {
  t.equal(LIBEXEC_DIR, DEFAULT_LIBEXEC_DIR, 'from source the helpers are looked for in /usr/libexec');
  t.same(parseLaunchArgs(['--', 'qemu-system-x86_64', '-m', '256']), {
    action: 'launch', dryRun: false, verbose: false, helperTemplate: ['/usr/libexec/{}'], qemu: ['qemu-system-x86_64', '-m', '256'],
  });
  t.match(parseLaunchArgs(['--dry-run', '--verbose', '--', 'q']), { dryRun: true, verbose: true });
  t.match(parseLaunchArgs(['--', 'q', '--dry-run', '--', '-x']), { dryRun: false, qemu: ['q', '--dry-run', '--', '-x'] }, 'everything after the first -- is QEMU\'s');
  t.match(parseLaunchArgs(['--helper-dir=/usr/local/libexec/', '--', 'q']), { helperTemplate: ['/usr/local/libexec/{}'] });
  t.match(parseLaunchArgs(['--helper-dir', '/opt/x', '--', 'q']), { helperTemplate: ['/opt/x/{}'] });
  t.match(parseLaunchArgs(['--helper-command=env -i PATH=/usr/bin:/bin /usr/bin/node /src/helpers/{}.ts', '--', 'q']),
    { helperTemplate: ['env', '-i', 'PATH=/usr/bin:/bin', '/usr/bin/node', '/src/helpers/{}.ts'] });
  t.same(parseLaunchArgs(['--help']), { action: 'help' });
  t.same(parseLaunchArgs(['--version']), { action: 'version' });
  t.same(parseLaunchArgs(['--help', '--', 'q']), { action: 'help' });
  t.match(parseLaunchArgs(['--', 'q'], '/opt/qnh/libexec'), { helperTemplate: ['/opt/qnh/libexec/{}'] }, 'the built-in directory is a parameter (a build constant)');
});

t.test('errors', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[], /^qemu-net-launch: no QEMU command line; write qemu-net-launch \[OPTIONS\] -- qemu-system-x86_64 ARGS\.\.\.$/],
    [['--dry-run'], /no QEMU command line/],
    [['--verbose', '--'], /no QEMU command line/],
    [['--', ''], /no QEMU command line/],
    [['qemu-system-x86_64', '-m', '256'], /^qemu-net-launch: no '--' before the QEMU command line; write qemu-net-launch \[OPTIONS\] -- qemu-system-x86_64 ARGS\.\.\.$/],
    [['--dry-run', "it's"], /-- 'it'\\''s' ARGS/],
    [['--frobnicate', '--', 'q'], /^qemu-net-launch: unknown option "--frobnicate"; known options: --dry-run --verbose --helper-dir --helper-command --help --version$/],
    [['-v', '--', 'q'], /unknown option "-v"/],
    [['--dry-run', '--dry-run', '--', 'q'], /--dry-run is given more than once/],
    [['--dry-run=yes', '--', 'q'], /--dry-run takes no value/],
    [['--helper-dir=relative/dir', '--', 'q'], /--helper-dir="relative\/dir" is not an absolute path without white space; give the directory of the helpers/],
    [['--helper-dir=/with space', '--', 'q'], /is not an absolute path without white space/],
    [['--helper-dir=/a', '--helper-command=/b/{}', '--', 'q'], /--helper-dir and --helper-command cannot be combined; --helper-dir=DIR means --helper-command=DIR\/\{\}$/],
    [['--helper-command=/usr/libexec/helper', '--', 'q'], /--helper-command="\/usr\/libexec\/helper" must contain \{\} exactly once; \{\} stands for the helper's name/],
    [['--helper-command={} {}', '--', 'q'], /must contain \{\} exactly once/],
    [['--helper-command=/x/{}{}', '--', 'q'], /must contain \{\} exactly once/],
    [['--', 'q', 'a\0b'], /a QEMU argument contains a NUL byte/],
  ];
  for (const [argv, expected] of cases) t.match(usageError(argv), expected, JSON.stringify(argv));
});

t.test('helper command templates', async (t) => {
  t.same(parseHelperTemplate('  /opt/qnh/{}  '), ['/opt/qnh/{}']);
  t.same(parseHelperTemplate('ip netns exec vm1\t/usr/libexec/{}'), ['ip', 'netns', 'exec', 'vm1', '/usr/libexec/{}']);
  t.same(helperCommand(['/usr/libexec/{}'], 'qemu-net-helper-vepa'), ['/usr/libexec/qemu-net-helper-vepa']);
  t.same(helperCommand(['env', '-i', 'node', '/r/helpers/{}.ts'], 'qemu-net-helper-bridge'), ['env', '-i', 'node', '/r/helpers/qemu-net-helper-bridge.ts']);
  t.same(helperCommand(['{}'], 'qemu-net-helper-vepa'), ['qemu-net-helper-vepa'], 'a bare name is looked up in PATH by spawn');
});

t.test('shell quoting: what is printed reads back as the same words', async (t) => {
  t.equal(shellQuote('qemu-system-x86_64'), 'qemu-system-x86_64');
  t.equal(shellQuote('tap,id=n0,fds=22:24,vhost=off'), 'tap,id=n0,fds=22:24,vhost=off');
  t.equal(shellQuote('/usr/libexec/qemu-net-helper-vepa'), '/usr/libexec/qemu-net-helper-vepa');
  t.equal(shellQuote('--ifname=vm%d'), '--ifname=vm%d');
  t.equal(shellQuote(''), "''");
  t.equal(shellQuote('a b'), "'a b'");
  t.equal(shellQuote("it's"), "'it'\\''s'");
  t.equal(shellQuote('$HOME'), "'$HOME'");
  t.equal(shellQuote('~'), "'~'");
  t.equal(shellQuote('#'), "'#'");
  const words = ['qemu', '', 'a b', "it's", '$x `y` "z"', 'tab\there', 'new\nline', '*', '\\', '-append', 'console=ttyS0 quiet', 'ü', '!', ';&|<>()'];
  const line = shellLine(words);
  const r = spawnSync('/bin/sh', ['-c', `printf '%s\\0' ${line}`], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.same(r.stdout.split('\0').slice(0, -1), words, `sh reads back ${line}`);
});

t.test('finding QEMU as execvp(3) would', async (t) => {
  const files = new Set(['/usr/bin/qemu-system-x86_64', '/opt/q/bin/qemu-system-x86_64', './qemu-local', 'rel/qemu', '/bin/true']);
  const exists = (p: string) => files.has(p);
  t.equal(resolveProgram('qemu-system-x86_64', '/usr/local/bin:/usr/bin:/opt/q/bin', exists), '/usr/bin/qemu-system-x86_64', 'the first match in PATH');
  t.equal(resolveProgram('qemu-system-x86_64', '/opt/q/bin:/usr/bin', exists), '/opt/q/bin/qemu-system-x86_64');
  t.equal(resolveProgram('qemu-local', '/nowhere::/x', exists), './qemu-local', 'an empty PATH entry is the current directory');
  t.equal(resolveProgram('true', undefined, exists), '/bin/true', 'no PATH: /bin:/usr/bin');
  t.equal(resolveProgram('rel/qemu', '/usr/bin', exists), 'rel/qemu', 'a name with a slash is used as it is');
  t.equal(resolveProgram('/usr/bin/qemu-system-x86_64', '', exists), '/usr/bin/qemu-system-x86_64');
  t.throws(() => resolveProgram('qemu-system-aarch64', '/usr/bin:/bin', exists),
    { message: 'qemu-system-aarch64 is not found in PATH (/usr/bin:/bin)', fix: 'install QEMU (Debian: apt-get install qemu-system-x86) or give its absolute path' });
  t.throws(() => resolveProgram('/usr/bin/nope', '/usr/bin', exists), { message: '/usr/bin/nope is not an executable file' });
  t.equal(resolveProgram('sh', '/nonexistent:/bin'), '/bin/sh', 'with the real file system');
  t.throws(() => resolveProgram('/etc/passwd', '/bin'), /not an executable file/, 'not executable');
  t.throws(() => resolveProgram('/tmp', '/bin'), /not an executable file/, 'a directory');
});

t.test('--help names every option', async (t) => {
  const text = usage();
  for (const spec of LAUNCH_OPTIONS) t.match(text, `--${spec.name}`, `--${spec.name}`);
  t.match(text, /-netdev macvtap,id=ID,\(dev=IFNAME\|network=NAME\|pool=NAME\|pf=IFNAME\)/);
  t.match(text, /-net vepa,\.\.\. {2}-net bridge-macvtap,\.\.\. {2}-net passthrough,\.\.\./);
});

t.test('the man page documents every option, key and shorthand, in well-formed roff', async (t) => {
  const page = readFileSync(join(REPO, 'docs/man/qemu-net-launch.1'), 'utf8');
  t.match(page, /^\.TH QEMU\\-NET\\-LAUNCH 1 /m);
  const documented = (word: string) => page.includes(word.replace(/-/g, '\\-'));
  for (const spec of LAUNCH_OPTIONS) t.ok(documented(`--${spec.name}`), `--${spec.name}`);
  for (const key of MACVTAP_KEYS) t.ok(documented(`${key}=`), `${key}=`);
  for (const name of Object.keys(SHORTHANDS)) t.ok(documented(`-net ${name}`), `-net ${name}`);
  for (const section of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'FORMS', 'OPTIONS', 'EXAMPLES', 'EXIT STATUS', 'FILES', 'SEE ALSO']) {
    t.match(page, new RegExp(`^\\.SH ${section}$`, 'm'), section);
  }
  t.notMatch(page, /^[^.\\'].*(?<!\\)--/m, 'every -- is written \\-\\-');
});
