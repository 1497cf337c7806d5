// /dev is shared by all network namespaces but ifindex is not: two macvtaps
// with the same ifindex in two namespaces collide on /dev/tap<ifindex>.
// openTapQueue opens its own link's queue or fails; it never opens another
// link's node and never makes a node of its own (the helpers choose an
// ifindex whose node is free, so that they never meet this case).

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import t from 'tap';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

const skip = privilegedSkipReason(['ip']);
if (skip) t.plan(0, skip);
else {
  // Indexes far above what other tests' links get, and distinct per run.
  const index = 20_000 + (process.pid % 10_000) * 3;

  function openIn(ns: Netns, name: string, ifindex: number): { queueOf?: string; rdev?: string; error?: string } {
    const out = execFileSync(ns.exec[0]!, [...ns.exec.slice(1), process.execPath, `${REPO}test/support/open-queue.ts`, name, String(ifindex)], { encoding: 'utf8' });
    return JSON.parse(out);
  }

  function sysDevnum(ns: Netns, name: string, ifindex: number): string {
    return execFileSync(ns.exec[0]!, [...ns.exec.slice(1), 'cat', `/sys/class/net/${name}/macvtap/tap${ifindex}/dev`], { encoding: 'utf8' }).trim();
  }

  function rdevOf(majMin: string): string {
    const [ma, mi] = majMin.split(':').map(Number) as [number, number];
    return String(((ma & 0xfff) << 8) | (mi & 0xff) | ((mi & ~0xff) << 12));
  }

  function leftoverPrivateDirs(): string[] {
    return readdirSync('/dev').filter((n) => n.startsWith('.qemu-net-helper-'));
  }

  t.test('same ifindex in two namespaces: each opener gets its own link', async (t) => {
    const a = createNetns(t, 'colla');
    const b = createNetns(t, 'collb');
    addVethPair(a);
    addVethPair(b);
    a.ip('link', 'add', 'link', 'v0', 'name', 'mta', 'index', String(index), 'type', 'macvtap', 'mode', 'vepa');
    b.ip('link', 'add', 'link', 'v0', 'name', 'mtb', 'index', String(index), 'type', 'macvtap', 'mode', 'vepa');
    const devA = sysDevnum(a, 'mta', index);
    const devB = sysDevnum(b, 'mtb', index);
    t.not(devA, devB, 'the two macvtaps have different device numbers');

    const node = statSync(`/dev/tap${index}`, { bigint: true });
    t.equal(node.rdev.toString(), rdevOf(devA), `/dev/tap${index} is namespace A's device`);

    const fromA = openIn(a, 'mta', index);
    t.same(fromA, { queueOf: 'mta', rdev: rdevOf(devA) }, 'A opens the shared node');
    const fromB = openIn(b, 'mtb', index);
    t.match(fromB, { error: new RegExp(`^cannot open a queue of mtb: /dev/tap${index} is not its character device`) }, 'B does not open A\'s node');
    t.same(leftoverPrivateDirs(), [], 'no node or directory was made');
  });

  t.test('no node at all: an error, and no node is made', async (t) => {
    const c = createNetns(t, 'colnonode');
    addVethPair(c);
    c.ip('link', 'add', 'link', 'v0', 'name', 'mtc', 'index', String(index + 1), 'type', 'macvtap', 'mode', 'vepa');
    rmSync(`/dev/tap${index + 1}`);
    const r = openIn(c, 'mtc', index + 1);
    t.match(r, { error: new RegExp(`/dev/tap${index + 1} does not exist`) });
    t.throws(() => statSync(`/dev/tap${index + 1}`), 'still no node');
    t.same(leftoverPrivateDirs(), []);
  });

  t.test('a regular file planted at /dev/tapN is neither opened nor trusted', async (t) => {
    const d = createNetns(t, 'colfile');
    addVethPair(d);
    d.ip('link', 'add', 'link', 'v0', 'name', 'mtd', 'index', String(index + 2), 'type', 'macvtap', 'mode', 'vepa');
    rmSync(`/dev/tap${index + 2}`);
    execFileSync('sh', ['-c', `echo planted > /dev/tap${index + 2}`]);
    t.teardown(() => rmSync(`/dev/tap${index + 2}`, { force: true }));
    const r = openIn(d, 'mtd', index + 2);
    t.match(r, { error: /is not its character device/ });
    t.equal(readFileSync(`/dev/tap${index + 2}`, 'utf8'), 'planted\n', 'the planted file was left alone');
  });
}
