// Multicast and IPv6 for the guest (issue 17): a helper-made macvtap has
// IFF_ALLMULTI (so macvlan hands it every multicast frame, a guest's neighbour
// solicitations included, and raises allmulti on the lower device while it is
// up; passthru makes it promiscuous instead), and the host's IPv6 is off on it (no address of the host's answers
// neighbour discovery in the guest's place).
//
// The "guest" here is the test reading the tap queue: a neighbour solicitation
// the peer sends for a second guest address (fe80::77:2, which nothing on the
// host joined) must reach the queue with allmulti on, and must not with
// --allmulti=off. A macvtap made by `ip link add` in the same namespace is the
// control: the host configures IPv6 on it.

import { spawn, spawnSync } from 'node:child_process';
import t from 'tap';
import { callHelper, type HelperResult } from '../../lib/client.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { BRIDGE, PASSTHROUGH, VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import { awaitTapFrame } from '../support/tap-frames.ts';

const skip = privilegedSkipReason(['ip', 'busybox']);
if (skip) t.plan(0, skip);
else {
  const call = (ns: Netns, helper: string[], args: string[]) => callHelper({ command: [...ns.exec, ...helper], args, timeoutMs: 60_000 });
  const sysctl = (ns: Netns, dev: string) => spawnSync('ip', ['netns', 'exec', ns.name, 'cat', `/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`], { encoding: 'utf8' }).stdout.trim();
  const ipv6Addresses = (ns: Netns, dev: string) => (JSON.parse(ns.ip('-6', '-j', 'addr', 'show', 'dev', dev)) as Array<{ addr_info: unknown[] }>).flatMap((l) => l.addr_info);
  const allmultiCount = (ns: Netns, dev: string) => ns.link(dev)?.allmulti as number | undefined;
  const hasCount = allmultiCount; // this kernel reports IFLA_ALLMULTI (6.1 does not: the flag is checked there)

  t.test('every mode: IFF_ALLMULTI set, the lower device\'s allmulti raised while the link lives, the host\'s IPv6 off', async (t) => {
    const ns = createNetns(t, 'amulti');
    addVethPair(ns, 'v0', 'v1');
    addVethPair(ns, 'w0', 'w1');
    for (const [helper, lower, mode] of [[VEPA, 'v0', 'vepa'], [BRIDGE, 'v0', 'bridge'], [PASSTHROUGH, 'w0', 'passthru']] as const) {
      const before = allmultiCount(ns, lower);
      const r = await call(ns, helper, [`--dev=${lower}`]);
      const name = r.record.ifname;
      try {
        t.match(r.record, { mode, allmulti: true, hostIpv6: 'off' }, `${mode}: the record says allmulti and host IPv6 off`);
        t.ok((ns.link(name)?.flags as string[]).includes('ALLMULTI'), `${mode}: ip link shows ALLMULTI on ${name}`);
        // passthru makes the lower device promiscuous instead (macvlan_open skips allmulti then): every multicast frame arrives either way.
        if (mode === 'passthru') t.ok((ns.link(lower)?.promiscuity as number) >= 1, `${mode}: ${lower} is promiscuous`);
        else if (before !== undefined) t.equal(allmultiCount(ns, lower), before + 1, `${mode}: ${lower}'s allmulti count rose by one`);
        t.equal(sysctl(ns, name), '1', `${mode}: disable_ipv6 is 1 on ${name}`);
        t.same(ipv6Addresses(ns, name), [], `${mode}: no IPv6 address of the host's on ${name}`);
      } finally {
        r.close();
        ns.ip('link', 'del', name);
      }
      if (before !== undefined) t.equal(allmultiCount(ns, lower), before, `${mode}: ${lower}'s allmulti count fell back when the link went`);
    }
    // The control: a macvtap of another tool, same namespace, same lower device, gets the host's IPv6 at once.
    ns.ip('link', 'add', 'link', 'v0', 'name', 'othertap0', 'type', 'macvtap', 'mode', 'vepa');
    ns.ip('link', 'set', 'othertap0', 'up');
    t.not(ipv6Addresses(ns, 'othertap0').length, 0, 'the control: a macvtap made by ip link gets a host IPv6 address (the check above can fail)');
    t.notOk((ns.link('othertap0')?.flags as string[]).includes('ALLMULTI'), 'and no ALLMULTI');
  });

  t.test('--allmulti=off: no IFF_ALLMULTI, the lower device untouched, the record says so', async (t) => {
    const ns = createNetns(t, 'amoff');
    addVethPair(ns);
    const before = allmultiCount(ns, 'v0');
    const r = await call(ns, VEPA, ['--dev=v0', '--allmulti=off']);
    t.teardown(() => r.close());
    t.match(r.record, { allmulti: false, hostIpv6: 'off' });
    t.equal(r.fields.get('allmulti'), '0');
    t.notOk((ns.link(r.record.ifname)?.flags as string[]).includes('ALLMULTI'), 'no ALLMULTI');
    if (hasCount(ns, 'v0') !== undefined) t.equal(allmultiCount(ns, 'v0'), before, 'v0\'s allmulti count unchanged');
  });

  /** Reads the queue (bounded) until a neighbour solicitation for `target` comes, or the time is up. */
  function solicitationArrives(fd: number, target: Buffer, timeoutMs: number): boolean {
    // Ethernet, IPv6 (0x86dd), ICMPv6 (next header 58), type 135, target at ICMPv6 offset 8.
    const isSolicitation = (f: Buffer) => f.length >= 14 + 40 + 24 && f.readUInt16BE(12) === 0x86dd && f[14 + 6] === 58 && f[54] === 135 && f.subarray(62, 78).equals(target);
    return awaitTapFrame(fd, isSolicitation, timeoutMs).frame !== undefined;
  }

  /** The peer asks for fe80::77:2 (ping, bounded) while the test reads the guest's queue. */
  async function peerSolicits(ns: Netns, r: HelperResult): Promise<boolean> {
    const target = Buffer.from('fe800000000000000000000000770002', 'hex');
    const ping = spawn('ip', ['netns', 'exec', ns.name, 'busybox', 'ping', '-6', '-c', '4', '-W', '1', '-I', 'v1', 'fe80::77:2'], { stdio: 'ignore' });
    try {
      return solicitationArrives(r.tapFds[0]!, target, 4000);
    } finally {
      ping.kill('SIGKILL');
    }
  }

  t.test('a neighbour solicitation for a guest address nothing on the host joined reaches the guest with allmulti, not without', async (t) => {
    const ns = createNetns(t, 'amnd');
    addVethPair(ns);
    // The peer's own link-local address, usable at once (no duplicate address detection to wait for).
    ns.ip('addr', 'add', 'fe80::77:1/64', 'dev', 'v1', 'nodad');
    const on = await call(ns, VEPA, ['--dev=v0', '--mac=52:54:00:77:00:02']);
    try {
      t.ok(await peerSolicits(ns, on), 'with allmulti (the default): the solicitation for fe80::77:2 is on the queue');
    } finally {
      on.close();
      ns.ip('link', 'del', on.record.ifname);
    }
    const off = await call(ns, VEPA, ['--dev=v0', '--mac=52:54:00:77:00:02', '--allmulti=off']);
    try {
      t.notOk(await peerSolicits(ns, off), 'with --allmulti=off: macvlan filters it out (what guests on real NICs suffered)');
    } finally {
      off.close();
    }
  });
}
