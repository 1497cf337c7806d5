// qemu-net-launch as a process, without privileges: becoming another program
// through execve (same pid and start time, exactly the chosen fds, default
// signals, stdio as it was), and the failures that come before any link is
// made (bad arguments, QEMU not found, a helper missing or failing), each one
// line with a fix and the documented exit status.

import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import tap from 'tap';
const t = tap;
import { REPO } from '../support/paths.ts';

const CLEAN_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
const LAUNCH = `${REPO}helpers/qemu-net-launch.ts`;

interface Run {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs argv in a clean environment (not under the test runner's NODE_OPTIONS), bounded. */
function run(argv: string[], env: NodeJS.ProcessEnv = { PATH: CLEAN_PATH }, timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${argv.join(' ')} did not finish within ${timeoutMs} ms`)); }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ pid: child.pid!, code, signal, stdout, stderr }); });
  });
}

const launch = (args: string[], env?: NodeJS.ProcessEnv) => run([process.execPath, LAUNCH, ...args], env);

t.test('execWithFds: the same process, exactly the chosen fds, default signals, blocking stdio', async (t) => {
  const exec = pathToFileURL(`${REPO}lib/launch/exec.ts`).href;
  const script = `
    import { openSync, readFileSync, writeSync } from 'node:fs';
    import { execWithFds } from ${JSON.stringify(exec)};
    const keep1 = openSync('/dev/null', 'r'), drop = openSync('/dev/null', 'r'), keep2 = openSync('/dev/zero', 'r');
    process.stdout.write('node was here\\n'); // libuv makes the stdout pipe non-blocking
    const stat = readFileSync('/proc/self/stat', 'latin1');
    writeSync(1, JSON.stringify({ pid: process.pid, start: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19], keep: [keep1, keep2], drop }) + '\\n');
    execWithFds('/bin/sh', ['sh', '-c', ${JSON.stringify(
      'echo "pid $$"; cat /proc/$$/stat; echo fds; ls /proc/$$/fd; echo endfds; grep flags /proc/$$/fdinfo/1 /proc/$$/fdinfo/2; ' +
      'echo "env $QNL_TEST ${NODE_OPTIONS-unset}"; exec grep -E "^Sig(Blk|Ign)" /proc/self/status')}],
      { PATH: '/usr/bin:/bin', QNL_TEST: 'passed' }, [keep1, keep2]);
  `;
  const r = await run([process.execPath, '--input-type=module', '-e', script]);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.equal(lines[0], 'node was here');
  const before = JSON.parse(lines[1]!) as { pid: number; start: string; keep: number[]; drop: number };
  t.equal(before.pid, r.pid, 'node ran as the spawned pid');
  t.equal(lines[2], `pid ${r.pid}`, 'the program exec\'d has the same pid');
  const stat = lines[3]!;
  t.equal(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19], before.start, 'and the same start time (an owner tag stays valid)');
  const fds = lines.slice(lines.indexOf('fds') + 1, lines.indexOf('endfds')).map(Number);
  t.same(fds, [0, 1, 2, ...before.keep], `only 0-2 and the kept fds (${before.keep.join(', ')}) are inherited; ${before.drop} and Node's own are not`);
  for (const fd of [1, 2]) {
    const flags = new RegExp(`fdinfo/${fd}:flags:\\s+([0-7]+)\\n`).exec(r.stdout)?.[1];
    t.ok(flags !== undefined && (parseInt(flags, 8) & 0o4000) === 0, `fd ${fd} is blocking again (flags ${flags})`);
  }
  t.match(r.stdout, /^env passed unset$/m, 'the environment given, and only it');
  t.match(r.stdout, /^SigBlk:\s+0{16}$/m, 'no signal blocked');
  t.match(r.stdout, /^SigIgn:\s+0{16}$/m, 'none ignored (Node ignores SIGPIPE and SIGXFSZ)');
});

t.test('without macvtap forms the launcher just becomes the program', async (t) => {
  const r = await launch(['--', 'sh', '-c', 'echo "$$ $0 $1"; exit 7', 'zero', 'one two']);
  t.equal(r.code, 7, 'its exit status is the program\'s');
  t.equal(r.stdout, `${r.pid} zero one two\n`, 'same pid; arguments passed as they were; found through PATH');
  t.equal(r.stderr, '');
});

t.test('--help and --version', async (t) => {
  const help = await launch(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: qemu-net-launch \[--dry-run\] \[--verbose\]/);
  const version = await launch(['--version']);
  t.equal(version.code, 0);
  t.match(version.stdout, /^qemu-net-launch \d+\.\d+\.\d+\n$/);
});

t.test('failures before any link exists', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qnl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'runs.log');
  // Fake helpers: each logs its run; vepa fails with a message, bridge sends an error record on the socket.
  writeFileSync(join(dir, 'qemu-net-helper-vepa'), `#!/bin/sh\necho "vepa $*" >> ${log}\necho "qemu-net-helper-vepa: the fake helper fails; do not use it" >&2\nexit 1\n`);
  writeFileSync(join(dir, 'qemu-net-helper-bridge'), `#!/bin/sh\necho "bridge $*" >> ${log}\nprintf 'version=1\\nerror=qemu-net-helper-bridge: no such network lan; define it in net-helper.conf\\n' >&3\nexit 1\n`);
  for (const f of ['qemu-net-helper-vepa', 'qemu-net-helper-bridge']) chmodSync(join(dir, f), 0o755);
  const runs = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');

  const expectOneLine = (t: { equal: typeof tap.equal; match: typeof tap.match }, r: Run, code: number, pattern: RegExp) => {
    t.equal(r.code, code, `exit status ${code}`);
    t.match(r.stderr.trimEnd(), pattern);
    t.equal(r.stderr.split('\n').filter(Boolean).length, 1, `one line: ${r.stderr.trim()}`);
    t.equal(r.stdout, '');
  };

  t.test('a bad argument: status 2, no helper run', async (t) => {
    const r = await launch([`--helper-dir=${dir}`, '--', 'sh', '-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,bogus=1', '-net', 'vepa,dev=eth0']);
    expectOneLine(t, r, 2, /^qemu-net-launch: -netdev macvtap,id=n0,dev=eth0,mode=vepa,bogus=1: unknown key "bogus"; the keys are /);
    t.equal(runs(), '');
  });
  t.test('a bad launcher option: status 2', async (t) => {
    expectOneLine(t, await launch(['--dryrun', '--', 'sh']), 2, /^qemu-net-launch: unknown option "--dryrun"; known options: /);
  });
  t.test('QEMU not found: status 1, found out before any helper runs', async (t) => {
    const r = await launch([`--helper-dir=${dir}`, '--', 'qemu-system-nonesuch', '-net', 'vepa,dev=eth0']);
    expectOneLine(t, r, 1, /^qemu-net-launch: qemu-system-nonesuch is not found in PATH \(\/usr\/sbin:\/usr\/bin:\/sbin:\/bin\); install QEMU/);
    t.equal(runs(), '');
  });
  t.test('a helper fails: its own words, status 1, and the next one never runs', async (t) => {
    const r = await launch([`--helper-dir=${dir}`, '--', 'sh', '-net', 'vepa,dev=eth0,queues=2', '-net', 'bridge-macvtap,dev=eth0']);
    expectOneLine(t, r, 1, /^qemu-net-launch: -net vepa,dev=eth0,queues=2: qemu-net-helper-vepa failed: helper exited with status 1 without sending a record: qemu-net-helper-vepa: the fake helper fails; do not use it; run \S+qemu-net-helper-vepa --dev=eth0 --queues=2 --probe to see it fail by hand$/);
    t.equal(runs(), 'vepa --dev=eth0 --queues=2 --socketpair=3\n', 'run with --socketpair=3; the bridge helper never ran');
  });
  t.test('a helper\'s error record is passed on as it is', async (t) => {
    rmSync(log, { force: true });
    const r = await launch([`--helper-dir=${dir}`, '--', 'sh', '-netdev', 'macvtap,id=lan,network=lan,mode=bridge', '-device', 'e1000,netdev=lan']);
    expectOneLine(t, r, 1, /^qemu-net-launch: -netdev macvtap,id=lan,network=lan,mode=bridge: qemu-net-helper-bridge: no such network lan; define it in net-helper.conf$/);
    t.equal(runs(), 'bridge --network=lan --mode=bridge --socketpair=3\n');
  });
  t.test('the helpers are not installed where looked for', async (t) => {
    const r = await launch([`--helper-dir=${dir}/nowhere`, '--', 'sh', '-net', 'vepa,dev=eth0']);
    expectOneLine(t, r, 1, /^qemu-net-launch: -net vepa,dev=eth0: cannot run \S+\/nowhere\/qemu-net-helper-vepa: .*ENOENT; install qemu-net-helper, or say where its helpers are with --helper-dir or --helper-command$/);
  });
  t.test('--verbose shows the helper line before it runs', async (t) => {
    const r = await launch([`--helper-dir=${dir}`, '--verbose', '--', 'sh', '-net', 'vepa,dev=eth0']);
    t.equal(r.code, 1);
    t.match(r.stderr, new RegExp(`^# qemu-net-launch runs each helper with --socketpair=3; .*\\n${dir}/qemu-net-helper-vepa --dev=eth0 --probe\\nqemu-net-helper-vepa: the fake helper fails; do not use it\\nqemu-net-launch: `));
  });
});
