// Persistent links (issue 14): a link that belongs to a user, not to a
// process, for VM managers that open /dev/tapN themselves (libvirt's
// <interface type='ethernet'> with managed='no'). Run by unprivileged users
// through a file-capability copy of the pinned node, as in policy-privileged.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { makeCapNode } from '../support/cap-node.ts';
import { helperAction } from '../support/helper-actions.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

const skip = privilegedSkipReason(['ip', 'setcap', 'setpriv']);
if (skip) t.plan(0, skip);
else {
  const ALICE = 64_021;
  const BOB = 64_022;
  const { dir, path: capNode } = makeCapNode(t, 'qnh-persist-');

  function policy(ns: Netns, extra = ''): string {
    const path = `${dir}/policy-${ns.name}-${extra.length}.conf`;
    writeFileSync(path, `allow user ${ALICE} dev v0 netns ${ns.name} persistent queues 2\nallow user ${BOB} dev v0 netns ${ns.name}\n${extra}`, { mode: 0o644 });
    return path;
  }
  const as = (ns: Netns, uid: number) => [...ns.exec, 'setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'env', '-i', 'PATH=/usr/bin:/bin'];
  function helper(ns: Netns, uid: number, pol: string, args: string[]) {
    const argv = [...as(ns, uid), capNode, `${REPO}test/support/helper-with-seams.ts`, 'qemu-net-helper-vepa', `--seam-policy=${pol}`, '--', ...args];
    return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  }
  /** Opens a queue of the link the way a VM manager does, as `uid`, with no privilege: prints what it opened or the error. */
  function openAs(ns: Netns, uid: number, name: string, index: number): { queueOf?: string; error?: string } {
    const argv = [...as(ns, uid), process.execPath, `${REPO}test/support/open-queue.ts`, name, String(index)];
    return JSON.parse(spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 }).stdout);
  }
  const ownedBy = (uid: number) => spawnSync('find', ['/dev', '-xdev', '-user', String(uid)], { encoding: 'utf8' }).stdout.trim();

  t.test('a persistent link: the user\'s own /dev/tapN, kept by every collection, ended by --release', async (t) => {
    const ns = createNetns(t, 'persist');
    addVethPair(ns);
    const pol = policy(ns);
    const made = helper(ns, ALICE, pol, ['--dev=v0', '--mac=52:54:00:77:00:02', '--ifname=macvtapal0', '--persistent', '--json']);
    t.equal(made.status, 0, made.stderr);
    const rec = JSON.parse(made.stdout);
    t.match(rec, { ifname: 'macvtapal0', lower: 'v0', mode: 'vepa', mac: '52:54:00:77:00:02', fds: [], persistent: '1', device: `/dev/tap${rec.ifindex}` });
    const node = statSync(rec.device, { bigint: true });
    t.ok(node.isCharacterDevice(), 'the kernel\'s own node');
    t.equal(Number(node.uid), ALICE, 'owned by the user');
    t.equal(Number(node.gid), ALICE, 'and the user\'s group');
    t.equal(Number(node.mode & 0o777n), 0o600, 'usable by that user alone');
    t.match(ns.link('macvtapal0')?.ifalias, new RegExp(`uid=${ALICE} .*persistent=1`));

    t.same(openAs(ns, ALICE, 'macvtapal0', rec.ifindex), { queueOf: 'macvtapal0', rdev: String(node.rdev) }, 'the user opens it as a VM manager would');
    t.match(openAs(ns, BOB, 'macvtapal0', rec.ifindex), { error: /EACCES|permission denied/i }, 'another user cannot');

    const list = helper(ns, ALICE, pol, ['--list', '--json']);
    t.match(JSON.parse(list.stdout), [{ name: 'macvtapal0', state: 'persistent', uid: ALICE }]);
    t.equal(helper(ns, ALICE, pol, ['--gc']).stdout, '', 'the user\'s --gc keeps it');
    t.equal(helperAction(ns, '--gc').stdout, '', 'so does root\'s, although no process holds it');

    const steal = helper(ns, BOB, pol, ['--release=macvtapal0']);
    t.match(steal.stderr, /belongs to uid 64021, not to you/);
    const bobPersistent = helper(ns, BOB, pol, ['--dev=v0', '--ifname=macvtapbob0', '--persistent']);
    t.equal(bobPersistent.status, 1);
    t.match(bobPersistent.stderr, /does not allow persistent links/);

    const released = helper(ns, ALICE, pol, ['--release=macvtapal0']);
    t.equal(released.status, 0, released.stderr);
    t.same(ns.macvtaps(), [], 'released');
    t.notOk(existsSync(rec.device), 'its node went with it');
    t.equal(ownedBy(ALICE), '', 'nothing under /dev is the user\'s any more');
  });

  t.test('persistent links count toward the limit; --vhost=on cannot go with --persistent', async (t) => {
    const ns = createNetns(t, 'persistlim');
    addVethPair(ns);
    const pol = policy(ns, `limit user ${ALICE} links 1\n`);
    const first = helper(ns, ALICE, pol, ['--dev=v0', '--ifname=macvtapal1', '--persistent']);
    t.equal(first.status, 0, first.stderr);
    t.match(first.stdout, /^version=1\nifname=macvtapal1\n/);
    t.match(first.stdout, /\npersistent=1\ndevice=\/dev\/tap[0-9]+\n$/);
    const second = helper(ns, ALICE, pol, ['--dev=v0', '--ifname=macvtapal2', '--persistent']);
    t.equal(second.status, 1);
    t.match(second.stderr, new RegExp(`uid ${ALICE} already holds 1 link, and the limit at ${pol.replace(/[/.]/g, '\\$&')}:3 allows 1`));
    t.same(ns.macvtaps(), ['macvtapal1'], 'the refused request made nothing');
    const vhost = helper(ns, ALICE, pol, ['--dev=v0', '--persistent', '--vhost=on']);
    t.equal(vhost.status, 2);
    t.match(vhost.stderr, /--vhost=on cannot be used with --persistent/);
    t.equal(helper(ns, ALICE, pol, ['--release=macvtapal1']).status, 0);
    t.same(readdirSync('/dev').filter((n) => n.startsWith('.qemu-net-helper-')), []);
  });
}
