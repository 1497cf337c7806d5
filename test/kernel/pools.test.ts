// qemu-net-helper-passthrough: one device, explicit pools, the VFs of a PF
// (through a fake sysfs tree), races between helpers, and MAC handling.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import t from 'tap';
import { callHelper, HelperCallError, type HelperResult } from '../../lib/client.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { PASSTHROUGH, seamedHelper, VEPA } from '../support/paths.ts';
import { spawnSync } from 'node:child_process';
import { privilegedSkipReason } from '../support/privileged.ts';

const skip = privilegedSkipReason(['ip']);
if (skip) t.plan(0, skip);
else {
  const call = (ns: Netns, helper: string[], args: string[]) => callHelper({ command: [...ns.exec, ...helper], args, timeoutMs: 60_000 });

  /** n veth pairs p0/p0peer ... p(n-1)/p(n-1)peer; returns the pool side names. */
  function members(ns: Netns, n: number, prefix = 'p'): string[] {
    const names = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
    for (const name of names) addVethPair(ns, name, `${name}peer`);
    return names;
  }

  t.test('an explicit pool hands out its members in order, then says it is exhausted', async (t) => {
    const ns = createNetns(t, 'pool');
    const pool = members(ns, 3);
    const got: HelperResult[] = [];
    t.teardown(() => got.forEach((r) => r.close()));
    for (let i = 0; i < 3; i++) got.push(await call(ns, PASSTHROUGH, [`--pool=${pool.join(',')}`]));
    t.same(got.map((r) => r.record.lower), pool, 'first free member each time');
    for (const r of got) {
      t.equal(r.record.mode, 'passthru');
      t.equal(r.record.mac, ns.link(r.record.lower)?.address, 'a passthru macvtap has its device\'s MAC');
    }
    const err = await call(ns, PASSTHROUGH, [`--pool=${pool.join(',')}`]).catch((e: HelperCallError) => e);
    t.ok(err instanceof HelperCallError);
    t.match((err as HelperCallError).reported, /^qemu-net-helper-passthrough: pool p0,p1,p2 is exhausted: 3 of 3 members are busy; /);
    t.equal(ns.macvtaps().length, 3, 'the failed run created nothing');
  });

  t.test('a lower device the kernel would re-parent is refused, alone or in a pool; a pool goes on to the next member', async (t) => {
    const ns = createNetns(t, 'poolreparent');
    members(ns, 2);
    ns.ip('link', 'add', 'link', 'p0', 'name', 'mv5', 'type', 'macvlan', 'mode', 'bridge');
    ns.ip('link', 'add', 'link', 'p0', 'name', 'mt5', 'type', 'macvtap', 'mode', 'bridge');
    for (const dev of ['mv5', 'mt5']) {
      const err = await call(ns, PASSTHROUGH, [`--dev=${dev}`]).catch((e: HelperCallError) => e);
      t.match((err as HelperCallError).reported, new RegExp(`^qemu-net-helper-passthrough: ${dev} is a mac(vlan|vtap) device: the kernel would put the macvtap on the device below it instead`), dev);
    }
    const vepaErr = await call(ns, VEPA, ['--dev=mv5']).catch((e: HelperCallError) => e);
    t.match((vepaErr as HelperCallError).reported, /mv5 is a macvlan device/, 'every helper refuses it');
    const ipvlan = spawnSync('ip', ['-n', ns.name, 'link', 'add', 'link', 'p1', 'name', 'iv5', 'type', 'ipvlan', 'mode', 'l2'], { encoding: 'utf8' });
    if (ipvlan.status === 0) {
      const err = await call(ns, VEPA, ['--dev=iv5']).catch((e: HelperCallError) => e);
      t.match((err as HelperCallError).reported, /iv5 is an ipvlan device, which cannot carry a macvtap/);
      ns.ip('link', 'del', 'iv5');
    } else {
      t.comment(`no ipvlan in this kernel (${ipvlan.stderr.trim()})`);
    }
    t.same(ns.macvtaps(), ['mt5'], 'nothing was made');
    const r = await call(ns, PASSTHROUGH, ['--pool=mv5,p1']);
    t.teardown(() => r.close());
    t.equal(r.record.lower, 'p1', 'the pool skipped the macvlan and took the next member');
  });

  t.test('a wireless lower device is refused with the reason (fake sysfs: DEV/wireless)', async (t) => {
    const ns = createNetns(t, 'wifi');
    members(ns, 1);
    const root = mkdtempSync(`${tmpdir()}/qnh-sysfs-`);
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    mkdirSync(`${root}/p0/wireless`, { recursive: true });
    const err = await call(ns, seamedHelper('qemu-net-helper-vepa', [`--seam-sysfs=${root}`]), ['--dev=p0']).catch((e: HelperCallError) => e);
    t.match((err as HelperCallError).reported, /p0 is a wireless device: a macvtap cannot work there, because the access point drops frames from MAC addresses that have not associated with it; use a wired device/);
    t.same(ns.macvtaps(), []);
  });

  t.test('a pool member whose creation fails for a reason of its own is skipped', async (t) => {
    const ns = createNetns(t, 'poolfail');
    members(ns, 2);
    // p0 is a bridge port: the kernel refuses a macvtap on it (EBUSY), which is about p0 only.
    ns.ip('link', 'add', 'br9', 'type', 'bridge');
    ns.ip('link', 'set', 'p0', 'master', 'br9');
    const r = await call(ns, PASSTHROUGH, ['--pool=p0,p1']);
    t.teardown(() => r.close());
    t.equal(r.record.lower, 'p1', 'p1 was tried after p0 failed');
    r.close();
    ns.ip('link', 'del', r.record.ifname);
    const err = await call(ns, PASSTHROUGH, ['--pool=p0']).catch((e: HelperCallError) => e);
    t.match((err as HelperCallError).reported, /pool p0 is exhausted: 0 of 1 members are busy \(1 failed \(last: cannot create a macvtap on p0: the device is busy/);
    t.same(ns.macvtaps(), []);
  });

  t.test('a pool member that is missing is skipped and counted', async (t) => {
    const ns = createNetns(t, 'poolmiss');
    members(ns, 1);
    const r = await call(ns, PASSTHROUGH, ['--pool=gone0,p0']);
    t.teardown(() => r.close());
    t.equal(r.record.lower, 'p0');
    const err = await call(ns, PASSTHROUGH, ['--pool=gone0,p0']).catch((e: HelperCallError) => e);
    t.match((err as HelperCallError).reported, /pool gone0,p0 is exhausted: 1 of 2 members are busy \(1 do not exist\)/);
  });

  t.test('--pf takes the VFs a (fake) sysfs tree lists, skipping those without a network driver', async (t) => {
    const ns = createNetns(t, 'pf');
    const vfs = members(ns, 3, 'vf');
    // /sys/class/net/pf0/device/virtfnN/net/<ifname>, with virtfn1 unbound.
    const root = mkdtempSync(`${tmpdir()}/qnh-sysfs-`);
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    const layout: Array<[number, string | undefined]> = [[0, vfs[0]], [1, undefined], [2, vfs[1]], [10, vfs[2]]];
    for (const [n, ifname] of layout) {
      mkdirSync(`${root}/pf0/device/virtfn${n}`, { recursive: true });
      if (ifname) mkdirSync(`${root}/pf0/device/virtfn${n}/net/${ifname}`, { recursive: true });
    }
    const helper = seamedHelper('qemu-net-helper-passthrough', [`--seam-sysfs=${root}`]);
    const got: HelperResult[] = [];
    t.teardown(() => got.forEach((r) => r.close()));
    for (let i = 0; i < 3; i++) got.push(await call(ns, helper, ['--pf=pf0']));
    t.same(got.map((r) => r.record.lower), ['vf0', 'vf1', 'vf2'], 'in virtfn order (0, 2, 10), unbound virtfn1 skipped');
    const err = await call(ns, helper, ['--pf=pf0']).catch((e: HelperCallError) => e);
    t.match((err as HelperCallError).reported, /the virtual functions of pf0 are exhausted: 3 of 4 members are busy \(1 are not bound to a network driver\)/);
    const nopf = await call(ns, helper, ['--pf=nopf0']).catch((e: HelperCallError) => e);
    t.match((nopf as HelperCallError).reported, /there is no network device named nopf0/);
  });

  t.test('16 helpers at once on an 8-member pool: 8 distinct devices, 8 clear refusals, nothing leaked', async (t) => {
    const ns = createNetns(t, 'race');
    const pool = members(ns, 8);
    const settled = await Promise.allSettled(Array.from({ length: 16 }, () => call(ns, PASSTHROUGH, [`--pool=${pool.join(',')}`])));
    const won = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const lost = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as HelperCallError] : []));
    t.teardown(() => won.forEach((r) => r.close()));
    t.equal(won.length, 8, 'exactly 8 succeed');
    t.same(new Set(won.map((r) => r.record.lower)), new Set(pool), 'on 8 distinct devices');
    t.equal(lost.length, 8, 'exactly 8 fail');
    for (const e of lost) t.match(e.reported, /pool p0,.*,p7 is exhausted: 8 of 8 members are busy/);
    t.same(new Set(ns.macvtaps()), new Set(won.map((r) => r.record.ifname)), 'no link beyond the winners\'');
  });

  t.test('--mac on a passthrough device: set while in use, the device\'s own MAC back after', async (t) => {
    const ns = createNetns(t, 'ptmac');
    addVethPair(ns, 'w0', 'w1');
    ns.ip('link', 'set', 'w0', 'address', '02:aa:bb:00:00:01');
    const r = await call(ns, PASSTHROUGH, ['--dev=w0', '--mac=52:54:00:ab:cd:01']);
    t.equal(r.record.mac, '52:54:00:ab:cd:01');
    t.equal(ns.link(r.record.ifname)?.address, '52:54:00:ab:cd:01', 'the macvtap has it');
    t.equal(ns.link('w0')?.address, '52:54:00:ab:cd:01', 'and so does the device');
    r.close();
    ns.ip('link', 'del', r.record.ifname);
    t.equal(ns.link('w0')?.address, '02:aa:bb:00:00:01', 'deleting the macvtap restores the device\'s MAC');
  });
}
