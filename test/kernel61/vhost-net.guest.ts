// vhost-net for real. This machine has no /dev/vhost-net, so elsewhere the
// helpers' vhost success path runs only through the test-only opener; Debian
// 12's own 6.1 kernel, booted by test/kernel61/debian-kernel.test.ts, loads
// vhost_net, and this file runs there (with QNH_KERNEL_GUEST set): named
// *.guest.ts, npm test on this machine does not pick it up. Run by hand it
// skips only where there is no /dev/vhost-net and it is not in that job.

import { existsSync, fstatSync, statSync } from 'node:fs';
import t, { type Test } from 'tap';
import { callHelper, type HelperResult } from '../../lib/client.ts';
import { MISC_MAJOR, VHOST_NET_MINOR, makedev } from '../../lib/constants.ts';
import * as libc from '../../lib/libc.ts';
import { readQueueInfo } from '../../lib/tap.ts';
import { readVhostFeatures } from '../../lib/vhost.ts';
import { FAKE_VHOST_FEATURES } from '../support/fake-vhost.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

/** _IO(VHOST_VIRTIO, 0x01): what QEMU issues on every vhost fd it is handed. */
const VHOST_SET_OWNER = 0xaf01;
const VIRTIO_NET_F_MRG_RXBUF = 1n << 15n;
const VHOST_NET_F_VIRTIO_NET_HDR = 1n << 27n;
const VIRTIO_F_VERSION_1 = 1n << 32n;

const inKernelJob = Boolean(process.env.QNH_KERNEL_GUEST);
const skip = privilegedSkipReason(['ip']) ||
  (!inKernelJob && !existsSync('/dev/vhost-net') ? 'no /dev/vhost-net here; this runs in the Debian 6.1 kernel job (test/kernel61/debian-kernel.test.ts)' : false);
if (skip) t.plan(0, skip);
else {
  const call = (ns: Netns, args: string[]) => callHelper({ command: [...ns.exec, ...VEPA], args, timeoutMs: 60_000 });

  t.test('/dev/vhost-net is the real vhost-net device', async (t) => {
    t.ok(existsSync('/dev/vhost-net'), `present${inKernelJob ? ` (kernel job ${process.env.QNH_KERNEL_GUEST})` : ''}`);
    const st = statSync('/dev/vhost-net');
    t.ok(st.isCharacterDevice(), 'a character device');
    t.equal(BigInt(st.rdev), BigInt(makedev(MISC_MAJOR, VHOST_NET_MINOR)), `${MISC_MAJOR}:${VHOST_NET_MINOR}`);
  });

  /** The checks every vhost fd that came back must pass: vhost-net, unowned, with the features the record names. */
  function checkVhostFds(t: Test, r: HelperResult, queues: number): void {
    const features = r.record.vhostFeatures;
    t.ok(features !== undefined && features !== 0n, `vhost features recorded: ${r.fields.get('vhost_features')}`);
    t.equal(r.fields.get('vhost_features'), `0x${(features ?? 0n).toString(16)}`, 'as hex in the record');
    t.not(features, FAKE_VHOST_FEATURES, 'not the fake opener\'s features');
    for (const [bit, name] of [[VIRTIO_NET_F_MRG_RXBUF, 'VIRTIO_NET_F_MRG_RXBUF'], [VHOST_NET_F_VIRTIO_NET_HDR, 'VHOST_NET_F_VIRTIO_NET_HDR'], [VIRTIO_F_VERSION_1, 'VIRTIO_F_VERSION_1']] as const) {
      t.ok(((features ?? 0n) & bit) !== 0n, `${name} offered`);
    }
    t.equal(r.fields.get('vhost_error'), undefined, 'no vhost_error');
    t.same(r.record.fds, [...Array(queues).fill('tap'), ...Array(queues).fill('vhost')], 'fds: the tap queues, then one vhost fd per queue');
    t.equal(r.vhostFds.length, queues, `${queues} vhost fd(s) came back`);
    t.equal(new Set([...r.tapFds, ...r.vhostFds]).size, 2 * queues, 'all distinct');
    const rdev = statSync('/dev/vhost-net').rdev;
    for (const fd of r.vhostFds) {
      t.equal(fstatSync(fd).rdev, rdev, `fd ${fd} is /dev/vhost-net`);
      t.equal(readVhostFeatures(fd), features, `fd ${fd}: VHOST_GET_FEATURES answers what the record says`);
      t.equal(libc.ioctlInt(fd, VHOST_SET_OWNER, 0, 'VHOST_SET_OWNER'), 0, `fd ${fd} is not owned yet: QEMU's VHOST_SET_OWNER succeeds`);
      t.throws(() => libc.ioctlInt(fd, VHOST_SET_OWNER, 0, 'VHOST_SET_OWNER'), { code: 'EBUSY' }, `fd ${fd}: a second owner is refused (a real vhost-net fd)`);
    }
    for (const fd of r.tapFds) t.equal(readQueueInfo(fd).name, r.record.ifname, `tap fd ${fd} is a queue of ${r.record.ifname}`);
  }

  t.test('--vhost=on: one vhost-net fd, handed over with the tap queue', async (t) => {
    const ns = createNetns(t, 'vhreal');
    addVethPair(ns);
    const r = await call(ns, ['--dev=v0', '--vhost=on']);
    t.teardown(() => r.close());
    t.match(r.record, { lower: 'v0', mode: 'vepa', queues: 1, vhost: true });
    checkVhostFds(t, r, 1);
  });

  t.test('--vhost=try with two queues: vhost is had, one fd per queue', async (t) => {
    const ns = createNetns(t, 'vhtry');
    addVethPair(ns);
    const r = await call(ns, ['--dev=v0', '--queues=2', '--vhost=try']);
    t.teardown(() => r.close());
    t.match(r.record, { queues: 2, multiQueue: true, vhost: true });
    checkVhostFds(t, r, 2);
  });

  t.test('--probe --json --vhost=on: the record a person sees says vhost, then nothing is left', async (t) => {
    const ns = createNetns(t, 'vhprobe');
    addVethPair(ns);
    const { spawnSync } = await import('node:child_process');
    const argv = [...ns.exec, ...VEPA, '--dev=v0', '--vhost=on', '--probe', '--json'];
    const p = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 60_000 });
    t.equal(p.status, 0, p.stderr);
    const rec = JSON.parse(p.stdout) as Record<string, unknown>;
    t.match(rec, { vhost: true, fds: ['tap', 'vhost'], vhost_features: /^0x[0-9a-f]+$/ });
    t.notOk('vhost_error' in rec, 'no vhost_error');
    t.same(ns.macvtaps(), [], '--probe deleted its link');
  });
}
