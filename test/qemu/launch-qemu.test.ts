// qemu-net-launch with Debian's QEMU and the helpers from source, in throwaway
// namespaces: a two-queue launch seen through QEMU's monitor (and owned by
// QEMU's pid, so --gc removes the link once QEMU has exited), --dry-run, and
// every failure before exec releasing what was made.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { processStartTime } from '../../lib/proc.ts';
import { decodeOwnerTag } from '../../lib/owner.ts';
import { copyExecutable } from '../support/cap-node.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import { processState } from '../support/process.ts';
import { helperAction, listHelperLinks } from '../support/helper-actions.ts';
import { QEMU } from '../support/qemu.ts';

const CLEAN_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
const LAUNCH = `${REPO}helpers/qemu-net-launch.ts`;
/** The helpers from source, in a clean environment, as --helper-command (REPO has no white space). */
const HELPERS = `--helper-command=env -i PATH=${CLEAN_PATH} ${process.execPath} ${REPO}helpers/{}.ts`;
const PAUSED = ['-accel', 'tcg', '-machine', 'pc', '-nodefaults', '-display', 'none', '-serial', 'none', '-S'];

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface Launched {
  child: ChildProcess;
  exited: Promise<Exit>;
}

/** Starts the launcher in `ns` (ip netns exec execs it: the child's pid is the launcher's, then QEMU's). */
function startLaunch(ns: Netns, args: string[], timeoutMs = 90_000): Launched {
  const child = spawn(ns.exec[0]!, [...ns.exec.slice(1), process.execPath, LAUNCH, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: CLEAN_PATH } });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exited = new Promise<Exit>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`launch did not finish within ${timeoutMs} ms; stderr: ${stderr}`)); }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
  return { child, exited };
}

const listLinks = listHelperLinks;

/** Waits (bounded) for a condition that another process brings about. */
async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An HMP monitor on a unix socket: send a command, get its output (up to the next prompt). */
class Monitor {
  private buffer = '';
  private waiter: (() => void) | undefined;
  private readonly socket: Socket;
  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => { this.buffer += d; this.waiter?.(); });
    socket.on('close', () => this.waiter?.());
  }

  static async open(path: string, timeoutMs = 30_000): Promise<Monitor> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path, () => resolve(s));
          s.once('error', reject);
        });
        const m = new Monitor(socket);
        await m.untilPrompt(timeoutMs);
        return m;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 20)); // QEMU has not created the socket yet
      }
    }
  }

  /** Resolves with everything received up to the next "(qemu) " prompt. */
  private untilPrompt(timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no monitor prompt within ${timeoutMs} ms: ${this.buffer}`)), timeoutMs);
      const check = () => {
        const at = this.buffer.indexOf('(qemu) ');
        if (at >= 0) {
          clearTimeout(timer);
          this.waiter = undefined;
          const out = this.buffer.slice(0, at);
          this.buffer = this.buffer.slice(at + 7);
          resolve(out);
        } else if (this.socket.destroyed) {
          clearTimeout(timer);
          reject(new Error(`monitor closed: ${this.buffer}`));
        }
      };
      this.waiter = check;
      check();
    });
  }

  async command(line: string, timeoutMs = 30_000): Promise<string> {
    this.socket.write(line + '\n');
    // HMP echoes the line with terminal escapes; keep only what follows the echo.
    const out = (await this.untilPrompt(timeoutMs)).replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');
    return out.slice(out.indexOf('\n') + 1);
  }

  quit(): void {
    this.socket.end('quit\n');
  }
}

const skip = privilegedSkipReason(['ip', QEMU, 'setcap', 'setpriv']);
if (skip) t.plan(0, skip);
else {
  t.test('a two-queue launch: QEMU owns the link, the monitor shows two tap queues, --gc cleans up after QEMU', async (t) => {
    const ns = createNetns(t, 'launchmq');
    addVethPair(ns);
    const dir = mkdtempSync(join(tmpdir(), 'qnl-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const sock = join(dir, 'mon.sock');
    const launch = startLaunch(ns, ['--verbose', HELPERS, '--', QEMU, ...PAUSED, '-monitor', `unix:${sock},server=on,wait=off`,
      '-netdev', 'macvtap,id=n0,dev=v0,mode=vepa,queues=2', '-device', 'virtio-net-pci,netdev=n0']);
    t.teardown(() => { launch.child.kill('SIGKILL'); });
    const pid = launch.child.pid!;
    const monitor = await Monitor.open(sock);
    const info = await monitor.command('info network');

    // The process is QEMU now, with the pid and start time the helper recorded.
    t.match(readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0')[0], /qemu-system-x86_64$/, 'the launcher became QEMU');
    const [name] = ns.macvtaps();
    t.ok(name, 'the helper made a macvtap');
    const link = ns.link(name!)!;
    const tag = decodeOwnerTag(link.ifalias);
    t.equal(tag?.pid, pid, 'tagged with QEMU\'s pid (the launcher\'s, kept through execve)');
    t.equal(tag?.start, processStartTime(pid), 'and its start time, so the owner is alive');
    t.match(listLinks(ns), [{ name, pid, state: 'alive', mode: 'vepa', lower: 'v0' }]);

    // info network: the NIC with the macvtap's MAC, and a tap backend with two queues on the fds we passed.
    t.match(info, new RegExp(`virtio-net-pci\\.0: index=0,type=nic,model=virtio-net-pci,macaddr=${link.address}`), `the NIC has the macvtap's MAC:\n${info}`);
    const queues = [...info.matchAll(/n0: index=(\d+),type=tap,fd=(\d+)/g)];
    t.same(queues.map((m) => m[1]), ['0', '1'], 'two tap queues');
    for (const m of queues) {
      t.equal(readlinkSync(`/proc/${pid}/fd/${m[2]}`), `/dev/tap${link.ifindex}`, `QEMU's fd ${m[2]} is the macvtap's queue`);
    }
    t.match(launch.child.spawnargs.join(' '), /macvtap,id=n0/, 'started with our form');

    monitor.quit();
    const exit = await launch.exited;
    t.equal(exit.code, 0, `QEMU exits cleanly (${exit.stderr.trim()})`);
    t.match(exit.stderr, new RegExp(`^# qemu-net-launch runs each helper with --socketpair=3; .*\\n.*qemu-net-helper-vepa\\.ts --dev=v0 --mode=vepa --queues=2 --probe\\n# n0: ${name} on v0, mode vepa, mac ${link.address}, 2 queues, vhost off \\(cannot open /dev/vhost-net: ENOENT`));
    t.match(exit.stderr, new RegExp(`\\n${QEMU} -accel tcg .* -netdev tap,id=n0,fds=${queues.map((m) => m[2]).join(':')},vhost=off -device virtio-net-pci,netdev=n0,mac=${link.address},mq=on,vectors=6\\n`), '--verbose printed the final command line');

    t.match(listLinks(ns), [{ name, pid, state: 'stale' }], 'QEMU gone: the link is stale');
    const gc = helperAction(ns, '--gc');
    t.equal(gc.code, 0, gc.stderr);
    t.match(gc.stdout, new RegExp(`removed ${name}: its owner pid ${pid} is gone`));
    t.same(ns.macvtaps(), [], '--gc removed it');
  });

  t.test('--dry-run makes the links, prints what a person can rerun, releases them', async (t) => {
    const ns = createNetns(t, 'launchdry');
    addVethPair(ns);
    const launch = startLaunch(ns, ['--dry-run', HELPERS, '--', QEMU, ...PAUSED,
      '-netdev', 'macvtap,id=n0,dev=v0,mode=vepa,queues=2', '-device', 'virtio-net-pci,netdev=n0,romfile=', '-net', 'vepa,dev=v1,mac=52:54:00:d0:00:01']);
    const exit = await launch.exited;
    t.equal(exit.code, 0, exit.stderr);
    t.equal(exit.stderr, '', 'nothing on stderr');
    const lines = exit.stdout.trimEnd().split('\n');
    t.equal(lines.length, 8, exit.stdout);
    t.match(lines[0], /^# qemu-net-launch runs each helper with --socketpair=3/);
    t.match(lines[1], /^env -i PATH=\S+ \S+node \S+\/helpers\/qemu-net-helper-vepa\.ts --dev=v0 --mode=vepa --queues=2 --probe$/);
    t.match(lines[2], /^# n0: (macvtap\d+) on v0, mode vepa, mac (\S+), 2 queues, vhost off/);
    t.match(lines[3], /^env -i .*qemu-net-helper-vepa\.ts --dev=v1 --mac=52:54:00:d0:00:01 --probe$/);
    t.match(lines[4], /^# vepa0: macvtap\d+ on v1, mode vepa, mac 52:54:00:d0:00:01, 1 queue, vhost off/);
    t.match(lines[5], /^# QEMU \(\/usr\/bin\/qemu-system-x86_64\), inheriting fds \d+ \d+ \d+:$/);
    const mac = /mac (\S+),/.exec(lines[2]!)![1]!;
    t.match(lines[6], new RegExp(`^qemu-system-x86_64 -accel tcg -machine pc -nodefaults -display none -serial none -S -netdev tap,id=n0,fds=\\d+:\\d+,vhost=off -device virtio-net-pci,netdev=n0,romfile=,mac=${mac},mq=on,vectors=6 -netdev tap,id=vepa0,fd=\\d+,vhost=off -device virtio-net-pci,netdev=vepa0,mac=52:54:00:d0:00:01$`));
    t.match(lines[7], /^# dry run: released macvtap\d+, macvtap\d+$/);
    t.same(ns.macvtaps(), [], 'nothing left');

    // The printed helper line runs as it is, by hand.
    const byHand = spawnSync(ns.exec[0]!, [...ns.exec.slice(1), 'sh', '-c', lines[1]!], { encoding: 'utf8', timeout: 30_000 });
    t.equal(byHand.status, 0, byHand.stderr);
    t.match(byHand.stdout, /^version=1\nifname=macvtap\d+\n.*\nqueues=2\n/s, 'it prints the record');
    t.same(ns.macvtaps(), [], '--probe cleaned up after itself');
  });

  t.test('a helper failing after another succeeded: its message, status 1, the first link released', async (t) => {
    const ns = createNetns(t, 'launchfail');
    addVethPair(ns);
    const exit = await startLaunch(ns, ['--verbose', HELPERS, '--', QEMU, ...PAUSED,
      '-netdev', 'macvtap,id=n0,dev=v0,mode=vepa', '-device', 'virtio-net-pci,netdev=n0', '-net', 'vepa,dev=nope0']).exited;
    t.equal(exit.code, 1);
    t.match(exit.stderr, /\n# n0: macvtap\d+ on v0, mode vepa/, 'the first link was made');
    const last = exit.stderr.trimEnd().split('\n').pop();
    t.equal(last, "qemu-net-launch: -net vepa,dev=nope0: qemu-net-helper-vepa: there is no network device named nope0 in this network namespace; check the name with 'ip link'");
    t.same(ns.macvtaps(), [], 'and released');
    t.same(listLinks(ns), []);
  });

  t.test('execve failing: status 1, every link released', async (t) => {
    const ns = createNetns(t, 'launchexec');
    addVethPair(ns);
    const dir = mkdtempSync(join(tmpdir(), 'qnl-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const fake = join(dir, 'qemu-not-really');
    writeFileSync(fake, 'no interpreter line: not a program execve can run\n', { mode: 0o755 });
    const exit = await startLaunch(ns, [HELPERS, '--', fake, '-net', 'vepa,dev=v0', '-net', 'bridge-macvtap,dev=v1,queues=3']).exited;
    t.equal(exit.code, 1);
    t.equal(exit.stderr, `qemu-net-launch: cannot run ${fake}: execve ${fake}: ENOEXEC (Exec format error); check that it is QEMU and executable\n`);
    t.same(ns.macvtaps(), [], 'both links released');
  });

  t.test('QEMU failing after exec: the links belong to its dead pid and --gc removes them', async (t) => {
    const ns = createNetns(t, 'launchqemufail');
    addVethPair(ns);
    const launch = startLaunch(ns, [HELPERS, '--', QEMU, ...PAUSED, '-net', 'vepa,dev=v0', '-no-such-option']);
    const exit = await launch.exited;
    t.equal(exit.code, 1);
    t.match(exit.stderr, /qemu-system-x86_64: -no-such-option: invalid option/);
    t.match(listLinks(ns), [{ pid: launch.child.pid, state: 'stale' }]);
    t.equal(helperAction(ns, '--gc').code, 0);
    t.same(ns.macvtaps(), []);
  });

  t.test('interrupted while a helper runs: the links made are released, QEMU never starts', async (t) => {
    const ns = createNetns(t, 'launchint');
    addVethPair(ns);
    // Each helper stops itself right after handing its fds over (test-only seam).
    const seamed = `--helper-command=env -i PATH=${CLEAN_PATH} ${process.execPath} ${REPO}test/support/helper-with-seams.ts {} --seam-fault=sent:stop --`;
    const launch = startLaunch(ns, ['--verbose', seamed, '--', QEMU, ...PAUSED, '-net', 'vepa,dev=v0', '-net', 'vepa,dev=v1']);
    const pid = launch.child.pid!;
    const helper = await waitFor('the first helper to stop', () => {
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'latin1').trim().split(' ').filter(Boolean)) {
          if (processState(Number(child)) === 'T') return Number(child);
        }
      }
      return undefined;
    });
    t.equal(ns.macvtaps().length, 1, 'the first link exists');
    process.kill(pid, 'SIGINT');
    process.kill(helper, 'SIGCONT');
    const exit = await launch.exited;
    t.equal(exit.code, 130, '128 + SIGINT');
    t.equal(exit.stderr.trimEnd().split('\n').pop(), 'qemu-net-launch: interrupted by SIGINT; nothing was started; every link made was released');
    t.equal(exit.stderr.match(/--probe$/gm)?.length, 1, 'the second helper never ran');
    t.same(ns.macvtaps(), [], 'nothing left');
  });

  t.test('refuses to run with file capabilities (it would hand them to whatever it runs)', async (t) => {
    const node = copyExecutable(t, 'qnl-', process.execPath, 'node').path;
    const setcap = spawnSync('setcap', ['cap_net_raw+ep', node], { encoding: 'utf8' });
    t.equal(setcap.status, 0, setcap.stderr);
    const asNobody = (program: string) => spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', program, LAUNCH, '--', 'sh', '-c', 'echo ran'],
      { encoding: 'utf8', timeout: 30_000, env: { PATH: CLEAN_PATH } });
    const refused = asNobody(node);
    t.equal(refused.status, 1);
    t.equal(refused.stdout, '', 'nothing ran');
    t.equal(refused.stderr, 'qemu-net-launch: runs with privileges (setuid, setgid or file capabilities) and would hand them to any program it runs; install it as a plain executable (mode 0755, no capabilities): the helpers do the privileged work\n');
    const plain = asNobody(process.execPath);
    t.equal(plain.status, 0, plain.stderr);
    t.equal(plain.stdout, 'ran\n', 'the same user without capabilities runs it');
  });
}
