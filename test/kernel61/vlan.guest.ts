// --vlan=ID (issue 17): the macvtap sits on the 802.1Q VLAN of the lower
// device, which the helper makes when missing and deletes with its last link,
// and reuses (and never deletes) when someone else made it. This machine's
// kernel has no 802.1Q support; the Debian 12 kernel job
// (test/kernel61/debian-kernel.test.ts) loads 8021q, and this file runs there
// (named *.guest.ts, npm test on this machine does not pick it up). Run by
// hand it skips only where the kernel cannot make a VLAN and it is not in that job.
//
// The guest is the test itself on the tap queue: it sends an ARP request for
// the peer's VLAN 100 address and reads the answer; tcpdump on the peer's
// untagged device shows the 802.1Q tag.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import t from 'tap';
import { callHelper, HelperCallError } from '../../lib/client.ts';
import { VLAN_GROUP } from '../../lib/helper/vlan.ts';
import { makeCapNode } from '../support/cap-node.ts';
import { captureOneFrame } from '../support/capture.ts';
import { helperAction } from '../support/helper-actions.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { GUEST_NODE_FLAGS, REPO, retryGuestCrash, seamedHelper, VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import { awaitTapFrame, writeTapFrame } from '../support/tap-frames.ts';

const inKernelJob = Boolean(process.env.QNH_KERNEL_GUEST);

/** Whether this kernel can make a VLAN link (tried in a namespace of its own). */
function kernelHasVlans(): boolean {
  const ns = `qnh-vlanprobe-${process.pid}`;
  if (spawnSync('ip', ['netns', 'add', ns]).status !== 0) return false;
  try {
    spawnSync('ip', ['-n', ns, 'link', 'add', 'p0', 'type', 'dummy']);
    return spawnSync('ip', ['-n', ns, 'link', 'add', 'link', 'p0', 'name', 'p0.5', 'type', 'vlan', 'id', '5']).status === 0;
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

const skip = privilegedSkipReason(['ip', 'tcpdump', 'setcap', 'setpriv']) ||
  (!inKernelJob && !kernelHasVlans() ? 'this kernel has no 802.1Q support; this runs in the Debian 6.1 kernel job (test/kernel61/debian-kernel.test.ts)' : false);
if (skip) t.plan(0, skip);
else {
  const call = (ns: Netns, helper: string[], args: string[]) => callHelper({ command: [...ns.exec, ...helper], args, timeoutMs: 90_000 });
  const vlanLinks = (ns: Netns) => (JSON.parse(ns.ip('-d', '-j', 'link', 'show')) as Array<Record<string, any>>).filter((l) => l.linkinfo?.info_kind === 'vlan');
  const oursLeft = (ns: Netns) => vlanLinks(ns).filter((l) => l.group === String(VLAN_GROUP) || l.group === VLAN_GROUP || /^qnhvlan/.test(l.ifname));

  /** A peer on VLAN 100 of v1, with a link-local address. */
  function vlanPeer(ns: Netns): void {
    addVethPair(ns, 'v0', 'v1');
    ns.ip('link', 'add', 'link', 'v1', 'name', 'v1.100', 'type', 'vlan', 'id', '100');
    ns.ip('addr', 'add', '169.254.100.1/24', 'dev', 'v1.100');
    ns.ip('link', 'set', 'v1.100', 'up');
  }

  function arpRequest(srcMac: string, srcIp: string, targetIp: string): Buffer {
    const mac = (s: string) => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
    const ip = (s: string) => Buffer.from(s.split('.').map(Number));
    const frame = Buffer.concat([Buffer.alloc(6, 0xff), mac(srcMac), Buffer.from([0x08, 0x06]),
      Buffer.from([0, 1, 8, 0, 6, 4, 0, 1]), mac(srcMac), ip(srcIp), Buffer.alloc(6), ip(targetIp)]);
    return Buffer.concat([frame, Buffer.alloc(Math.max(0, 60 - frame.length))]);
  }

  /** Reads the queue (bounded) for an ARP reply from `fromIp`. */
  function arpReplyFrom(fd: number, fromIp: string, timeoutMs: number): boolean {
    const want = Buffer.from(fromIp.split('.').map(Number));
    const isReply = (f: Buffer) => f.length >= 42 && f.readUInt16BE(12) === 0x0806 && f.readUInt16BE(20) === 2 && f.subarray(28, 32).equals(want);
    return awaitTapFrame(fd, isReply, timeoutMs).frame !== undefined;
  }

  t.test('--vlan=100: the macvtap sits on a VLAN the helper made; the peer on VLAN 100 answers; the tag is on the wire; the VLAN goes with the link', async (t) => {
    const ns = createNetns(t, 'vlan');
    vlanPeer(ns);
    const r = await call(ns, VEPA, ['--dev=v0', '--vlan=100']);
    let released = false;
    t.teardown(() => { r.close(); if (!released) helperAction(ns, `--release=${r.record.ifname}`); });
    t.match(r.record, { lower: 'v0', vlan: 100, mode: 'vepa' });
    const carrier = vlanLinks(ns).find((l) => l.linkinfo?.info_data?.id === 100 && l.link === 'v0');
    t.ok(carrier, 'a VLAN 100 link on v0 exists');
    t.match(carrier?.ifname, /^qnhvlan\d+$/, 'named by the helper');
    t.equal(ns.link(r.record.ifname)?.link, carrier?.ifname, 'the macvtap is on it');
    const ipv6 = spawnSync('ip', ['netns', 'exec', ns.name, 'cat', `/proc/sys/net/ipv6/conf/${carrier?.ifname}/disable_ipv6`], { encoding: 'utf8' }).stdout.trim();
    t.equal(ipv6, '1', 'the host\'s IPv6 is off on the VLAN link it made (no SLAAC of the host on that VLAN)');
    t.same((JSON.parse(ns.ip('-6', '-j', 'addr', 'show', 'dev', String(carrier?.ifname))) as Array<{ addr_info: unknown[] }>).flatMap((l) => l.addr_info), [], 'and no host address there');
    const line = await captureOneFrame(ns, 'v1', 'vlan 100 and arp', () => {
      writeTapFrame(r.tapFds[0]!, arpRequest(r.record.mac, '169.254.100.2', '169.254.100.1'));
    });
    t.match(line, /vlan 100/, `tcpdump on the peer's untagged device shows the tag: ${line}`);
    t.ok(arpReplyFrom(r.tapFds[0]!, '169.254.100.1', 5000), 'the peer on VLAN 100 answered the guest');
    const rel = helperAction(ns, `--release=${r.record.ifname}`);
    released = true;
    t.equal(rel.code, 0, rel.stderr);
    t.match(rel.stdout, new RegExp(`removed ${carrier?.ifname}: the VLAN link it was on, now unused`));
    t.same(oursLeft(ns), [], 'no VLAN link of the helpers is left');
    t.ok(ns.link('v1.100'), 'the peer\'s own VLAN link is untouched');
  });

  t.test('a VLAN link someone else made is used and never deleted; --probe and faults leave no VLAN of ours', async (t) => {
    const ns = createNetns(t, 'vlanreuse');
    addVethPair(ns);
    ns.ip('link', 'add', 'link', 'v0', 'name', 'v0.200', 'type', 'vlan', 'id', '200');
    ns.ip('link', 'set', 'v0.200', 'up');
    const r = await call(ns, VEPA, ['--dev=v0', '--vlan=200']);
    t.equal(ns.link(r.record.ifname)?.link, 'v0.200', 'the administrator\'s v0.200 is used');
    r.close();
    t.equal(helperAction(ns, `--release=${r.record.ifname}`).code, 0);
    t.ok(ns.link('v0.200'), 'and kept after the last link on it went');
    const probe = spawnSync(ns.exec[0]!, [...ns.exec.slice(1), ...VEPA, '--dev=v0', '--vlan=300', '--probe', '--json'], { encoding: 'utf8', timeout: 90_000 });
    t.equal(probe.status, 0, probe.stderr);
    t.match(JSON.parse(probe.stdout || '{}'), { vlan: 300 });
    t.same(oursLeft(ns), [], '--probe: the VLAN it made went with its link');
    const failed = await call(ns, seamedHelper('qemu-net-helper-vepa', ['--seam-fault=created:fail']), ['--dev=v0', '--vlan=301']).catch((e: HelperCallError) => e);
    t.ok(failed instanceof HelperCallError, 'a fault after the macvtap exists fails the run');
    t.same([ns.macvtaps(), oursLeft(ns)], [[], []], 'and rolls back the macvtap and the VLAN it made');
  });

  t.test('an unprivileged user: the policy\'s vlan ids decide, untagged and passthru are refused, a refused VLAN makes nothing, only root deletes a VLAN', async (t) => {
    const ALICE = 64_071;
    const { dir, path: capNode } = makeCapNode(t, 'qnh-vlan-');
    const ns = createNetns(t, 'vlanuser');
    addVethPair(ns);
    addVethPair(ns, 'w0', 'w1');
    const policy = `${dir}/policy.conf`;
    writeFileSync(policy, `allow user ${ALICE} dev v0 vlan 100 netns ${ns.name}\nallow user ${ALICE} dev w0 vlan 100 mode passthru netns ${ns.name}\n`, { mode: 0o644 });
    const as = (args: string[], program = 'qemu-net-helper-vepa') => retryGuestCrash(() => spawnSync(ns.exec[0]!, [...ns.exec.slice(1), 'setpriv', `--reuid=${ALICE}`, `--regid=${ALICE}`, '--clear-groups', 'env', '-i', 'PATH=/usr/bin:/bin',
      capNode, ...GUEST_NODE_FLAGS, `${REPO}test/support/helper-with-seams.ts`, program, `--seam-policy=${policy}`, '--', ...args], { encoding: 'utf8', timeout: 90_000 }), (s) => t.comment(s));
    const refused = as(['--dev=v0', '--vlan=101', '--probe']);
    t.equal(refused.status, 1, `exit ${refused.status}${refused.signal ? `, killed by ${refused.signal}` : ''}${refused.error ? `, ${refused.error.message}` : ''}`);
    t.match(refused.stderr, /^qemu-net-helper-vepa: .*v0 VLAN 101 in mode vepa.*allows only VLAN 100/);
    t.same([ns.macvtaps(), vlanLinks(ns)], [[], []], 'the refusal made nothing');
    const untagged = as(['--dev=v0', '--probe']);
    t.equal(untagged.status, 1, 'a VLAN grant is not an untagged grant');
    t.match(untagged.stderr, /allows only VLAN 100, not untagged use/);
    const passthru = as(['--dev=w0', '--vlan=100', '--probe'], 'qemu-net-helper-passthrough');
    t.equal(passthru.status, 1, 'passthru on a VLAN is refused');
    t.match(passthru.stderr, /a VLAN cannot be used in passthru mode/);
    const allowed = as(['--dev=v0', '--vlan=100', '--probe', '--json']);
    t.equal(allowed.status, 0, `${allowed.stderr}${allowed.signal ? ` (killed by ${allowed.signal})` : ''}`);
    t.match(JSON.parse(allowed.stdout || '{}'), { vlan: 100, lower: 'v0' });
    t.equal(oursLeft(ns).length, 1, 'a user\'s run never deletes a helper VLAN (a stopped pruner could take another user\'s guest with it)');
    const direct = as(['--dev=' + String(oursLeft(ns)[0]?.ifname), '--probe']);
    t.match(direct.stderr, /is a VLAN link the helpers made; ask for the VLAN of the real device/, 'nor can it be asked for by its name');
    const vlanName = String(oursLeft(ns)[0]?.ifname);
    ns.ip('link', 'add', 'qnhtestbr0', 'type', 'bridge');
    ns.ip('link', 'set', vlanName, 'master', 'qnhtestbr0');
    t.notMatch(helperAction(ns, '--gc').stdout, /removed qnhvlan/, 'root\'s --gc keeps it while an administrator has made it a bridge port');
    ns.ip('link', 'set', vlanName, 'nomaster');
    ns.ip('link', 'add', 'link', vlanName, 'name', 'qnhtestqinq', 'type', 'vlan', 'id', '7');
    t.notMatch(helperAction(ns, '--gc').stdout, /removed qnhvlan/, 'and while another VLAN sits on it');
    ns.ip('link', 'del', 'qnhtestqinq');
    const gc = helperAction(ns, '--gc');
    t.match(gc.stdout, /^removed qnhvlan\d+: a VLAN link of the helpers with nothing on it$/m, 'root\'s --gc (the timer) deletes it once nothing uses it');
    t.same(oursLeft(ns), [], 'gone');
  });
}
