// Ownership on hosts set up the way users run them (issue 13): a link is
// deleted only when it is proven unused, and then it is.
// - an owner in a PID namespace (a container), seen from the host;
// - another user whose /proc is mounted hidepid=2;
// - a manager that passes the fd to a child and stays alive (libvirt);
// - a wrapper that forks a child keeping the fd and exits;
// - a zombie owner, a creator pid reused by a process that calls itself a helper;
// - links of other tools: an alias that is not UTF-8, one of 255 bytes, a forged tag.
// Unprivileged users run a file-capability copy of the pinned node with the
// same sources, as in policy-privileged.test.ts; each asserts which links exist afterwards.

import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import t from 'tap';
import { makeCapNode } from '../support/cap-node.ts';
import { callHelper, HelperCallError } from '../../lib/client.ts';
import { encodeOwnerTag, markGroup } from '../../lib/owner.ts';
import type { HelperRecord } from '../../lib/record.ts';
import { holdLink } from '../support/held-link.ts';
import { helperAction, listHelperLinks } from '../support/helper-actions.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { PASSTHROUGH, REPO, VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

const skip = privilegedSkipReason(['ip', 'setcap', 'setpriv', 'unshare']);
if (skip) t.plan(0, skip);
else {
  const ALICE = 64_001;
  const BOB = 64_002;
  const { dir, path: capNode } = makeCapNode(t, 'qnh-hosts-');

  const children: number[] = [];
  t.teardown(() => { for (const pid of children) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } });

  function policyFor(ns: Netns, devs: string): string {
    const path = `${dir}/policy-${ns.name}.conf`;
    writeFileSync(path, `allow user ${ALICE},${BOB} dev ${devs} mode vepa,passthru netns ${ns.name}\n`, { mode: 0o644 });
    return path;
  }

  const asUser = (ns: Netns, uid: number, pre: string[] = []) =>
    [...ns.exec, ...pre, 'setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'env', '-i', 'PATH=/usr/bin:/bin'];
  const helperAsUser = (program: string, policy: string, args: string[]) =>
    [capNode, `${REPO}test/support/helper-with-seams.ts`, program, `--seam-policy=${policy}`, '--', ...args];
  /** /proc mounted with hidepid=2 in a mount namespace of its own, then the rest of the command. */
  const HIDEPID = ['unshare', '-m', 'sh', '-c', 'mount -t proc -o hidepid=2 proc /proc && exec "$@"', 'sh'];

  function run(argv: string[]) {
    return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  }

  const ifindexes = (ns: Netns) => ns.macvtaps().map((n) => Number(ns.link(n)?.ifindex));

  /** Makes the link's tag say it was made `ageS` seconds ago (root may write any alias; the group mark stays). */
  function ageTag(ns: Netns, ifname: string, ageS: number): void {
    const alias: string = ns.link(ifname)?.ifalias;
    ns.ip('link', 'set', ifname, 'alias', alias.replace(/ created=[0-9]+/, ` created=${Math.floor(Date.now() / 1000) - ageS}`));
  }

  /** Runs an fd-holders.ts owner; resolves with its first line, keeps it alive (manager) until `end()`. */
  function fdHolder(prefix: string[], mode: 'manager' | 'forker', helper: string[]): Promise<{ record: HelperRecord; ownerPid: number; childPid: number; end(): void }> {
    const argv = [...prefix, process.execPath, `${REPO}test/support/fd-holders.ts`, mode, '--', ...helper];
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error('no line from the owner in 30 s')); }, 30_000);
      createInterface({ input: p.stdout! }).once('line', (line) => {
        clearTimeout(timer);
        const m = JSON.parse(line);
        children.push(m.childPid);
        resolve({ ...m, end: () => p.stdin!.end() });
      });
      p.once('exit', (code) => { if (code !== 0) { clearTimeout(timer); reject(new Error(`owner exited ${code}`)); } });
    });
  }

  t.test('an owner in a PID namespace: seen from the host it is "unknown", never stale; root collects the link once nobody holds it', async (t) => {
    const ns = createNetns(t, 'pidns');
    addVethPair(ns);
    const held = await holdLink([...ns.exec, 'unshare', '-pf', '--mount-proc'], [...VEPA, '--dev=v0']);
    const ifname = held.record.ifname;
    t.match(ns.link(ifname)?.ifalias, / pid=[0-9]{1,3} .* pidns=[0-9]+$/, 'the tag has the owner\'s pid in its own namespace, and that namespace');
    t.match(listHelperLinks(ns), [{ name: ifname, state: 'unknown' }], 'the host cannot tell: unknown, not stale');
    const gc = helperAction(ns, '--gc');
    t.equal(gc.code, 0, gc.stderr);
    t.equal(gc.stdout, '', 'root\'s --gc (the packaged timer) deletes nothing: the owner holds the queue');
    t.ok(ns.macvtaps().includes(ifname), 'the container guest keeps its link');
    await held.release();
    t.equal(helperAction(ns, '--gc').stdout, '', 'just released: within the hand-over grace, still kept');
    ageTag(ns, ifname, 120);
    const later = helperAction(ns, '--gc');
    t.match(later.stdout, new RegExp(`^removed ${ifname}: no process holds its queue`), 'once nobody holds it, root collects it');
    t.same(ns.macvtaps(), []);
  });

  t.test('another user under hidepid=2 cannot see the owner: that is "in use", and nothing of the owner\'s is deleted', async (t) => {
    const ns = createNetns(t, 'hidepid');
    addVethPair(ns, 'p0', 'p0peer');
    const policy = policyFor(ns, 'p0');
    const alice = await holdLink(asUser(ns, ALICE), helperAsUser('qemu-net-helper-passthrough', policy, ['--dev=p0']));
    t.teardown(() => alice.release());
    // bob asks for the same device under hidepid=2: his run's collection must not take alice's link.
    const bob = run([...ns.exec, ...HIDEPID, 'setpriv', `--reuid=${BOB}`, `--regid=${BOB}`, '--clear-groups', ...helperAsUser('qemu-net-helper-passthrough', policy, ['--dev=p0', '--probe'])]);
    t.equal(bob.status, 1, 'bob is refused');
    t.match(bob.stderr, /the kernel refused a passthru macvtap on p0/, 'because p0 is taken');
    const bobGc = run([...ns.exec, ...HIDEPID, 'setpriv', `--reuid=${BOB}`, `--regid=${BOB}`, '--clear-groups', ...helperAsUser('qemu-net-helper-vepa', policy, ['--gc'])]);
    t.equal(bobGc.status, 0, bobGc.stderr);
    const aliceList = run([...ns.exec, ...HIDEPID, 'setpriv', `--reuid=${ALICE}`, `--regid=${ALICE}`, '--clear-groups', ...helperAsUser('qemu-net-helper-vepa', policy, ['--list', '--json'])]);
    t.match(JSON.parse(aliceList.stdout), [{ name: alice.record.ifname, uid: ALICE }], 'alice still lists her link');
    t.ok(ns.macvtaps().includes(alice.record.ifname), 'alice\'s live link survived');
  });

  t.test('a manager that passes the fd to a child and stays alive: kept while the child holds it, collected by root after', async (t) => {
    const ns = createNetns(t, 'manager');
    addVethPair(ns, 'p0', 'p0peer');
    const m = await fdHolder([...ns.exec], 'manager', [...PASSTHROUGH, '--dev=p0']);
    t.teardown(() => m.end());
    const ifname = m.record.ifname;
    t.match(listHelperLinks(ns), [{ name: ifname, state: 'alive', pid: m.ownerPid }], 'the recorded owner is the manager');
    t.equal(helperAction(ns, '--gc').stdout, '', 'kept: the child holds the queue');
    process.kill(m.childPid, 'SIGKILL');
    await waitGone(m.childPid);
    ageTag(ns, ifname, 120);
    t.match(helperAction(ns, '--gc').stdout, new RegExp(`^removed ${ifname}: no process holds its queue \\(its owner pid ${m.ownerPid} no longer uses it\\)`),
      'collected by root although the manager lives');
    const next = await callHelper({ command: [...ns.exec, ...PASSTHROUGH], args: ['--dev=p0'], timeoutMs: 20_000 });
    t.teardown(() => next.close());
    t.equal(next.record.lower, 'p0', 'and the next guest gets the passthrough device');
  });

  t.test('the same manager run by a user (libvirt session): after the guest exits, the user\'s next passthrough request takes the device', async (t) => {
    const ns = createNetns(t, 'usermgr');
    addVethPair(ns, 'p0', 'p0peer');
    const policy = policyFor(ns, 'p0');
    const m = await fdHolder(asUser(ns, ALICE), 'manager', helperAsUser('qemu-net-helper-passthrough', policy, ['--dev=p0']));
    t.teardown(() => m.end());
    const busy = run([...asUser(ns, ALICE), ...helperAsUser('qemu-net-helper-passthrough', policy, ['--dev=p0', '--probe'])]);
    t.equal(busy.status, 1, 'while the guest holds it, the device is busy');
    t.match(busy.stderr, new RegExp(`the kernel refused a passthru macvtap on p0: it carries ${m.record.ifname} \\(yours, alive made [0-9]+ s ago; .*--release=${m.record.ifname} frees it now\\)`), 'and the message says with what, and how to free it');
    process.kill(m.childPid, 'SIGKILL');
    await waitGone(m.childPid);
    ageTag(ns, m.record.ifname, 120);
    const next = run([...asUser(ns, ALICE), ...helperAsUser('qemu-net-helper-passthrough', policy, ['--dev=p0', '--probe', '--json'])]);
    t.equal(next.status, 0, `the next request gets p0 (${next.stderr.trim()})`);
    t.match(JSON.parse(next.stdout), { lower: 'p0' });
    t.notOk(ifindexes(ns).includes(m.record.ifindex), 'the link the manager still owned, which nobody held, was collected');
  });

  t.test('a wrapper that forks a child keeping the fd, then exits: kept while the child lives, for the user and for root', async (t) => {
    const ns = createNetns(t, 'forker');
    addVethPair(ns);
    const policy = policyFor(ns, 'v0');
    const f = await fdHolder(asUser(ns, ALICE), 'forker', helperAsUser('qemu-net-helper-vepa', policy, ['--dev=v0']));
    const ifname = f.record.ifname;
    await waitGone(f.ownerPid);
    t.match(listHelperLinks(ns), [{ name: ifname, state: 'stale' }], 'its owner has gone');
    const userGc = run([...asUser(ns, ALICE), ...helperAsUser('qemu-net-helper-vepa', policy, ['--gc'])]);
    t.equal(userGc.stdout, '', 'the user\'s --gc keeps it: one of the user\'s processes holds the queue');
    t.equal(helperAction(ns, '--gc').stdout, '', 'so does root\'s');
    t.ok(ns.macvtaps().includes(ifname));
    process.kill(f.childPid, 'SIGKILL');
    await waitGone(f.childPid);
    const after = run([...asUser(ns, ALICE), ...helperAsUser('qemu-net-helper-vepa', policy, ['--gc'])]);
    t.match(after.stdout, new RegExp(`^removed ${ifname}: its owner pid ${f.ownerPid} is gone and none of the caller's processes holds its queue`));
    t.same(ns.macvtaps(), []);
  });

  t.test('an fd left from a deleted link whose device number a new link got does not keep the new link', async (t) => {
    const ns = createNetns(t, 'minor');
    addVethPair(ns);
    const sysDev = (name: string, index: number) => spawnSync(ns.exec[0]!, [...ns.exec.slice(1), 'cat', `/sys/class/net/${name}/macvtap/tap${index}/dev`], { encoding: 'utf8' }).stdout.trim();
    // Minors are handed out lowest first: delete a held link and make a new one until the new one has the old number (bounded).
    let stale: Awaited<ReturnType<typeof callHelper>> | undefined;
    let fresh: { ifname: string; ifindex: number } | undefined;
    for (let attempt = 0; attempt < 10 && !fresh; attempt++) {
      stale?.close();
      stale = await callHelper({ command: [...ns.exec, ...VEPA], args: ['--dev=v0'], timeoutMs: 20_000 });
      const oldDev = sysDev(stale.record.ifname, stale.record.ifindex);
      ns.ip('link', 'del', stale.record.ifname); // stale.tapFds still hold the old queue
      const made = JSON.parse(spawnSync(process.execPath, [`${REPO}test/support/owner.ts`, '--', ...ns.exec, ...VEPA, '--dev=v0'], { encoding: 'utf8' }).stdout) as { ifname: string; ifindex: number };
      if (sysDev(made.ifname, made.ifindex) === oldDev) fresh = made;
      else ns.ip('link', 'del', made.ifname);
    }
    t.teardown(() => stale?.close());
    t.ok(fresh, 'a new link got the device number of the deleted one, whose fd is still open here');
    const gc = helperAction(ns, '--gc');
    t.match(gc.stdout, new RegExp(`^removed ${fresh?.ifname}: its owner pid [0-9]+ is gone and no process holds its queue`), 'the new link, whose owner is gone, is collected: the old fd does not count');
    t.same(ns.macvtaps(), []);
  });

  t.test('another user\'s passthrough request never deletes a link whose owner is gone but whose queue a process of its user holds', async (t) => {
    const ns = createNetns(t, 'crossuser');
    addVethPair(ns, 'p0', 'p0peer');
    const policy = policyFor(ns, 'p0');
    const f = await fdHolder(asUser(ns, ALICE), 'forker', helperAsUser('qemu-net-helper-passthrough', policy, ['--dev=p0']));
    t.teardown(() => { try { process.kill(f.childPid, 'SIGKILL'); } catch { /* gone */ } });
    await waitGone(f.ownerPid);
    const bob = run([...asUser(ns, BOB), ...helperAsUser('qemu-net-helper-passthrough', policy, ['--dev=p0', '--probe'])]);
    t.equal(bob.status, 1, 'bob is refused: p0 is in use');
    t.match(bob.stderr, new RegExp(`it carries ${f.record.ifname} \\(uid ${ALICE}, stale`), 'and told whose link is there');
    t.ok(ifindexes(ns).includes(f.record.ifindex), 'alice\'s link, which her child still holds, survived');
    t.equal(helperAction(ns, '--gc').stdout, '', 'root, who sees every fd, keeps it too');
  });

  t.test('a zombie owner is dead, and a pid reused by a process that calls itself a helper keeps nothing', async (t) => {
    const ns = createNetns(t, 'zombie');
    addVethPair(ns);
    // The owner exits; its parent (sleep, exec'd by sh) never reaps it.
    const parent = spawn(ns.exec[0]!, [...ns.exec.slice(1), 'sh', '-c', `"$0" "${REPO}test/support/owner.ts" -- "$@" & exec sleep 60`, process.execPath, ...VEPA, '--dev=v0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(parent.pid!);
    const line = await new Promise<string>((resolve) => createInterface({ input: parent.stdout! }).once('line', resolve));
    const { ifname, ownerPid } = JSON.parse(line) as { ifname: string; ownerPid: number };
    const deadline = Date.now() + 10_000;
    while (!/\) Z /.test(spawnSync('cat', [`/proc/${ownerPid}/stat`], { encoding: 'utf8' }).stdout) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    t.match(spawnSync('cat', [`/proc/${ownerPid}/stat`], { encoding: 'utf8' }).stdout, /\) Z /, 'the owner is a zombie');
    t.match(listHelperLinks(ns), [{ name: ifname, state: 'stale' }], 'and counts as dead');

    const impostor = spawn('sh', ['-c', 'exec -a qemu-net-helper-vepa sleep 60'], { stdio: 'ignore' });
    children.push(impostor.pid!);
    ns.ip('link', 'add', 'link', 'v0', 'name', 'untagged0', 'type', 'macvtap', 'mode', 'vepa');
    ns.ip('link', 'set', 'untagged0', 'group', String(markGroup(impostor.pid!)));
    t.match(listHelperLinks(ns).find((r) => r.name === 'untagged0'), { state: 'stale' }, 'a creator pid running another executable is not a helper in progress');
    const gc = helperAction(ns, '--gc');
    t.match(gc.stdout, new RegExp(`removed ${ifname}: its owner pid ${ownerPid} is gone`));
    t.match(gc.stdout, /removed untagged0: it was never tagged and its creating helper \(pid [0-9]+\) no longer runs/);
    t.same(ns.macvtaps(), []);
  });

  t.test('links of other tools: an alias that is not UTF-8, one of 255 bytes, a forged tag: not ours, never deleted, never a failure', async (t) => {
    const ns = createNetns(t, 'foreign');
    addVethPair(ns);
    for (const name of ['bytes0', 'long0', 'forged0']) ns.ip('link', 'add', 'link', 'v0', 'name', name, 'type', 'macvtap', 'mode', 'vepa');
    const bytes = spawnSync('sh', ['-c', `ip -n ${ns.name} link set bytes0 alias "$(printf 'own\\377\\376er')"`], { encoding: 'utf8' });
    t.equal(bytes.status, 0, bytes.stderr);
    ns.ip('link', 'set', 'long0', 'alias', 'x'.repeat(255));
    ns.ip('link', 'set', 'forged0', 'alias', encodeOwnerTag({ helper: 'qemu-net-helper-vepa', uid: 0, pid: 999_999, start: '1', created: 1 }));
    t.same(listHelperLinks(ns), [], '--list works and lists none of them');
    const probe = spawnSync(ns.exec[0]!, [...ns.exec.slice(1), ...VEPA, '--dev=v0', '--probe', '--json'], { encoding: 'utf8' });
    t.equal(probe.status, 0, `a helper run works beside them (${probe.stderr.trim()})`);
    t.equal(helperAction(ns, '--gc').stdout, '');
    t.same(ns.macvtaps().sort(), ['bytes0', 'forged0', 'long0'], 'all three are still there');
    const release = helperAction(ns, '--release=forged0');
    t.match(release.stderr, /forged0 is not a link made by qemu-net-helper/, 'a forged tag without the group mark cannot be released either');
  });

  async function waitGone(pid: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        process.kill(pid, 0);
        const stat = spawnSync('cat', [`/proc/${pid}/stat`], { encoding: 'utf8' }).stdout;
        if (/\) Z /.test(stat) || stat === '') return;
      } catch {
        return;
      }
      if (Date.now() > deadline) throw new Error(`pid ${pid} still runs after 10 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  void HelperCallError;
}
