// End to end: a real guest (Debian cloud kernel, busybox initramfs, TCG)
// whose NIC is backed by the macvtap qemu-net-helper-vepa made pings a veth
// peer in another namespace. The guest image is built and cached by
// test/support/guest.ts.

import t from 'tap';
import { buildGuestImage, guestQemuArgs, QEMU_BINARY, runGuest } from '../support/guest.ts';
import { hostAndPeer } from '../support/netns.ts';
import { VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

const skip = privilegedSkipReason(['ip', QEMU_BINARY, 'apt-get', 'dpkg-deb']);
if (skip) t.plan(0, skip);
else {
  t.test('a guest pings the veth peer through the helper-made macvtap', async (t) => {
    const image = await buildGuestImage();
    const { host } = hostAndPeer(t, 'e2e', '169.254.77.1/16');

    async function boot(helperMac: string, guestMac: string) {
      const args = [
        ...guestQemuArgs(image, { netdevId: 'n0', mac: guestMac, guestIp: '169.254.77.2/16', peerIp: '169.254.77.1' }),
        '-netdev', `tap,id=n0,helper=${VEPA.join(' ')} --dev=v0 --mac=${helperMac}`,
      ];
      return runGuest([...host.exec, QEMU_BINARY, ...args], { timeoutMs: 120_000 });
    }

    const mac = '52:54:00:e2:e0:01';
    const ok = await boot(mac, mac);
    t.ok(ok.pingOk, `guest with the macvtap's MAC gets replies (${Math.round(ok.resultMs)} ms to result)`);
    t.match(ok.console, /QNH-GUEST-RESULT: ping=ok/);
    const made = host.macvtaps().map((n) => host.link(n));
    t.equal(made.length, 1, 'the helper made one macvtap');
    t.equal(made[0]?.address, mac);
    t.equal(made[0]?.linkinfo?.info_data?.mode, 'vepa');
    for (const name of host.macvtaps()) host.ip('link', 'del', name);

    // The same setup with a guest MAC that differs from the macvtap's must
    // fail: proof that the replies above really crossed the macvtap.
    const other = await boot('52:54:00:e2:e0:02', '52:54:00:e2:e0:03');
    t.notOk(other.pingOk, 'a guest whose MAC differs from the macvtap\'s gets no replies');
    t.match(other.console, /QNH-GUEST-RESULT: ping=fail/);
  });
}
