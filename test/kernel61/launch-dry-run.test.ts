// qemu-net-launch --dry-run, the way a person first tries it:
//   qemu-net-launch --dry-run -- qemu-system-x86_64 ... -net vepa,dev=v0 -netdev macvtap,...
// in a throwaway namespace. It runs here and in the Debian 6.1 kernel job
// (test/kernel61/debian-kernel.test.ts), where vhost_net is loaded: there the
// helpers must hand over real vhost-net fds and the QEMU line must carry them.

import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import t from 'tap';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { GUEST_ENV, GUEST_NODE_FLAGS, REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import { QEMU } from '../support/qemu.ts';

const CLEAN_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
const LAUNCH = `${REPO}helpers/qemu-net-launch.ts`;
// In the kernel job, the launcher and the helpers run as test/support/paths.ts runs
// helpers there: with Node's compile cache and the options it was made under.
const HELPERS = `--helper-command=${['env', '-i', `PATH=${CLEAN_PATH}`, ...GUEST_ENV, process.execPath, ...GUEST_NODE_FLAGS, `${REPO}helpers/{}.ts`].join(' ')}`;
const LAUNCH_ENV = Object.fromEntries([`PATH=${CLEAN_PATH}`, ...GUEST_ENV].map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
const PAUSED = ['-accel', 'tcg', '-machine', 'pc', '-nodefaults', '-display', 'none', '-serial', 'none', '-S'];

function dryRun(ns: Netns, args: string[], timeoutMs = 180_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(ns.exec[0]!, [...ns.exec.slice(1), process.execPath, ...GUEST_NODE_FLAGS, LAUNCH, '--dry-run', HELPERS, '--', QEMU, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], env: LAUNCH_ENV });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`dry run did not finish within ${timeoutMs} ms; stderr: ${stderr}`)); }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

const skip = privilegedSkipReason(['ip', QEMU]);
if (skip) t.plan(0, skip);
else {
  // In the kernel job vhost must work; elsewhere it works exactly when the device is there.
  const vhost = Boolean(process.env.QNH_KERNEL_GUEST) || existsSync('/dev/vhost-net');

  t.test(`--dry-run with -net vepa and a two-queue -netdev macvtap (vhost ${vhost ? 'on' : 'off'})`, async (t) => {
    const ns = createNetns(t, 'k61dry');
    addVethPair(ns, 'v0', 'v1');
    addVethPair(ns, 'w0', 'w1');
    const r = await dryRun(ns, [...PAUSED, '-net', 'vepa,dev=v0,mac=52:54:00:61:00:01',
      '-netdev', 'macvtap,id=n0,dev=w0,mode=bridge,queues=2,vhost=try', '-device', 'virtio-net-pci,netdev=n0,romfile=']);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stderr, '', 'nothing on stderr');
    const lines = r.stdout.trimEnd().split('\n');
    t.equal(lines.length, 8, 'header, two helper lines and their results, the QEMU line and its header, the release', { stdout: r.stdout });
    t.match(lines[0], /^# qemu-net-launch runs each helper with --socketpair=3/);
    t.match(lines[1], /qemu-net-helper-vepa\.ts --dev=v0 --mac=52:54:00:61:00:01 --probe$/);
    t.match(lines[3], /qemu-net-helper-bridge\.ts --dev=w0 --mode=bridge --queues=2 --vhost=try --probe$/);
    const vhostText = vhost ? 'vhost on' : 'vhost off (cannot open /dev/vhost-net: ENOENT';
    t.match(lines[2], new RegExp(`^# vepa0: macvtap\\d+ on v0, mode vepa, mac 52:54:00:61:00:01, 1 queue, ${vhostText.replace(/[()/]/g, '\\$&')}`));
    t.match(lines[4], new RegExp(`^# n0: macvtap\\d+ on w0, mode bridge, mac \\S+, 2 queues, ${vhostText.replace(/[()/]/g, '\\$&')}`));
    t.match(lines[5], /^# QEMU \(\S+qemu-system-x86_64\), inheriting fds [\d ]+:$/);
    const inherited = (/inheriting fds ([\d ]+):$/.exec(lines[5]!)?.[1] ?? '').split(' ');
    t.equal(inherited.length, vhost ? 6 : 3, `${vhost ? 'three tap and three vhost' : 'three tap'} fds passed to QEMU`);
    if (vhost) {
      t.match(lines[6], /-netdev tap,id=vepa0,fd=\d+,vhost=on,vhostfd=\d+ -device virtio-net-pci,netdev=vepa0,mac=52:54:00:61:00:01/, 'QEMU gets the vhost fd of -net vepa');
      t.match(lines[6], /-netdev tap,id=n0,fds=\d+:\d+,vhost=on,vhostfds=\d+:\d+ -device virtio-net-pci,netdev=n0,romfile=,mac=\S+,mq=on,vectors=6/, 'and one per queue of n0');
    } else {
      t.match(lines[6], /-netdev tap,id=vepa0,fd=\d+,vhost=off .*-netdev tap,id=n0,fds=\d+:\d+,vhost=off /);
    }
    t.match(lines[7], /^# dry run: released macvtap\d+, macvtap\d+$/);
    t.same(ns.macvtaps(), [], 'nothing left');
  });
}
