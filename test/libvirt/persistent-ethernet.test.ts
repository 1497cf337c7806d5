// libvirt's unprivileged session (qemu:///session, Debian 12's libvirt 9.0)
// on a persistent macvtap (issue 14): the user makes the link with the
// helper (a file-capability copy of the pinned node, as installed), then
// `virsh create`s a transient TCG domain with
//   <interface type='ethernet'><target dev='macvtap...' managed='no'/>
// libvirt opens the link's /dev/tapN itself, once per queue; the guest pings
// the veth peer. `virsh destroy` leaves the link (it is the user's until
// --release); --release removes the link and its node.
// See docs/libvirt.md; the session plumbing is test/libvirt/session.ts.

import { existsSync, statSync } from 'node:fs';
import t, { type Test } from 'tap';
import { boot, devNodesOf, domainLog, ethernetInterface, fdsTo, GUEST_MAC, holdersOf, libvirtSkipReason, openSession, qemuOf, waitFor, type Session } from './session.ts';

const skip = libvirtSkipReason();
if (skip) t.plan(0, skip);
else {
  const s: Session = await openSession(t, 'lveth');
  const policy = s.policy(`allow user ${s.user.name} dev v0 netns ${s.host.name} persistent queues 2\n`);
  const vepa = (args: string[]) => s.helper('qemu-net-helper-vepa', policy, args);

  /** The user makes a persistent link; returns its record. */
  function makeLink(t: Test, ifname: string, extra: string[] = []): Record<string, any> {
    const r = vepa(['--dev=v0', `--mac=${GUEST_MAC}`, `--ifname=${ifname}`, '--persistent', '--json', ...extra]);
    t.equal(r.status, 0, `the user makes ${ifname}: ${r.stderr}`);
    const rec = JSON.parse(r.stdout);
    t.match(rec, { ifname, lower: 'v0', mode: 'vepa', mac: GUEST_MAC, fds: [], persistent: '1', device: `/dev/tap${rec.ifindex}` });
    const node = statSync(rec.device);
    t.ok(node.isCharacterDevice() && node.uid === s.user.uid && node.gid === s.user.gid && (node.mode & 0o777) === 0o600,
      `${rec.device} is the user's (0600)`);
    return rec;
  }

  /** virsh destroy: the domain's QEMU goes, the link stays, still the user's and persistent; then --release ends it. */
  async function destroyThenRelease(t: Test, name: string, rec: Record<string, any>): Promise<void> {
    const destroyed = s.virsh(['destroy', name]);
    t.equal(destroyed.status, 0, `virsh destroy: ${destroyed.stderr}`);
    t.ok(await waitFor(() => qemuOf(s, name) === undefined, 15_000), 'its QEMU is gone');
    t.same(holdersOf(s, rec.device), [], 'no process of the user holds the queue any more');
    t.same(s.host.macvtaps(), [rec.ifname], 'the link outlives the domain');
    t.ok(existsSync(rec.device), 'and so does its node');
    const list = s.helper('qemu-net-helper-vepa', policy, ['--list', '--json']);
    t.equal(list.status, 0, list.stderr);
    t.match(JSON.parse(list.stdout), [{ name: rec.ifname, state: 'persistent', uid: s.user.uid, mac: GUEST_MAC }], '--list: persistent, the user\'s');
    const gc = s.rootHelper(['--gc']);
    t.equal(gc.status, 0, gc.stderr);
    t.equal(gc.stdout, '', 'root\'s collection keeps it although nobody holds it');
    t.same(s.host.macvtaps(), [rec.ifname]);

    const released = vepa([`--release=${rec.ifname}`]);
    t.equal(released.status, 0, `--release: ${released.stderr}`);
    t.same(s.host.macvtaps(), [], 'released: the link is gone');
    t.ok(await waitFor(() => !existsSync(rec.device), 5_000), `${rec.device} is gone`);
    t.same(devNodesOf(s), [], 'nothing under /dev is the user\'s');
  }

  t.test('one queue: a persistent link, <interface type=\'ethernet\'> managed=\'no\', virsh create; the guest pings; destroy keeps the link, --release ends it', async (t) => {
    const rec = makeLink(t, 'macvtaplv0');
    const b = await boot(s, ethernetInterface('macvtaplv0'));
    t.ok(b.pingOk, `the guest pings the peer through the persistent link (${b.resultMs} ms from virsh create to the result)`);
    t.match(b.console, /QNH-GUEST-INFO: eth0 mac=52:54:00:77:00:02/);
    t.equal(fdsTo(b.qemu.pid, rec.device).length, 1, `QEMU holds one queue of ${rec.device}, opened by libvirt`);
    t.match(domainLog(s, b.name), /-netdev '?\{"type":"tap","fd":"\d+"/, 'one tap fd on QEMU\'s command line');
    const ifl = s.virsh(['domiflist', b.name]);
    t.match(ifl.stdout, /macvtaplv0\s+ethernet\s+-\s+virtio\s+52:54:00:77:00:02/, 'virsh domiflist names the link');
    await destroyThenRelease(t, b.name, rec);
  });

  t.test('two queues: --queues=2 and <driver name=\'qemu\' queues=\'2\'/>; QEMU gets both queues; the guest pings', async (t) => {
    const rec = makeLink(t, 'macvtaplv1', ['--queues=2']);
    t.match(rec, { queues: 2, multi_queue: true });
    const b = await boot(s, ethernetInterface('macvtaplv1', 2));
    t.ok(b.pingOk, `the guest pings through the two-queue persistent link (${b.resultMs} ms)`);
    const fds = fdsTo(b.qemu.pid, rec.device);
    t.equal(fds.length, 2, `QEMU holds two queues of ${rec.device} (fds ${fds.join(', ')})`);
    const log = domainLog(s, b.name);
    t.match(log, /-netdev '?\{"type":"tap","fds":"\d+:\d+"/, 'fds=a:b on QEMU\'s command line');
    t.match(log, /"driver":"virtio-net-pci","mq":true,"vectors":6/, 'a multiqueue virtio NIC (2 * 2 + 2 vectors)');
    t.match(s.virsh(['dumpxml', b.name]).stdout, /<driver name='qemu' queues='2'\/>/);
    await destroyThenRelease(t, b.name, rec);
  });
}
