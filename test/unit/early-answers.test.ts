// lib/helper/early.ts and lib/launch/early.ts: what the programs answer
// without koffi (where it cannot load; the launcher always), and that nothing they import loads it.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { readFileSync } from 'node:fs';
import { AT_SECURE } from '../../lib/constants.ts';
import { MAX_LINE, oneLine, UsageError } from '../../lib/errors.ts';
import { parseHelperArgs } from '../../lib/helper/options.ts';
import { atSecureOf, startedPrivileged } from '../../lib/secure-exec.ts';
import { VERSION } from '../../lib/version.ts';
import { helperEarlyAnswer } from '../../lib/helper/early.ts';
import { BRIDGE_HELPER, PASSTHROUGH_HELPER, VEPA_HELPER } from '../../lib/helper/programs.ts';
import { usage as helperUsage } from '../../lib/helper/usage.ts';
import { launchEarlyAnswer } from '../../lib/launch/early.ts';
import { usage as launchUsage } from '../../lib/launch/options.ts';
import { REPO } from '../support/paths.ts';

t.test('a helper answers --help, --version and usage errors; everything else is the full run\'s', async (t) => {
  for (const program of [VEPA_HELPER, BRIDGE_HELPER, PASSTHROUGH_HELPER]) {
    t.same(helperEarlyAnswer(program, ['--help']), { status: 0, stdout: helperUsage(program) });
    t.same(helperEarlyAnswer(program, ['--version']), { status: 0, stdout: `${program.name} ${VERSION}\n` });
  }
  const bad = helperEarlyAnswer(VEPA_HELPER, ['--dev=eth0', '--queues=0', '--probe']);
  t.equal(bad?.status, 2);
  t.match(bad?.stderr, /^qemu-net-helper-vepa: --queues="0" is not a whole number from 1 to 256; .*\n$/);
  t.notOk(bad?.stdout, 'nothing on stdout');
  t.equal(helperEarlyAnswer(VEPA_HELPER, ['--dev=eth0', '--probe']), undefined, 'a create request');
  t.equal(helperEarlyAnswer(VEPA_HELPER, ['--list']), undefined, 'maintenance');
  t.equal(helperEarlyAnswer(VEPA_HELPER, ['--check-config']), undefined);
  // A program waits on a named reply socket for an error record: the full run sends it.
  t.equal(helperEarlyAnswer(VEPA_HELPER, ['--help', '--fd=5']), undefined, '--help over --fd: QEMU would take fd 0 for the tap after an exit 0');
  t.throws(() => parseHelperArgs(VEPA_HELPER, ['--help', '--use-vnet', '--fd=5', '--br=eth0']), new UsageError('--help hands nothing over --fd', 'run it alone: qemu-net-helper-vepa --help'));
  t.throws(() => parseHelperArgs(VEPA_HELPER, ['--version', '--socketpair', '7']), new UsageError('--version hands nothing over --socketpair', 'run it alone: qemu-net-helper-vepa --version'));
  t.equal(helperEarlyAnswer(VEPA_HELPER, ['--dev=eth0', '--queues=0', '--socketpair=5']), undefined);
  t.equal(helperEarlyAnswer(VEPA_HELPER, ['--queues', '0', '--fd', '9', '--br=eth0']), undefined, 'both option forms');
  const unprintable = helperEarlyAnswer(VEPA_HELPER, ['--dev=a\nb\x1b[2J', '--probe']);
  t.equal(unprintable?.status, 2);
  t.equal(unprintable?.stderr?.split('\n').length, 2, 'the caller\'s argument cannot break the one line');
  t.notMatch(unprintable?.stderr, /\x1b/);
});

t.test('the launcher answers --help, --version and errors in its own options', async (t) => {
  t.same(launchEarlyAnswer(['--help'], () => false), { status: 0, stdout: launchUsage() });
  t.same(launchEarlyAnswer(['--version'], () => false), { status: 0, stdout: `qemu-net-launch ${VERSION}\n` });
  const privileged = launchEarlyAnswer(['--help'], () => true);
  t.equal(privileged?.status, 1, 'installed with privileges it refuses even --help');
  t.match(privileged?.stderr, /^qemu-net-launch: runs with privileges \(setuid, setgid or file capabilities\) and would hand them to any program it runs; install it as a plain executable/);
  const bad = launchEarlyAnswer(['--frobnicate', '--', 'qemu-system-x86_64']);
  t.equal(bad?.status, 2);
  t.match(bad?.stderr, /^qemu-net-launch: unknown option "--frobnicate"/);
  t.equal(launchEarlyAnswer(['--dry-run', '--', 'qemu-system-x86_64', '-netdev', 'macvtap,id=n0,dev=v0']), undefined, 'a launch');
  t.equal(launchEarlyAnswer(['attach', '--qmp=/run/q.sock', '-netdev', 'macvtap,id=n0,dev=v0']), undefined, 'a hotplug');
});

// Every text answered before confinement starts with the program's name or
// "Usage:": a file that checks the writer's capabilities at write(2), such
// as /proc/self/oom_score_adj, refuses the whole of it (lib/early.ts).
t.test('every early answer starts with the program\'s name or "Usage:"', async (t) => {
  const argvs = [['--help'], ['--version'], ['--bogus'], ['-1'], ['--dev=5', '--queues=-5', '--probe'], ['--mac=01:00:5e:00:00:01', '--dev=x', '--probe'], ['--help=5'], ['--version', 'x'], ['5']];
  for (const program of [VEPA_HELPER, BRIDGE_HELPER, PASSTHROUGH_HELPER]) {
    for (const argv of argvs) {
      const a = helperEarlyAnswer(program, argv);
      if (!t.ok(a, `${program.name} ${argv.join(' ')}: answered early`) || !a) continue;
      for (const text of [a.stdout, a.stderr].filter((x) => x !== undefined)) t.match(text, new RegExp(`^(Usage: |${program.name}[: ])`), `${program.name} ${argv.join(' ')}`);
    }
  }
  for (const argv of argvs) {
    const a = launchEarlyAnswer(argv, () => false);
    for (const text of [a?.stdout, a?.stderr].filter((x) => x !== undefined)) t.match(text, /^(Usage: |qemu-net-launch[: ])/, `qemu-net-launch ${argv.join(' ')}`);
  }
});

t.test('AT_SECURE read from an auxiliary vector', async (t) => {
  const auxv = (...pairs: Array<[number, number]>) => Buffer.concat(pairs.map(([k, v]) => { const b = Buffer.alloc(16); b.writeBigUInt64LE(BigInt(k)); b.writeBigUInt64LE(BigInt(v), 8); return b; }));
  t.equal(atSecureOf(auxv([6, 4096], [AT_SECURE, 1], [0, 0])), true);
  t.equal(atSecureOf(auxv([6, 4096], [AT_SECURE, 0], [0, 0])), false);
  t.equal(atSecureOf(auxv([6, 4096], [0, 0], [AT_SECURE, 1])), undefined, 'nothing after AT_NULL counts');
  t.equal(atSecureOf(Buffer.alloc(7)), undefined, 'a short read');
  t.equal(startedPrivileged(() => auxv([AT_SECURE, 1], [0, 0])), true);
  t.equal(startedPrivileged(() => auxv([AT_SECURE, 0], [0, 0])), process.getuid!() !== process.geteuid!());
  t.equal(startedPrivileged(() => { throw new Error('no /proc'); }), false, 'without /proc the full run decides');
  t.equal(atSecureOf(readFileSync('/proc/self/auxv')), false, 'this test runs unprivileged by its own auxv');
});

t.test('oneLine: nothing a terminal acts on, and at most MAX_LINE characters with both ends kept', async (t) => {
  t.equal(oneLine('p', new Error('a\u009b31m\u202eb\u2066c\u2028d\x1b[2J\x7f')), 'p: a?31m?b?c?d?[2J?');
  const long = oneLine('qemu-net-helper-vepa', new UsageError(`unknown option ${JSON.stringify('-'.repeat(200_000))}`, "see '--help'"));
  t.equal(long.length, MAX_LINE);
  t.match(long, /^qemu-net-helper-vepa: unknown option "-+ \.\.\. -+"; see '--help'$/);
  t.equal(oneLine('p', new UsageError('x'.repeat(MAX_LINE - 8), 'fix')), `p: ${'x'.repeat(MAX_LINE - 8)}; fix`, 'a line of exactly MAX_LINE is whole');
});

// From source, with koffi made unloadable by a resolve hook: the entry
// points still answer, so neither they nor the early modules import it.
t.test('the entry points answer without koffi', async (t) => {
  const hook = `data:text/javascript,${encodeURIComponent(
    "import { registerHooks } from 'node:module'; registerHooks({ resolve(s, c, next) { if (s === 'koffi') throw new Error('koffi is not available in this test'); return next(s, c); } });")}`;
  const run = (entry: string, args: string[]) => spawnSync(process.execPath, ['--import', hook, join(REPO, entry), ...args],
    { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' }, timeout: 30_000 });
  for (const entry of ['helpers/qemu-net-helper-vepa.ts', 'helpers/qemu-net-helper-bridge.ts', 'helpers/qemu-net-helper-passthrough.ts', 'helpers/qemu-net-launch.ts']) {
    const help = run(entry, ['--help']);
    t.equal(help.status, 0, `${entry} --help: ${help.stderr}`);
    t.match(help.stdout, /^Usage: qemu-net-/);
    t.equal(run(entry, ['--no-such-option']).status, 2, `${entry}: a usage error`);
  }
  const full = run('helpers/qemu-net-helper-vepa.ts', ['--dev=v0', '--probe']);
  t.equal(full.status, 1, 'the full run needs koffi');
  t.equal(full.stderr, 'qemu-net-helper-vepa: cannot load koffi from node_modules: koffi is not available in this test; run npm ci in the source tree\n');
  const launch = run('helpers/qemu-net-launch.ts', ['--dry-run', '--', 'qemu-system-x86_64']);
  t.equal(launch.status, 1);
  t.match(launch.stderr, /^qemu-net-launch: cannot load koffi from node_modules: koffi is not available in this test; run npm ci/);
});
