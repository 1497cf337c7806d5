// End to end through the launcher: the proposal's `qemu -net vepa,dev=v0`,
// on stock QEMU. A real guest (test/support/guest.ts) boots with
//   qemu-net-launch -- qemu-system-x86_64 ... -net vepa,dev=v0
// and pings the veth peer in another namespace: only possible when the NIC
// the launcher added has the macvtap's MAC. After QEMU exits, --gc removes
// the link.

import t from 'tap';
import { buildGuestImage, guestQemuArgs, QEMU_BINARY, runGuest } from '../support/guest.ts';
import { helperAction } from '../support/helper-actions.ts';
import { hostAndPeer } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

const CLEAN_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
const HELPERS = `--helper-command=env -i PATH=${CLEAN_PATH} ${process.execPath} ${REPO}helpers/{}.ts`;

const skip = privilegedSkipReason(['ip', QEMU_BINARY, 'apt-get', 'dpkg-deb']);
if (skip) t.plan(0, skip);
else {
  t.test('qemu-net-launch -- qemu-system-x86_64 ... -net vepa,dev=v0: the guest pings the veth peer', async (t) => {
    const image = await buildGuestImage();
    const { host } = hostAndPeer(t, 'lguest', '169.254.77.1/16');

    // The guest's usual arguments without its NIC: the shorthand brings one. The MAC given
    // here is dropped with that NIC; the launcher's NIC gets the macvtap's.
    const guestArgs = guestQemuArgs(image, { netdevId: 'unused', mac: '52:54:00:00:00:99', guestIp: '169.254.77.2/16', peerIp: '169.254.77.1' });
    const nic = guestArgs.findIndex((a, i) => a === '-device' && guestArgs[i + 1]?.startsWith('virtio-net-pci,netdev=unused,'));
    t.ok(nic >= 0, 'found the NIC guestQemuArgs adds');
    const args = [
      ...guestArgs.slice(0, nic), ...guestArgs.slice(nic + 2),
      '-global', 'virtio-net-pci.romfile=', // no iPXE ROM (not installed, not needed for -kernel)
      '-net', 'vepa,dev=v0',
    ];
    const launcher = [...host.exec, process.execPath, `${REPO}helpers/qemu-net-launch.ts`, '--verbose', HELPERS, '--', QEMU_BINARY, ...args];
    const run = await runGuest(launcher, { timeoutMs: 120_000, env: { PATH: CLEAN_PATH } });
    t.ok(run.pingOk, `the guest gets replies through the launcher's macvtap (${Math.round(run.resultMs)} ms to result)`);
    t.match(run.console, /QNH-GUEST-RESULT: ping=ok/);
    t.equal(run.exitCode, 0, 'QEMU exited by itself');

    const qemuLine = run.stderr.split('\n').find((l) => l.startsWith(`${QEMU_BINARY} `)) ?? '';
    const m = / -netdev tap,id=vepa0,fd=\d+,vhost=off -device virtio-net-pci,netdev=vepa0,mac=([0-9a-f:]{17})$/.exec(qemuLine);
    t.ok(m, `the shorthand became a tap netdev and a virtio NIC: ${qemuLine}`);
    const links = host.macvtaps().map((n) => host.link(n)!);
    t.equal(links.length, 1, 'one macvtap, left for --gc now that QEMU is gone');
    t.equal(links[0]?.address, m?.[1], 'the guest NIC had the macvtap\'s MAC');
    t.equal(links[0]?.linkinfo?.info_data?.mode, 'vepa');
    t.equal(links[0]?.link, 'v0');

    const gc = helperAction(host, '--gc');
    t.equal(gc.code, 0, gc.stderr);
    t.match(gc.stdout, new RegExp(`removed ${links[0]?.ifname}: its owner pid [0-9]+ is gone`));
    t.same(host.macvtaps(), [], '--gc removed the link');
  });
}
