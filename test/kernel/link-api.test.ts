// lib/netlink/link.ts against the real kernel, inside throwaway namespaces.

import { execFileSync, spawnSync } from 'node:child_process';
import t from 'tap';
import { MACVLAN_MODE_BRIDGE, MACVLAN_MODE_VEPA, NLM_F_DUMP_FILTERED } from '../../lib/constants.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

const skip = privilegedSkipReason(['ip']);
if (skip) t.plan(0, skip);
else {
  function linkOp(ns: Netns, ...args: string[]) {
    return JSON.parse(execFileSync(ns.exec[0]!, [...ns.exec.slice(1), process.execPath, `${REPO}test/support/link-ops.ts`, ...args], { encoding: 'utf8' }));
  }

  t.test('addMacvtap gives the link the ifindex and group asked for, and finds it by them (no echo needed)', async (t) => {
    const ns = createNetns(t, 'linkapi');
    addVethPair(ns);
    const lowerIndex = ns.link('v0')?.ifindex;
    const base = 0x200000 + (process.pid % 100_000) * 4;
    const a = linkOp(ns, 'add-macvtap', 'v0', 'mt%d', 'vepa', '52:54:00:11:00:01', String(base), String(0x51000000 + 11));
    const b = linkOp(ns, 'add-macvtap', 'v0', 'mt%d', 'bridge', '52:54:00:11:00:02', String(base + 1), String(0x51000000 + 12));
    for (const [link, mode, mac, index, group] of [[a, MACVLAN_MODE_VEPA, '52:54:00:11:00:01', base, 0x51000000 + 11], [b, MACVLAN_MODE_BRIDGE, '52:54:00:11:00:02', base + 1, 0x51000000 + 12]] as const) {
      const kernel = ns.link(link.name);
      t.ok(kernel, `${link.name} exists`);
      t.equal(link.index, index, 'the ifindex asked for');
      t.equal(kernel?.ifindex, index, 'as the kernel says');
      t.equal(link.group, group, 'the group asked for, applied at creation');
      t.equal(link.kind, 'macvtap');
      t.equal(link.macvlanMode, mode);
      t.equal(link.mac, mac);
      t.equal(link.lowerIndex, lowerIndex);
    }
    t.not(a.name, b.name);
    const taken = spawnSync(ns.exec[0]!, [...ns.exec.slice(1), process.execPath, `${REPO}test/support/link-ops.ts`, 'add-macvtap', 'v0', 'mt%d', 'vepa', '52:54:00:11:00:03', String(base), '0'], { encoding: 'utf8' });
    t.not(taken.status, 0, 'a taken ifindex is refused');
    t.match(taken.stderr, /EEXIST|EBUSY/, 'by the kernel, as EEXIST or EBUSY');
    t.equal(ns.macvtaps().length, 2, 'and nothing more was made');
  });

  t.test('listLinks with a kind: the kernel filters the dump, and only that kind comes back', async (t) => {
    const ns = createNetns(t, 'kinds');
    addVethPair(ns);
    for (let i = 0; i < 20; i++) spawnSync('ip', ['-n', ns.name, 'link', 'add', `br${i}`, 'type', 'bridge']);
    const made = [linkOp(ns, 'add-macvtap', 'v0', 'mt%d', 'vepa', '52:54:00:11:01:01', String(0x300000 + process.pid % 100_000), '0'), linkOp(ns, 'add-macvtap', 'v0', 'mt%d', 'bridge', '52:54:00:11:01:02', String(0x380000 + process.pid % 100_000), '0')];
    const all = linkOp(ns, 'list') as { name: string; kind?: string }[];
    t.ok(all.length >= 25, `an unfiltered dump has every link (${all.length})`);
    const macvtaps = linkOp(ns, 'list', 'macvtap') as { name: string; kind?: string }[];
    t.same(macvtaps.map((l) => l.name).sort(), made.map((l: { name: string }) => l.name).sort(), 'only the macvtaps');
    t.same(linkOp(ns, 'list', 'macvlan'), [], 'no macvlans here');
    const flags = linkOp(ns, 'dump-flags', 'macvtap') as number[];
    t.equal(flags.length, 2, 'the kernel sent only the two macvtaps');
    t.ok(flags.every((f) => (f & NLM_F_DUMP_FILTERED) !== 0), 'and said it filtered (NLM_F_DUMP_FILTERED)');
  });

  t.test('getLinkByName resolves alternative names; the canonical name comes back', async (t) => {
    const ns = createNetns(t, 'altname');
    addVethPair(ns);
    const r = spawnSync('ip', ['-n', ns.name, 'link', 'property', 'add', 'dev', 'v0', 'altname', 'uplink0'], { encoding: 'utf8' });
    t.equal(r.status, 0, `alternative names work here (${r.stderr.trim()})`);
    const viaAlt = linkOp(ns, 'get', 'uplink0');
    t.equal(viaAlt.name, 'v0', 'looked up by altname, canonical name returned');
    t.same(viaAlt.altNames, ['uplink0']);
    t.equal(linkOp(ns, 'get', 'nope0'), null, 'a missing device is null, not an error');
  });
}
