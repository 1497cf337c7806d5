// The helpers on this kernel, in few runs: written for the Debian 12 kernel
// job (test/kernel61/debian-kernel.test.ts), where every helper run costs
// seconds under TCG, so that the job covers what issue 12 names within its
// budget: every mode with the default name (6.1 sends no echo of a new link),
// a pool that moves on to the next member, --list and --gc, rollback after
// faults, an unprivileged user through a file-capability node, and the
// multicast/IPv6 setup of a new link. The longer kernel files
// (test/kernel/*.test.ts) run there too when QNH_KERNEL61_FILES names them.
// It runs on any root test machine as well (and in `npm test` here).

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import t from 'tap';
import { callHelper, HelperCallError } from '../../lib/client.ts';
import { makeCapNode } from '../support/cap-node.ts';
import { helperAction, listHelperLinks } from '../support/helper-actions.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { BRIDGE, GUEST_NODE_FLAGS, PASSTHROUGH, REPO, retryGuestCrash, seamedHelper, VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

const kernel = spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim();
const skip = privilegedSkipReason(['ip', 'setcap', 'setpriv']);
if (skip) t.plan(0, skip);
else {
  t.comment(`kernel ${kernel}`);
  const call = (ns: Netns, helper: string[], args: string[]) => callHelper({ command: [...ns.exec, ...helper], args, timeoutMs: 90_000 });
  const flags = (ns: Netns, name: string) => (ns.link(name)?.flags ?? []) as string[];
  const run = (argv: string[]) => spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 90_000 });

  t.test('every mode with the default name: found again without the echo, its mode, allmulti on, the host\'s IPv6 off', async (t) => {
    const ns = createNetns(t, 'k61modes');
    addVethPair(ns, 'v0', 'v1');
    addVethPair(ns, 'w0', 'w1');
    const cases = [[VEPA, ['--dev=v0'], 'vepa'], [VEPA, ['--dev=v0', '--mode=private'], 'private'], [BRIDGE, ['--dev=v0'], 'bridge'],
      [PASSTHROUGH, ['--dev=w0'], 'passthru'], [PASSTHROUGH, ['--dev=w0', '--mac=52:54:00:61:00:01'], 'passthru']] as const;
    for (const [helper, args, mode] of cases) {
      const r = await call(ns, [...helper], [...args]);
      const name = r.record.ifname;
      try {
        t.match(r.record, { mode, allmulti: true, hostIpv6: 'off', queues: 1 }, `${args.join(' ')}: the record`);
        t.match(name, /^macvtap\d+$/, 'the default name');
        t.equal(ns.link(name)?.linkinfo?.info_data?.mode, mode, `ip -d link shows ${mode}`);
        t.ok(flags(ns, name).includes('ALLMULTI'), 'IFF_ALLMULTI');
        t.same((JSON.parse(ns.ip('-6', '-j', 'addr', 'show', 'dev', name)) as Array<{ addr_info: unknown[] }>).flatMap((l) => l.addr_info), [], 'no host IPv6 address on it');
        if (args.some((a) => a.startsWith('--mac='))) t.equal(r.record.mac, '52:54:00:61:00:01', 'the MAC asked for');
      } finally {
        r.close();
        ns.ip('link', 'del', name);
      }
      t.equal(flags(ns, mode === 'passthru' ? 'w0' : 'v0').includes('PROMISC'), false, 'the lower device is not left promiscuous');
    }
  });

  t.test('a pool: a busy member is passed over, each run gets the next, then a clear refusal with nothing made', async (t) => {
    const ns = createNetns(t, 'k61pool');
    for (const n of [0, 1, 2]) addVethPair(ns, `p${n}`, `q${n}`);
    ns.ip('link', 'add', 'link', 'p0', 'name', 'othertap0', 'type', 'macvtap', 'mode', 'passthru');
    const first = await call(ns, PASSTHROUGH, ['--pool=p0,p1,p2']);
    const second = await call(ns, PASSTHROUGH, ['--pool=p0,p1,p2']);
    t.teardown(() => { first.close(); second.close(); });
    t.same([first.record.lower, second.record.lower], ['p1', 'p2'], 'p0 (another tool\'s passthru macvtap) passed over');
    const third = await call(ns, PASSTHROUGH, ['--pool=p0,p1,p2']).catch((e: HelperCallError) => e);
    t.ok(third instanceof HelperCallError, 'the third run fails');
    t.match((third as HelperCallError).reported, /exhausted: 3 of 3 members are busy/);
    t.equal(ns.macvtaps().length, 3, 'nothing more was made');
  });

  t.test('rollback after faults, and --gc of what a killed helper left', async (t) => {
    const ns = createNetns(t, 'k61fault');
    addVethPair(ns);
    for (const step of ['created', 'tagged', 'opened']) {
      const failed = await call(ns, seamedHelper('qemu-net-helper-vepa', [`--seam-fault=${step}:fail`]), ['--dev=v0']).catch((e: HelperCallError) => e);
      t.ok(failed instanceof HelperCallError, `a fault at ${step} fails the run`);
      t.same(ns.macvtaps(), [], `a fault at ${step}: the link is deleted`);
    }
    const killed = await call(ns, seamedHelper('qemu-net-helper-vepa', ['--seam-fault=created:kill']), ['--dev=v0']).catch((e: HelperCallError) => e);
    t.ok(killed instanceof HelperCallError, 'a helper killed right after creating');
    t.equal(ns.macvtaps().length, 1, 'left its link (nothing can roll back a SIGKILL)');
    t.match(listHelperLinks(ns), [{ state: 'stale' }], '--list: stale (its creator is gone)');
    const gc = helperAction(ns, '--gc');
    t.equal(gc.code, 0, gc.stderr);
    t.match(gc.stdout, /^removed macvtap\d+: /m);
    t.same(ns.macvtaps(), [], '--gc deleted it');
  });

  t.test('an unprivileged user through the file-capability node: allowed vepa, refused passthru, nothing made for the refusal', async (t) => {
    const ALICE = 64_061;
    const { dir, path: capNode } = makeCapNode(t, 'qnh-k61-');
    const ns = createNetns(t, 'k61user');
    addVethPair(ns, 'v0', 'v1');
    addVethPair(ns, 'w0', 'w1');
    const policy = `${dir}/policy.conf`;
    writeFileSync(policy, `allow user ${ALICE} dev v0 netns ${ns.name} persistent\n`, { mode: 0o644 });
    const as = (program: string, args: string[]) => retryGuestCrash(() => run([...ns.exec, 'setpriv', `--reuid=${ALICE}`, `--regid=${ALICE}`, '--clear-groups', 'env', '-i', 'PATH=/usr/bin:/bin',
      capNode, ...GUEST_NODE_FLAGS, `${REPO}test/support/helper-with-seams.ts`, program, `--seam-policy=${policy}`, '--', ...args]), (s) => t.comment(s));
    const made = as('qemu-net-helper-vepa', ['--dev=v0', '--persistent', '--json']);
    t.equal(made.status, 0, `${made.stderr}${made.signal ? ` (killed by ${made.signal})` : ''}`);
    const rec = JSON.parse(made.stdout || '{}') as Record<string, unknown>;
    t.match(rec, { lower: 'v0', mode: 'vepa', allmulti: true, host_ipv6: 'off' });
    t.match(ns.link(String(rec.ifname))?.ifalias, new RegExp(`uid=${ALICE} `), 'tagged with the user');
    const refused = as('qemu-net-helper-passthrough', ['--dev=w0', '--probe']);
    t.equal(refused.status, 1, `exit ${refused.status}${refused.signal ? `, killed by ${refused.signal}` : ''}${refused.error ? `, ${refused.error.message}` : ''}`);
    t.match(refused.stderr, /^qemu-net-helper-passthrough: no rule in the policy allows/);
    t.same(ns.macvtaps(), [String(rec.ifname)], 'the refusal made nothing');
    const released = as('qemu-net-helper-vepa', [`--release=${String(rec.ifname)}`]);
    t.equal(released.status, 0, released.stderr);
    t.same(ns.macvtaps(), [], 'the user released their own link');
  });
}
