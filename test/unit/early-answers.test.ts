// lib/helper/early.ts and lib/launch/early.ts: what the programs answer
// before koffi is loaded, and that nothing they import loads it.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
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
  t.equal(helperEarlyAnswer(VEPA_HELPER, ['--dev=eth0', '--queues=0', '--socketpair=5']), undefined);
  t.equal(helperEarlyAnswer(VEPA_HELPER, ['--queues', '0', '--fd', '9', '--br=eth0']), undefined, 'both option forms');
  const unprintable = helperEarlyAnswer(VEPA_HELPER, ['--dev=a\nb\x1b[2J', '--probe']);
  t.equal(unprintable?.status, 2);
  t.equal(unprintable?.stderr?.split('\n').length, 2, 'the caller\'s argument cannot break the one line');
  t.notMatch(unprintable?.stderr, /\x1b/);
});

t.test('the launcher answers --help, --version and errors in its own options', async (t) => {
  t.same(launchEarlyAnswer(['--help']), { status: 0, stdout: launchUsage() });
  t.same(launchEarlyAnswer(['--version']), { status: 0, stdout: `qemu-net-launch ${VERSION}\n` });
  const bad = launchEarlyAnswer(['--frobnicate', '--', 'qemu-system-x86_64']);
  t.equal(bad?.status, 2);
  t.match(bad?.stderr, /^qemu-net-launch: unknown option "--frobnicate"/);
  t.equal(launchEarlyAnswer(['--dry-run', '--', 'qemu-system-x86_64', '-netdev', 'macvtap,id=n0,dev=v0']), undefined, 'a launch');
  t.equal(launchEarlyAnswer(['attach', '--qmp=/run/q.sock', '-netdev', 'macvtap,id=n0,dev=v0']), undefined, 'a hotplug');
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
