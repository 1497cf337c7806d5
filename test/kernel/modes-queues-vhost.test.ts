// The three modes as the kernel and the wire see them, multiqueue, and vhost.

import { fstatSync, statSync } from 'node:fs';
import t from 'tap';
import { callHelper, HelperCallError, type HelperResult } from '../../lib/client.ts';
import { IFF_MULTI_QUEUE, IFF_VNET_HDR } from '../../lib/constants.ts';
import { readQueueInfo } from '../../lib/tap.ts';
import { captureOneFrame, testFrame } from '../support/capture.ts';
import { FAKE_VHOST_FEATURES } from '../support/fake-vhost.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { BRIDGE, PASSTHROUGH, seamedHelper, VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import { awaitTapFrame, drainTapQueue, writeTapFrame } from '../support/tap-frames.ts';

const skip = privilegedSkipReason(['ip', 'tcpdump']);
if (skip) t.plan(0, skip);
else {
  const call = (ns: Netns, helper: string[], args: string[]) => callHelper({ command: [...ns.exec, ...helper], args, timeoutMs: 30_000 });

  t.test('each helper makes its mode, as the kernel reports it', async (t) => {
    const ns = createNetns(t, 'modes');
    addVethPair(ns, 'v0', 'v1');
    addVethPair(ns, 'w0', 'w1');
    const cases: Array<[string[], string[], string]> = [
      [VEPA, ['--dev=v0'], 'vepa'],
      [VEPA, ['--dev=v0', '--mode=private'], 'private'],
      [BRIDGE, ['--dev=v0'], 'bridge'],
      [PASSTHROUGH, ['--dev=w0'], 'passthru'],
    ];
    for (const [helper, args, mode] of cases) {
      const r = await call(ns, helper, args);
      t.equal(r.record.mode, mode);
      t.equal(ns.link(r.record.ifname)?.linkinfo?.info_data?.mode, mode, `ip -d link shows ${mode}`);
      r.close();
      ns.ip('link', 'del', r.record.ifname);
    }
    const wrong = await call(ns, BRIDGE, ['--dev=v0', '--mode=vepa']).catch((e: HelperCallError) => e);
    t.match((wrong as HelperCallError).reported, /--mode="vepa" is not a mode qemu-net-helper-bridge provides; use one of: bridge/);
  });

  async function twoTaps(ns: Netns, helper: string[]): Promise<[HelperResult, HelperResult]> {
    const a = await call(ns, helper, ['--dev=v0', '--mac=52:54:00:b0:00:0a']);
    const b = await call(ns, helper, ['--dev=v0', '--mac=52:54:00:b0:00:0b']);
    return [a, b];
  }

  t.test('bridge mode: two macvtaps on one device exchange a frame inside the host', async (t) => {
    const ns = createNetns(t, 'bridge');
    addVethPair(ns);
    const [a, b] = await twoTaps(ns, BRIDGE);
    t.teardown(() => { a.close(); b.close(); });
    const nonce = `bridge-${process.pid}-${Date.now()}`;
    writeTapFrame(a.tapFds[0]!, testFrame(a.record.mac, b.record.mac, nonce));
    // B has IFF_ALLMULTI: the peer's own multicast (IPv6 neighbour discovery, MLD) may come first.
    const { frame, others } = awaitTapFrame(b.tapFds[0]!, (f) => f.includes(Buffer.from(nonce)), 5000);
    t.ok(frame, `B received the frame A sent (after ${others.length} other frames)`);
    t.equal(others.filter((f) => (f[0]! & 1) === 0).length, 0, 'every other frame B got first is multicast');
  });

  t.test('vepa mode: the frame leaves through the device instead of reaching the neighbour', async (t) => {
    const ns = createNetns(t, 'vepa2');
    addVethPair(ns);
    const [a, b] = await twoTaps(ns, VEPA);
    t.teardown(() => { a.close(); b.close(); });
    const nonce = `vepa-${process.pid}-${Date.now()}`;
    const line = await captureOneFrame(ns, 'v1', `ether dst ${b.record.mac}`, () => {
      writeTapFrame(a.tapFds[0]!, testFrame(a.record.mac, b.record.mac, nonce));
    });
    t.match(line, new RegExp(`${a.record.mac} > ${b.record.mac}`), 'seen on the wire (the veth peer)');
    // Local delivery would have happened before or instead of transmission;
    // the frame is already on the wire, so it must not be in B's queue now. (B has
    // IFF_ALLMULTI: the peer's own multicast, IPv6 neighbour discovery and MLD, may be there.)
    const queued = drainTapQueue(b.tapFds[0]!);
    t.equal(queued.filter((f) => f.includes(Buffer.from(nonce))).length, 0, `B got nothing directly (${queued.length} multicast frames of the peer's queued)`);
    t.equal(queued.filter((f) => (f[0]! & 1) === 0).length, 0, 'and no unicast frame at all');
  });

  t.test('multiqueue: N fds, all queues of the same link, IFF_MULTI_QUEUE set', async (t) => {
    const ns = createNetns(t, 'mq');
    addVethPair(ns);
    const r = await call(ns, VEPA, ['--dev=v0', '--queues=4', '--vhost=off']);
    t.teardown(() => r.close());
    t.match(r.record, { queues: 4, multiQueue: true, vnetHdr: true, vnetHdrSize: 10, vhost: false, fds: ['tap', 'tap', 'tap', 'tap'] });
    t.equal(r.tapFds.length, 4);
    t.equal(new Set(r.tapFds).size, 4, 'four distinct fds');
    for (const fd of r.tapFds) {
      const q = readQueueInfo(fd);
      t.equal(q.name, r.record.ifname, `fd ${fd} is a queue of ${r.record.ifname}`);
      t.ok(q.flags & IFF_MULTI_QUEUE, 'IFF_MULTI_QUEUE');
      t.ok(q.flags & IFF_VNET_HDR, 'IFF_VNET_HDR');
    }
    t.ok(r.record.offloads.includes('csum'), `offloads reported: ${r.record.offloads.join(',')}`);
    t.equal(r.fields.get('vhost_error'), undefined, '--vhost=off is not a failure');

  });

  t.test('vhost: try falls back for real (no /dev/vhost-net here); on fails and leaves nothing', async (t) => {
    const ns = createNetns(t, 'vhost');
    addVethPair(ns);
    const r = await call(ns, VEPA, ['--dev=v0', '--queues=2']);
    t.teardown(() => r.close());
    t.equal(r.record.vhost, false);
    t.equal(r.vhostFds.length, 0);
    t.match(r.record.vhostError, /^cannot open \/dev\/vhost-net: ENOENT/, 'the reason is recorded');
    r.close();
    ns.ip('link', 'del', r.record.ifname);

    const on = await call(ns, VEPA, ['--dev=v0', '--vhost=on']).catch((e: HelperCallError) => e);
    t.ok(on instanceof HelperCallError);
    t.equal((on as HelperCallError).exitCode, 1);
    t.match((on as HelperCallError).reported, /--vhost=on, but cannot open \/dev\/vhost-net: ENOENT .*; load vhost_net/);
    t.same(ns.macvtaps(), [], 'nothing left');
  });

  t.test('vhost success path through the test-only opener: one vhost fd per queue, features recorded', async (t) => {
    const ns = createNetns(t, 'vhostok');
    addVethPair(ns);
    const r = await call(ns, seamedHelper('qemu-net-helper-vepa', ['--seam-fake-vhost']), ['--dev=v0', '--queues=2', '--vhost=on']);
    t.teardown(() => r.close());
    t.match(r.record, { vhost: true, vhostFeatures: FAKE_VHOST_FEATURES, fds: ['tap', 'tap', 'vhost', 'vhost'] });
    t.equal(r.fields.get('vhost_features'), `0x${FAKE_VHOST_FEATURES.toString(16)}`);
    t.equal(r.vhostFds.length, 2);
    for (const fd of r.vhostFds) t.equal(fstatSync(fd).rdev, statSync('/dev/null').rdev, 'the fake vhost fd arrived');
    for (const fd of r.tapFds) t.equal(readQueueInfo(fd).name, r.record.ifname);
  });

  t.test('256 queues with vhost: 512 fds arrive, across several SCM_RIGHTS messages', async (t) => {
    const ns = createNetns(t, 'q256');
    addVethPair(ns);
    const r = await call(ns, seamedHelper('qemu-net-helper-vepa', ['--seam-fake-vhost']), ['--dev=v0', '--queues=256', '--vhost=on']);
    t.teardown(() => r.close());
    t.equal(r.tapFds.length, 256);
    t.equal(r.vhostFds.length, 256);
    t.equal(new Set([...r.tapFds, ...r.vhostFds]).size, 512, '512 distinct fds');
    t.ok(r.tapFds.every((fd) => readQueueInfo(fd).name === r.record.ifname), 'every tap fd is a queue of the link');
    const over = await call(ns, VEPA, ['--dev=v0', '--queues=257']).catch((e: HelperCallError) => e);
    t.match((over as HelperCallError).reported, /--queues="257" is not a whole number from 1 to 256/);
  });
}
