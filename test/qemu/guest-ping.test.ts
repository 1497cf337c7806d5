// End to end: a real guest (Debian cloud kernel, busybox initramfs, TCG)
// whose NIC is backed by the macvtap qemu-net-helper-vepa made pings a veth
// peer in another namespace. The guest image is built and cached by
// test/support/guest.ts.

import { spawn } from 'node:child_process';
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

  t.test('IPv6: the peer finds and pings a guest address the host never joined (neighbour discovery needs allmulti), not with --allmulti=off', async (t) => {
    const image = await buildGuestImage();
    const { host, peer } = hostAndPeer(t, 'e2e6', '169.254.77.1/16');
    peer.ip('addr', 'add', 'fe80::77:1/64', 'dev', 'v1', 'nodad');

    /** Boots a guest with fe80::77:2 that stays up; once it has its addresses the peer pings it (bounded). Returns ping's exit code. */
    async function peerPingsGuest(extra: string): Promise<{ code: number | null; guestOk: boolean; console: string }> {
      const mac = '52:54:00:e2:e6:02';
      // Nothing learned from an earlier boot (same MAC and address): the peer must solicit.
      peer.ip('-6', 'neigh', 'flush', 'dev', 'v1');
      const args = [
        ...guestQemuArgs(image, { netdevId: 'n0', mac, guestIp: '169.254.77.2/16', peerIp: '169.254.77.1', guestIp6: 'fe80::77:2/64', hold: true }),
        '-netdev', `tap,id=n0,helper=${VEPA.join(' ')} --dev=v0 --mac=${mac}${extra}`,
      ];
      let ping: Promise<number | null> | undefined;
      let seen = '';
      const run = await runGuest([...host.exec, QEMU_BINARY, ...args], {
        timeoutMs: 180_000,
        exitGraceMs: 25_000,
        onConsole: (chunk) => {
          // The guest printed its result: its addresses are there. The peer has no neighbour entry for it.
          seen += chunk;
          if (ping || !/QNH-GUEST-RESULT/.test(seen)) return;
          ping = new Promise((resolve) => {
            const p = spawn('ip', ['netns', 'exec', peer.name, 'busybox', 'ping', '-6', '-c', '3', '-w', '15', '-I', 'v1', 'fe80::77:2'], { stdio: 'ignore' });
            p.on('close', (code) => resolve(code));
          });
        },
      });
      for (const name of host.macvtaps()) host.ip('link', 'del', name);
      return { code: ping ? await ping : null, guestOk: run.pingOk, console: run.console.split('\n').filter((l) => /QNH-GUEST/.test(l)).join('\n') };
    }

    const off = await peerPingsGuest(' --allmulti=off');
    t.ok(off.guestOk, 'the control guest came up too');
    t.not(off.code, null, 'the peer pinged the control guest');
    t.not(off.code, 0, 'with --allmulti=off the solicitation never reaches the guest: no reply (what users of real NICs saw)');
    const on = await peerPingsGuest('');
    t.ok(on.guestOk, 'the guest came up and pinged over IPv4');
    t.not(on.code, null, 'the peer pinged the guest');
    t.equal(on.code, 0, 'allmulti (the default): the peer resolved fe80::77:2 and got echo replies from the guest', { guestConsole: on.console });
  });
}
