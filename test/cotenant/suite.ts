// The hostile co-tenant suite: three unprivileged users share a host. The
// ATTACKER is allowed one device, the VICTIM another, and a third user is
// allowed nothing. Each test is an attack by them on the installed Debian
// package (test/cotenant/support.ts says where and how it is installed), and
// asserts that the attack fails, that nothing was created or left, and what
// was logged. Run in both install modes: file capabilities (what postinst
// does) and setuid root (postinst's fallback where setcap is missing).
//
// Each test ends with the same checks, passed or failed: every agent and
// helper it started is ended, root's --gc runs in each of its namespaces, and
// then no macvtap is left there, no file under /dev belongs to a test user and
// no /dev/.qemu-net-helper-* exists. Random choices come from one seed,
// printed at the start (QNH_COTENANT_SEED=N repeats them).

import t, { type Test } from 'tap';
import { readFileSync, chownSync, mkdirSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { HELPER_CAPABILITIES } from '../../lib/privileges.ts';
import { CONFFILE, HELPER_CAPS, LIBEXEC, PACKAGE } from '../../packaging/deb.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { IS_CI, privilegedSkipReason } from '../support/privileged.ts';
import { processState, waitStopped } from '../support/process.ts';
import {
  CoTenantHost, PROGRAMS, PYTHON, ROOT, auditFields, haveOverlayfs, helperPath, killHelper, nodeDev, nodesWithDev, prng, sh, sysfsDev,
  type Exit, type LogLine, type Mode, type OwnResult, type Owner, type User, type Who,
} from './support.ts';

const TOOLS = ['ip', 'dpkg', 'dpkg-deb', 'dpkg-query', 'setpriv', 'setcap', 'getcap', 'useradd', 'userdel', 'groupadd', 'unshare', 'nsenter', 'flock', 'find', PYTHON];
const AUTHPRIV = 10;
/** Measured here: plain `node -e 0` of the pinned Node 24 also dies (SIGSEGV, or SIGABRT) with ulimit -n 20 and two fds open. */
const NODE_STARTUP_CRASH = 'Node 24 dies of a signal in its own start-up when about 20 or fewer descriptors are free, before any line of the helper runs';

/** What a test made that its end must undo and check. */
class Context {
  readonly namespaces: Netns[] = [];
  /** Links root made by hand (not the helpers'), deleted before the checks. */
  readonly rootLinks: Array<[Netns, string]> = [];
  private readonly t: Test;
  constructor(t: Test) {
    this.t = t;
  }

  netns(label: string, pairs: Array<[string, string]> = [['v0', 'v1']]): Netns {
    const ns = createNetns(this.t, `cot${label}`);
    for (const [a, b] of pairs) addVethPair(ns, a, b);
    this.namespaces.push(ns);
    return ns;
  }
}

/** One line on stderr, naming the helper. */
const ONE_LINE = /^qemu-net-helper-\w+: [^\n]+\n$/;

/** The helper-tagged macvtaps of `uid` in `ns` (one `ip` call). */
function linksOfUid(ns: Netns, uid: number): string[] {
  const links = JSON.parse(ns.ip('-d', '-j', 'link', 'show', 'type', 'macvtap')) as Array<{ ifname: string; ifalias?: string }>;
  return links.filter((l) => new RegExp(`^qemu-net-helper/1 .*\\buid=${uid} `).test(l.ifalias ?? '')).map((l) => l.ifname);
}

function maxIfindex(ns: Netns): number {
  return Math.max(...(JSON.parse(ns.ip('-j', 'link', 'show')) as Array<{ ifindex: number }>).map((l) => l.ifindex));
}

function fieldsOf(line: LogLine): Map<string, string> | Error {
  try {
    return auditFields(line.message);
  } catch (err) {
    return err as Error;
  }
}

export function coTenantSuite(mode: Mode): void {
  const skip = privilegedSkipReason(TOOLS);
  if (skip) {
    t.plan(0, skip);
    return;
  }
  if (!haveOverlayfs()) {
    if (IS_CI) throw new Error('the co-tenant suite needs overlayfs for its private install of the package');
    t.plan(0, 'no overlayfs here');
    return;
  }
  const seed = Number(process.env.QNH_COTENANT_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const rng = prng(seed + (mode === 'setuid' ? 1 : 0));
  t.comment(`co-tenant suite, ${mode}: seed ${seed} (QNH_COTENANT_SEED=${seed} repeats its random choices)`);
  const host = new CoTenantHost(mode);
  let torn = false;
  const tearDown = async (): Promise<string[]> => {
    if (torn) return [];
    torn = true;
    return host.teardown();
  };
  t.teardown(async () => {
    const problems = await tearDown();
    if (problems.length) process.stderr.write(`co-tenant teardown: ${problems.join('; ')}\n`);
  });
  let att: User;
  let vic: User;
  let non: User;

  t.before(async () => {
    const deb = await host.buildPackage();
    await host.takePlaceholder();
    // /run/netns must be a shared mount before the holder's namespace is made, so that the
    // namespaces the tests add later propagate into it: `ip netns add` makes it so.
    createNetns({ teardown: () => {} }, 'cotfirst').destroy();
    await host.startHolder();
    host.installPackage(deb);
    host.createUsers(rng);
    ({ attacker: att, victim: vic, nobody: non } = host.users);
  });

  /** A test with the common end: undo, then check that nothing was left. */
  function scenario(name: string, body: (t: Test, ctx: Context) => Promise<void>): void {
    t.test(name, async (t) => {
      const ctx = new Context(t);
      try {
        await body(t, ctx);
      } finally {
        host.killHelpers();
        await host.stopAgents();
        for (const [ns, link] of ctx.rootLinks) if (ns.link(link)) ns.ip('link', 'del', link);
        for (const ns of ctx.namespaces) {
          const gc = await host.helper(ROOT, ns, 'vepa', ['--gc']);
          if (gc.status !== 0) t.fail(`root's --gc in ${ns.name}: ${gc.stderr.trim()}`);
          const left = ns.macvtaps();
          t.same(left, [], `afterwards: no macvtap left in ${ns.name} once root's --gc has run`);
          for (const l of left) ns.ip('link', 'del', l);
        }
        const files = host.devFilesOfUsers();
        t.same(files, [], 'afterwards: nothing under /dev belongs to a test user');
        const dirs = await host.privateNodeDirs();
        t.same(dirs, [], 'afterwards: no /dev/.qemu-net-helper-* directory');
        for (const d of [...files, ...dirs].sort().reverse()) sh(['rm', '-rf', '--', d], false);
        host.restorePolicy();
      }
    });
  }

  /** The received fd is a queue of the link the record names, and /dev/tap<ifindex> is that link's node. */
  function checkOwnQueue(t: Test, ns: Netns, r: OwnResult, lower: string, who: string): void {
    const rec = r.record;
    if (!t.ok(rec, `${who}: a record (${r.stderr.trim()})`) || !rec) return;
    const ifname = rec.ifname!;
    const ifindex = Number(rec.ifindex);
    const link = ns.link(ifname);
    t.equal(link?.ifindex, ifindex, `${who}: ${ifname} exists in the namespace with the record's ifindex ${ifindex}`);
    t.equal(link?.link, lower, `${who}: the kernel's lower device of ${ifname} is ${lower}`);
    t.equal(rec.lower, link?.link, `${who}: the record's lower= is the kernel's lower device`);
    const dev = sysfsDev(ns, ifname, ifindex);
    t.equal(r.fds.length, 1, `${who}: one fd`);
    const fd = r.fds[0];
    t.equal(fd?.tun_name, ifname, `${who}: TUNGETIFF on the fd names ${ifname}`);
    t.equal(fd?.rdev, dev, `${who}: the fd is the character device of ${ifname} (${dev} in sysfs)`);
    t.equal(nodeDev(`/dev/tap${ifindex}`), dev, `${who}: /dev/tap${ifindex} is the node of ${ifname} itself, not another namespace's device`);
  }

  /**
   * Asserts that a run was not killed by a signal; returns whether it was. A crash before the
   * helper logged or made anything is Node's own start-up dying (see NODE_STARTUP_CRASH): a
   * TODO, not a failure; any later crash fails.
   */
  async function crashed(t: Test, what: string, signal: string | number | null, pid: number, ns: Netns): Promise<boolean> {
    if (signal === null) {
      t.pass(`${what}: not killed by a signal`);
      return false;
    }
    const early = (await host.helperLog(pid)).length === 0 && ns.macvtaps().length === 0;
    t.fail(`${what}: not killed by a signal (signal ${signal}${early ? ', before the helper logged or made anything' : ''})`, early ? { todo: NODE_STARTUP_CRASH } : {});
    return true;
  }

  function policy(lines: string[]): void {
    host.writePolicy(lines.join('\n') + '\n');
  }

  const result = (owner: Owner): Promise<OwnResult> => owner.result();

  // ================================================================== install

  t.test(`installed by dpkg, ${mode === 'file-caps' ? 'with file capabilities' : "setuid root (postinst's fallback without setcap)"}`, async (t) => {
    const path = host.nsPath(`${LIBEXEC}/qemu-net-helper-vepa`);
    const caps = sh([...host.inNs, 'getcap', `${LIBEXEC}/qemu-net-helper-vepa`], false).stdout.trim();
    const st = sh(['stat', '-c', '%a %u', path]).stdout.trim();
    if (mode === 'file-caps') {
      t.match(caps, /cap_net_admin/, `file capabilities: ${caps}`);
      t.equal(st, '755 0');
      t.equal(HELPER_CAPS.split('=')[0]!.split(',').sort().join(','), caps.split(' ').pop()!.split('=')[0]!.split(',').sort().join(','));
    } else {
      t.equal(caps, '', 'no file capabilities');
      t.equal(st, '4755 0', 'setuid root');
      t.match(host.installLog, /installing it setuid root instead/, "postinst said it fell back to setuid root");
    }
    t.match(readFileSync(host.nsPath(CONFFILE), 'utf8'), /allows no one/, 'the packaged policy allows no one');
    const hostState = sh(['dpkg-query', '-W', '-f=${Status}', PACKAGE], false).stdout;
    t.comment(`on the host, outside the suite's mount namespace, dpkg says: ${hostState || 'not installed'}`);
    for (const u of [att, vic, non]) t.equal(sh([...host.inNs, 'id', '-u', u.name]).stdout.trim(), String(u.uid), `${u.role} ${u.name} is uid ${u.uid}`);
  });

  // ================================================================== 1. device nodes

  scenario('1a. /dev/tapN occupied from the attacker\'s own namespace: the victim still gets a queue of her own link, and no node is made', async (t, ctx) => {
    const ns = ctx.netns('1a', [['v0', 'v1'], ['w0', 'w1']]);
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`, `allow user ${vic.name} dev w0 netns ${ns.name}`]);
    const first = maxIfindex(ns) + 1;
    const occ = await host.occupy(att, ns, first, 48);
    t.ok(occ.indexes.length >= 32, `the attacker made macvtaps with ifindex ${first}..${first + 47} in a namespace of his own (${occ.indexes.length})`);
    t.ok(occ.indexes.filter((i) => nodeDev(`/dev/tap${i}`)).length >= 32, 'and so /dev/tapN for those N are devices of his (or some other namespace\'s)');
    const holders: Owner[] = [];
    for (let round = 0; round < 3; round++) {
      await occ.refresh();
      const owner = host.own(vic, ns, 'vepa', ['--dev=w0'], { hold: true });
      holders.push(owner);
      const r = await result(owner);
      t.equal(r.status, 0, `victim's run ${round}: succeeds (${r.stderr.trim()})`);
      checkOwnQueue(t, ns, r, 'w0', `victim's run ${round}`);
      t.same(host.devFilesOfUsers(), [], `victim's run ${round}: while she holds the queue, nothing under /dev is a test user's`);
    }
    await occ.refresh();
    const mine = host.own(att, ns, 'vepa', ['--dev=v0'], { hold: true });
    const r = await result(mine);
    t.equal(r.status, 0, `the attacker's own run succeeds (${r.stderr.trim()})`);
    checkOwnQueue(t, ns, r, 'v0', "the attacker's run");
    t.same(await host.privateNodeDirs(), [], 'no /dev/.qemu-net-helper-* while the links are held');
    for (const o of [...holders, mine]) await o.stop();
    await occ.proc.stop();
  });

  scenario('1b. SIGSTOP/SIGKILL at random moments: no node, no directory under /dev, at any moment', async (t, ctx) => {
    const ns = ctx.netns('1b', [['v0', 'v1'], ['w0', 'w1']]);
    policy([`allow user ${vic.name} dev w0 netns ${ns.name}`]);
    const occ = await host.occupy(att, ns, maxIfindex(ns) + 1, 64);
    // The attacker keeps the RTNL lock busy from his namespace: the helper's steps take longer, so more moments fall inside them.
    await occ.churn(30);
    // How long a whole run takes now: the moments are drawn from it.
    const t0 = Date.now();
    const cal = await host.helper(vic, ns, 'vepa', ['--dev=w0', '--probe']);
    const span = Math.max(20, Date.now() - t0);
    t.equal(cal.status, 0, `a run takes ${span} ms (${cal.stderr.trim()})`);
    const rounds = 14;
    for (let round = 0; round < rounds; round++) {
      const delay = Math.floor(rng() * span);
      const kill = rng() < 0.5;
      await occ.refresh();
      let pid = 0;
      const exit = host.helper(vic, ns, 'vepa', ['--dev=w0', '--probe'], { onSpawn: (p) => { pid = p; } });
      await new Promise((r) => setTimeout(r, delay));
      let stopped = false;
      try {
        process.kill(pid, 'SIGSTOP');
        await waitStopped(pid, 10_000);
        stopped = true;
      } catch {
        // It finished before the moment came.
      }
      if (stopped) {
        const files = host.devFilesOfUsers();
        const dirs = readdirSync('/dev').filter((n) => n.startsWith('.qemu-net-helper-'));
        t.same(files, [], `round ${round}: stopped after ${delay} ms, nothing under /dev is a test user's`);
        t.same(dirs, [], `round ${round}: stopped after ${delay} ms, no /dev/.qemu-net-helper-*`);
        process.kill(pid, kill ? 'SIGKILL' : 'SIGCONT');
      }
      const r: Exit = await exit;
      t.ok(r.status === 0 || (kill && r.signal === 'SIGKILL') || r.status === 1, `round ${round}: ${stopped ? (kill ? 'killed' : 'continued') : 'finished'} (${r.status ?? r.signal}: ${r.stderr.trim().slice(0, 200)})`);
      t.same(host.devFilesOfUsers(), [], `round ${round}: afterwards nothing under /dev is a test user's`);
    }
    await occ.calm();
    t.same(await host.privateNodeDirs(), [], 'no /dev/.qemu-net-helper-* after all rounds');
    await occ.proc.stop();
  });

  scenario("1c. a node kept from the attacker's runs never reaches the victim's next queue; he cannot open hers", async (t, ctx) => {
    const ns = ctx.netns('1c', [['v0', 'v1'], ['w0', 'w1']]);
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`, `allow user ${vic.name} dev w0 netns ${ns.name}`]);
    const occ = await host.occupy(att, ns, maxIfindex(ns) + 1, 64);
    // The attacker runs his own probes and tries to keep the device node each makes (in a
    // directory he would own with file capabilities), stopping and single-stepping his helper
    // while he keeps the RTNL lock busy from his own namespace (see agent.py steal).
    const kept: Array<{ path: string; rdev: string }> = [];
    const seen: string[] = [];
    await host.exclusive(async () => {
      await occ.churn(20);
      for (let i = 0; i < 10 && kept.length === 0; i++) {
        await occ.refresh();
        const thief = host.agentProc('steal', att, ns, ['steal', '10', '--', helperPath('vepa'), '--dev=v0', '--probe']);
        const report = (await thief.next('steal', 20_000)).steal as { status: number | null; stderr: string; seen: Array<{ dir: string; uid: number }>; kept: Array<{ path: string; rdev: string }> };
        kept.push(...report.kept);
        seen.push(...report.seen.map((d) => `${d.dir} (uid ${d.uid})`));
        t.comment(`the attacker's probe ${i}: status ${report.status}, saw ${report.seen.length} node directories, kept ${JSON.stringify(report.kept)} ${report.stderr.trim()}`);
        await thief.stop();
      }
      await occ.calm();
    });
    t.same(seen.filter((d) => d.endsWith(`(uid ${att.uid})`)), [], 'no directory under /dev was ever the attacker\'s');
    t.same(kept, [], 'the attacker kept no device node from his runs');
    // The victim's next link reuses a freed minor; then she releases it, and her next one does again.
    for (let round = 0; round < 2; round++) {
      const owner = host.own(vic, ns, 'vepa', ['--dev=w0'], { hold: true });
      const r = await result(owner);
      t.equal(r.status, 0, `the victim's link ${round}: made (${r.stderr.trim()})`);
      const ifname = r.record?.ifname ?? '';
      const ifindex = Number(r.record?.ifindex);
      const dev = sysfsDev(ns, ifname, ifindex) ?? '?';
      t.comment(`the victim's link ${round}: ${ifname}, ifindex ${ifindex}, device ${dev}; the attacker kept ${kept.map((k) => k.rdev).join(',') || 'nothing'}`);
      const paths = [...new Set([`/dev/tap${ifindex}`, ...kept.map((k) => k.path), ...nodesWithDev(dev)])];
      const opened = await host.tryOpen(att, ns, paths);
      for (const o of opened) {
        const reached = !o.error && (o.rdev === dev || o.tun_name === ifname);
        t.notOk(reached, `link ${round}: the attacker opening ${o.path} does not reach the victim's queue (${o.error ?? `${o.rdev} ${o.tun_name}`})`);
      }
      t.equal(opened[0]?.error, 'EACCES', `link ${round}: the attacker opening /dev/tap${ifindex} gets EACCES`);
      t.same(nodesWithDev(dev).filter((p) => p !== `/dev/tap${ifindex}`), [], `link ${round}: no path but /dev/tap${ifindex} is device ${dev}`);
      const rel = await host.helper(vic, ns, 'vepa', [`--release=${ifname}`]);
      t.equal(rel.status, 0, `the victim releases ${ifname} (${rel.stderr.trim()})`);
      await owner.stop();
    }
    await occ.proc.stop();
  });

  // ================================================================== 2. names

  scenario('2a. names the policy did not decide on: --ifname must start with "macvtap" and not with "-"', async (t, ctx) => {
    const ns = ctx.netns('2a');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`, `allow user ${vic.name} dev eth1 netns ${ns.name}`]);
    for (const name of ['eth1', '-x', '--help', 'lo0', 'bonding_masters']) {
      const r = await result(host.own(att, ns, 'vepa', ['--dev=v0', `--ifname=${name}`]));
      t.equal(r.status, 2, `--ifname=${name}: a usage error (${r.status ?? r.signal}: ${r.stderr.trim()})`);
      t.match(r.stderr, /--ifname/, `--ifname=${name}: the message names --ifname`);
      t.match(r.stderr, ONE_LINE, `--ifname=${name}: one line`);
      t.same(r.fds, [], `--ifname=${name}: no fd`);
      t.same(ns.macvtaps(), [], `--ifname=${name}: nothing created`);
      t.notOk(ns.link(name), `--ifname=${name}: no link of that name`);
    }
    for (const name of ['macvtap%d', 'macvtapatt1']) {
      const r = await result(host.own(att, ns, 'vepa', ['--dev=v0', `--ifname=${name}`], { hold: true }));
      t.equal(r.status, 0, `--ifname=${name} is the caller's to choose (${r.stderr.trim()})`);
      if (name !== 'macvtap%d') t.equal(r.record?.ifname, name);
    }
  });

  scenario('2b/2c. a lower device that is itself a macvlan or macvtap (the kernel would re-parent to v0) is refused; records name the real lower device', async (t, ctx) => {
    const ns = ctx.netns('2b');
    ns.ip('link', 'add', 'mv5', 'link', 'v0', 'type', 'macvlan');
    ns.ip('link', 'add', 'mt5', 'link', 'v0', 'type', 'macvtap');
    ctx.rootLinks.push([ns, 'mt5']);
    const lowers = ['mv5', 'mt5'];
    if (sh(['ip', '-n', ns.name, 'link', 'add', 'iv5', 'link', 'v0', 'type', 'ipvlan'], false).status === 0) lowers.push('iv5');
    else t.comment('this kernel has no ipvlan: that case is left out');
    for (const l of lowers) ns.ip('link', 'set', l, 'up');
    policy([`allow user ${att.name} dev ${lowers.join(',')} netns ${ns.name}`, `deny user ${att.name} dev v0`]);
    for (const lower of lowers) {
      const owner = host.own(att, ns, 'vepa', ['--dev=' + lower]);
      const r = await result(owner);
      t.equal(r.status, 1, `--dev=${lower}: refused (${r.status ?? r.signal}: ${r.stderr.trim()})`);
      t.match(r.stderr, ONE_LINE, `--dev=${lower}: one line`);
      t.match(r.stderr, /re-?parent|on the device below it|would (put|create) the macvtap on/i, `--dev=${lower}: it says the kernel would re-parent the macvtap`);
      t.same(r.fds, [], `--dev=${lower}: no fd`);
      t.same(ns.macvtaps(), ['mt5'], `--dev=${lower}: nothing created (root's mt5 only)`);
      for (const line of await host.helperLog(r.helper_pid)) {
        const f = fieldsOf(line);
        if (f instanceof Map && f.has('lower')) t.equal(f.get('lower'), 'v0', `--dev=${lower}: any lower= logged is the kernel's lower device`);
      }
    }
    // Root is not bound by the policy: whatever it gets, the record must not name mv5 as the lower device.
    let rootPid = 0;
    const root = await host.helper(ROOT, ns, 'vepa', ['--dev=mv5', '--probe', '--json'], { onSpawn: (p) => { rootPid = p; } });
    if (root.status === 0) {
      t.equal((JSON.parse(root.stdout) as { lower: string }).lower, 'v0', "root's --dev=mv5: the record names the real lower device v0");
    } else {
      t.equal(root.status, 1, `root's --dev=mv5 is refused in one line (${root.stderr.trim()})`);
    }
    for (const line of await host.helperLog(rootPid)) {
      const f = fieldsOf(line);
      if (!(f instanceof Map)) continue;
      if (root.status === 0 && f.has('lower')) t.equal(f.get('lower'), 'v0', "root's run: the outcome's lower= is v0");
    }
    t.same(ns.macvtaps(), ['mt5'], "in the end only root's mt5 is there");
  });

  // ================================================================== 3. the audit log

  scenario('3a. the decision is logged before anything is created: the helper stopped the moment its link exists has logged it', async (t, ctx) => {
    const ns = ctx.netns('3a');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`]);
    let conclusive = 0;
    for (let round = 0; round < 8 && conclusive < 3; round++) {
      const owner = host.own(att, ns, 'vepa', ['--dev=v0'], { stopOnLink: true });
      const pid = await owner.helperPid();
      const stop = await Promise.race([owner.proc.next('stopped').catch(() => undefined), owner.proc.next('result').then(() => undefined)]);
      if (!stop) {
        t.comment(`round ${round}: the helper finished before the agent saw its link: no conclusion`);
        continue;
      }
      conclusive++;
      const lines = await host.helperLog(pid);
      t.ok(lines.some((l) => / result=allow\b/.test(l.message)), `round ${round}: stopped with ${stop.link} in place, the allow line is already logged (${lines.map((l) => l.message).join(' | ') || 'nothing'})`);
      killHelper(pid);
      await result(owner);
    }
    t.ok(conclusive >= 1, `${conclusive} rounds stopped the helper with its link in place`);
  });

  scenario('3b. the attacker SIGKILLs the helper as soon as the fd arrives: every run is logged', async (t, ctx) => {
    const ns = ctx.netns('3b');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`]);
    let logged = 0;
    const runs = 10;
    for (let round = 0; round < runs; round++) {
      const r = await result(host.own(att, ns, 'vepa', ['--dev=v0'], { killOnFd: true }));
      t.ok(r.fds.length === 1, `round ${round}: the fd arrived (${r.stderr.trim()})`);
      const lines = await host.helperLog(r.helper_pid);
      if (lines.some((l) => / result=allow\b/.test(l.message) && l.facility === AUTHPRIV)) logged++;
    }
    t.equal(logged, runs, `every one of ${runs} runs killed on delivery left its allow line in syslog (authpriv)`);
  });

  scenario('3c. a run logs its decision and then its outcome in a second line; caller-chosen values are quoted and cannot forge fields', async (t, ctx) => {
    const ns = ctx.netns('3c');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`]);
    for (const args of [['--dev=v0'], ['--dev=v0', '--ifname=macvtap.x-1_y'], ['--dev=v0', '--ifname=macvtapuid=0']]) {
      const r = await result(host.own(att, ns, 'vepa', args, { hold: true }));
      const lines = await host.helperLog(r.helper_pid);
      if (args[1] === '--ifname=macvtapuid=0' && r.status === 2) {
        // Refusing the name outright is a defence too: then nothing is made or logged with it.
        t.match(r.stderr, /--ifname/, `${args.join(' ')}: refused as a usage error naming --ifname (${r.stderr.trim()})`);
        t.same(ns.macvtaps().filter((n) => n.includes('uid')), [], `${args.join(' ')}: nothing created`);
        t.notMatch(lines.map((l) => l.message).join('\n'), /(^| )uid=0\b/, `${args.join(' ')}: no uid=0 field logged`);
        continue;
      }
      t.equal(r.status, 0, `${args.join(' ')}: succeeds (${r.stderr.trim()})`);
      t.ok(lines.length >= 2, `${args.join(' ')}: two lines, the decision and the outcome (${lines.length}: ${lines.map((l) => l.message).join(' | ')})`);
      for (const line of lines) {
        t.equal(line.facility, AUTHPRIV, 'facility authpriv');
        const f = fieldsOf(line);
        if (!(f instanceof Map)) {
          t.fail(`${args.join(' ')}: the line splits into fields unambiguously: ${f.message}: ${line.message}`);
          continue;
        }
        t.equal(f.get('uid'), String(att.uid), `${args.join(' ')}: uid= is the caller's, once`);
        if (f.has('ifname')) t.equal(f.get('ifname'), r.record?.ifname, `${args.join(' ')}: ifname= is the link's name, whole`);
        if (f.has('lower')) t.equal(f.get('lower'), 'v0');
      }
      const [decision, ...rest] = lines;
      t.match(decision?.message, / result=allow\b/, `${args.join(' ')}: the first line is the decision`);
      t.notMatch(decision?.message, /\bifname=|\boutcome=/, `${args.join(' ')}: made before the link, it names none`);
      t.ok(rest.some((l) => l.message.includes(r.record?.ifname ?? '\0')), `${args.join(' ')}: a later line gives the outcome with the link's name`);
      t.notMatch(lines.map((l) => l.message).join('\n'), / uid=0\b/, `${args.join(' ')}: no forged uid=0 field`);
    }
  });

  scenario('3d. a denial logs a deny line; a failed allocation (a MAC in use) logs outcome=failed', async (t, ctx) => {
    const ns = ctx.netns('3d');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`]);
    const denied = await host.helper(non, ns, 'vepa', ['--dev=v0', '--probe']);
    t.equal(denied.status, 1, `refused (${denied.stderr.trim()})`);
    const dl = await host.helperLog(denied.pid);
    t.ok(dl.some((l) => / result=deny\b/.test(l.message) && l.facility === AUTHPRIV && l.message.includes(`uid=${non.uid}`)), `a deny line for uid ${non.uid} (${dl.map((l) => l.message).join(' | ')})`);

    const lowerMac = ns.link('v0')?.address as string;
    const held = await result(host.own(att, ns, 'vepa', ['--dev=v0', '--mac=52:54:00:c0:7e:01'], { hold: true }));
    t.equal(held.status, 0, held.stderr);
    for (const mac of [lowerMac, '52:54:00:c0:7e:01']) {
      const r = await result(host.own(att, ns, 'vepa', ['--dev=v0', `--mac=${mac}`]));
      t.equal(r.status, 1, `--mac=${mac} (in use on v0): fails (${r.stderr.trim()})`);
      t.match(r.stderr, ONE_LINE);
      const lines = await host.helperLog(r.helper_pid);
      t.ok(lines.some((l) => / result=allow\b/.test(l.message)), `--mac=${mac}: the allow decision is logged`);
      t.ok(lines.some((l) => /\boutcome="?failed\b/.test(l.message)), `--mac=${mac}: and outcome=failed (${lines.map((l) => l.message).join(' | ')})`);
    }
    t.same(linksOfUid(ns, att.uid).length, 1, 'only the held link exists');
  });

  // ================================================================== 4. per-user limit

  scenario('4a. limit user ATT links 3: four concurrent owners across helpers and devices, exactly three succeed; the victim is unaffected', async (t, ctx) => {
    const ns = ctx.netns('4a', [['v0', 'v1'], ['x0', 'x1'], ['w0', 'w1']]);
    policy([`allow user ${att.name} dev v0,x0 netns ${ns.name}`, `allow user ${vic.name} dev w0 netns ${ns.name}`, `limit user ${att.name} links 3`]);
    const asks: Array<[('vepa' | 'bridge'), string]> = [['vepa', 'v0'], ['bridge', 'v0'], ['vepa', 'x0'], ['bridge', 'x0']];
    const results = await Promise.all(asks.map(([p, d]) => result(host.own(att, ns, p, [`--dev=${d}`], { hold: true }))));
    const ok = results.filter((r) => r.status === 0);
    const refused = results.filter((r) => r.status !== 0);
    t.equal(ok.length, 3, `three of four succeed (${results.map((r) => r.status).join(',')})`);
    t.equal(refused.length, 1, 'one is refused');
    for (const r of refused) {
      t.equal(r.status, 1, 'with exit status 1');
      t.match(r.stderr, ONE_LINE, 'in one line');
      t.match(r.stderr, /limit/i, 'naming the limit');
      t.match(r.stderr, new RegExp(`${CONFFILE.replace(/[./]/g, '\\$&')}:3\\b`), `and where it comes from (${CONFFILE}:3): ${r.stderr.trim()}`);
    }
    t.equal(linksOfUid(ns, att.uid).length, 3, 'three live links of the attacker');
    const v = await result(host.own(vic, ns, 'vepa', ['--dev=w0'], { hold: true }));
    t.equal(v.status, 0, `the victim is not counted with the attacker (${v.stderr.trim()})`);
  });

  scenario('4b. twelve concurrent attempts under limit 3 never leave more than three live links', async (t, ctx) => {
    const ns = ctx.netns('4b');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`, `limit user ${att.name} links 3`]);
    let max = 0;
    let sampling = true;
    const sampler = (async () => {
      for (let i = 0; i < 2000 && sampling; i++) {
        max = Math.max(max, linksOfUid(ns, att.uid).length);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const results = await Promise.all(Array.from({ length: 12 }, () => result(host.own(att, ns, 'vepa', ['--dev=v0'], { hold: true }))));
    sampling = false;
    await sampler;
    const won = results.filter((r) => r.status === 0).length;
    t.comment(`of 12 concurrent attempts under limit 3, ${won} succeeded (${results.map((r) => r.status).join(',')}); most links of the attacker seen at once while they raced: ${max}`);
    t.ok(won >= 1 && won <= 3, `one to three succeed (${won})`);
    t.equal(linksOfUid(ns, att.uid).length, won, 'the live links of the attacker are exactly those handed over: no more than three, none left by a refused run');
    for (const r of results.filter((x) => x.status !== 0)) t.same(r.fds, [], 'a refused run hands over no fd');
    t.ok(max <= 4, `never more than one over the limit even in passing (${max})`);
  });

  scenario('4c. without a limit in the policy, the built-in default of 16 applies', async (t, ctx) => {
    const ns = ctx.netns('4c');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`]);
    const results: OwnResult[] = [];
    for (let i = 0; i < 17; i++) results.push(await result(host.own(att, ns, 'vepa', ['--dev=v0'], { hold: true })));
    t.equal(results.filter((r) => r.status === 0).length, 16, `16 succeed (${results.map((r) => r.status).join(',')})`);
    const last = results[16]!;
    t.equal(last.status, 1, 'the 17th is refused');
    t.match(last.stderr, /built-in default/, `naming the built-in default: ${last.stderr.trim()}`);
    t.match(last.stderr, /\b16\b/);
  });

  scenario('4d. limit links N (everyone) and limit group NAME links N', async (t, ctx) => {
    const ns = ctx.netns('4d');
    for (const [rule, who, n] of [[`limit links 2`, vic, 2], [`limit group ${att.name} links 1`, att, 1]] as Array<[string, User, number]>) {
      policy([`allow user ${att.name},${vic.name} dev v0 netns ${ns.name}`, rule]);
      const owners: Owner[] = [];
      const results: OwnResult[] = [];
      for (let k = 0; k <= n; k++) {
        owners.push(host.own(who, ns, 'vepa', ['--dev=v0'], { hold: true }));
        results.push(await result(owners[k]!));
      }
      t.equal(results.filter((r) => r.status === 0).length, n, `${rule}: ${n} of ${n + 1} for the ${who.role} (${results.map((r) => `${r.status} ${r.stderr.trim()}`).join(' | ')})`);
      t.match(results[n]?.stderr, new RegExp(`${CONFFILE.replace(/[./]/g, '\\$&')}:2\\b`), `${rule}: the refusal names ${CONFFILE}:2`);
      await Promise.all(owners.map((o) => o.stop()));
      await host.helper(ROOT, ns, 'vepa', ['--gc']);
    }
  });

  // ================================================================== 5. the owner is whoever is at the other end

  scenario("5a. a reply socket connected to another user's daemon (the victim's, root's) is refused; the daemon gets no fd", async (t, ctx) => {
    const ns = ctx.netns('5a');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`]);
    for (const [who, label] of [[vic, 'the victim'], [ROOT, 'root']] as Array<[Who, string]>) {
      const name = `qnh-cot-${label.replace(/\W/g, '')}-${Math.floor(rng() * 1e9)}`;
      const daemon = host.listen(who, ns, name);
      await daemon.next('ready');
      let connections = 0;
      for (const proto of ['socketpair', 'fd'] as const) {
        // QEMU's protocol needs --mac (a link QEMU's NIC cannot reach is refused): the refusal must be the owner's.
        const r = await result(host.own(att, ns, 'vepa', ['--dev=v0', '--mac=52:54:00:c0:75:01'], { connect: name, proto }));
        connections++;
        t.equal(r.status, 1, `${label}'s daemon, --${proto}: refused (${r.status ?? r.signal}: ${r.stderr.trim()})`);
        t.match(r.stderr, ONE_LINE, `${label}'s daemon, --${proto}: one line`);
        t.same(ns.macvtaps(), [], `${label}'s daemon, --${proto}: nothing created`);
        const conn = await daemon.nth('connection', connections, 10_000).catch(() => undefined);
        t.ok(conn, `${label}'s daemon saw the connection end`);
        t.same(conn?.fds ?? [], [], `${label}'s daemon received no fd (got ${JSON.stringify(conn?.fds)})`);
      }
      await daemon.stop();
    }
  });

  scenario('5b. a zombie owner is dead: --list shows the link stale and the owner\'s --gc removes it', async (t, ctx) => {
    const ns = ctx.netns('5b');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`]);
    const owner = host.own(att, ns, 'vepa', ['--dev=v0'], { zombie: true });
    const zombie = (await owner.proc.next('zombie')).zombie as number;
    const r = await result(owner);
    t.equal(r.status, 0, r.stderr);
    const ifname = r.record?.ifname ?? '';
    for (let i = 0; i < 500 && processState(zombie) !== 'Z'; i++) await new Promise((res) => setTimeout(res, 10));
    t.equal(processState(zombie), 'Z', `the owner (pid ${zombie}) is a zombie`);
    const list = await host.helper(att, ns, 'vepa', ['--list', '--json']);
    const row = (JSON.parse(list.stdout || '[]') as Array<{ name: string; state: string }>).find((x) => x.name === ifname);
    t.equal(row?.state, 'stale', `--list shows ${ifname} stale (${list.stdout.trim() || list.stderr.trim()})`);
    const gc = await host.helper(att, ns, 'vepa', ['--gc']);
    t.equal(gc.status, 0, gc.stderr);
    t.notOk(ns.link(ifname), `the owner's --gc removed ${ifname} (${gc.stdout.trim()})`);
    await owner.stop();
    // Its parent gone, the zombie is reaped by init; wait for that, so the checks below see a dead owner.
    for (let i = 0; i < 500 && processState(zombie) !== undefined; i++) await new Promise((res) => setTimeout(res, 10));
  });

  scenario('5c. an untagged link whose creator pid is a process with "qemu-net-helper" in its command line, but no helper, is stale', async (t, ctx) => {
    const ns = ctx.netns('5c');
    const impostor = host.agentProc('impostor', att, ns, ['wait', 'qemu-net-helper-vepa', '--dev=v0']);
    await impostor.next('ready');
    t.match(readFileSync(`/proc/${impostor.pid}/cmdline`, 'latin1'), /qemu-net-helper/, 'the attacker runs a process whose argv says qemu-net-helper');
    ns.ip('link', 'add', 'link', 'v0', 'name', 'mtorphan', 'type', 'macvtap');
    ns.ip('link', 'set', 'dev', 'mtorphan', 'group', String((0x51000000 | impostor.pid) >>> 0));
    const list = await host.helper(ROOT, ns, 'vepa', ['--list', '--json']);
    const row = (JSON.parse(list.stdout || '[]') as Array<{ name: string; state: string }>).find((x) => x.name === 'mtorphan');
    t.equal(row?.state, 'stale', `--list judges mtorphan stale, not in progress forever (${JSON.stringify(row)})`);
    const gc = await host.helper(ROOT, ns, 'vepa', ['--gc']);
    t.equal(gc.status, 0, gc.stderr);
    t.notOk(ns.link('mtorphan'), `root's --gc removed it (${gc.stdout.trim()})`);
    if (ns.link('mtorphan')) ctx.rootLinks.push([ns, 'mtorphan']);
    await impostor.stop();
  });

  // ================================================================== 6. environment, limits, streams

  scenario('6. hostile environment and process state against the installed helper', async (t, ctx) => {
    const ns = ctx.netns('6');
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`]);
    const own = `${host.tmp}/att-${Math.floor(rng() * 1e9)}`;
    mkdirSync(own, { mode: 0o700 });
    chownSync(own, att.uid, att.gid);
    mkdirSync(`${own}/locale`);
    chownSync(`${own}/locale`, att.uid, att.gid);
    const payload = `${host.tmp}/x.js`;
    writeFileSync(payload, `require('fs').writeFileSync(${JSON.stringify(`${own}/pwned`)}, 'x')\n`, { mode: 0o644 });
    const gone = `${own}/gone`;
    const marker = `${host.tmp}/before-6`;
    writeFileSync(marker, '');
    const cases: Array<{ what: string; env?: string[]; pre?: string[]; silent?: boolean }> = [
      { what: 'LC_ALL set to a directory', env: [`LC_ALL=${own}/locale`, `LANG=${own}/locale`, `LOCPATH=${own}`] },
      { what: 'ulimit -n 20', pre: ['sh', '-c', 'ulimit -n 20; exec "$0" "$@"'] },
      { what: 'NODE_OPTIONS=--require=x.js', env: [`NODE_OPTIONS=--require=${payload}`] },
      { what: 'NODE_V8_COVERAGE', env: [`NODE_V8_COVERAGE=${own}/cov`] },
      { what: 'stdin, stdout and stderr closed', pre: ['sh', '-c', 'exec "$0" "$@" <&- >&- 2>&-'], silent: true },
      { what: 'umask 000', pre: ['sh', '-c', 'umask 000; exec "$0" "$@"'] },
      { what: "cwd in the attacker's directory, deleted", pre: ['sh', '-c', `mkdir "${gone}" && cd "${gone}" && rmdir "${gone}" && exec "$0" "$@"`] },
    ];
    for (const c of cases) {
      const probe = await host.helper(att, ns, 'vepa', ['--dev=v0', '--probe'], { env: c.env, pre: c.pre });
      if (!(await crashed(t, `${c.what}, --probe`, probe.signal, probe.pid, ns))) {
        t.ok(probe.status === 0 || (probe.status !== null && (c.silent || ONE_LINE.test(probe.stderr))),
          `${c.what}, --probe: succeeds or fails in one clean line (${probe.status}: ${probe.stderr.trim().slice(0, 300)})`);
      }
      t.same(ns.macvtaps(), [], `${c.what}, --probe: no link left`);
      // The same around a --socketpair run: the wrapper execs the helper, which inherits the socket.
      const owner = host.own(att, ns, 'vepa', ['--dev=v0'], { env: c.env, pre: c.pre });
      const r = await result(owner);
      if (!(await crashed(t, `${c.what}, --socketpair`, r.signal, r.helper_pid, ns))) {
        t.ok(r.status === 0 || (r.status !== null && (c.silent || ONE_LINE.test(r.stderr))),
          `${c.what}, --socketpair: succeeds or fails in one clean line (${r.status}: ${r.stderr.trim().slice(0, 300)})`);
      }
      if (r.status === 0) checkOwnQueue(t, ns, r, 'v0', `${c.what}, --socketpair`);
      else t.same(ns.macvtaps(), [], `${c.what}, --socketpair: a failure leaves no link`);
      await owner.stop();
      await host.helper(ROOT, ns, 'vepa', ['--gc']);
    }
    // Other descriptor limits: the helper runs out of fds at some step or other of its run.
    const sweep: string[] = [];
    for (let n = 21; n <= 41; n += 2) {
      const owner = host.own(att, ns, 'vepa', ['--dev=v0'], { pre: ['sh', '-c', `ulimit -n ${n}; exec "$0" "$@"`] });
      const r = await result(owner);
      sweep.push(`${n}:${r.signal ? `signal ${r.signal}` : r.status}`);
      if (!(await crashed(t, `ulimit -n ${n}, --socketpair`, r.signal, r.helper_pid, ns))) {
        t.ok(r.status === 0 || (r.status !== null && ONE_LINE.test(r.stderr)), `ulimit -n ${n}: succeeds or fails in one line (${r.status}: ${r.stderr.trim().slice(0, 200)})`);
      }
      if (r.status !== 0) t.same(ns.macvtaps(), [], `ulimit -n ${n}: a failure leaves no link`);
      await owner.stop();
      await host.helper(ROOT, ns, 'vepa', ['--gc']);
    }
    t.comment(`ulimit -n N: exit status or signal of a --socketpair run: ${sweep.join(' ')}`);
    t.notOk(existsSync(`${own}/pwned`), 'NODE_OPTIONS loaded nothing');
    t.notOk(existsSync(`${own}/cov`), 'NODE_V8_COVERAGE wrote nothing');
    const writable = sh(['find', '/dev', host.tmp, '-xdev', '-newer', marker, '-perm', '-0002', '!', '-type', 'c', '!', '-type', 's', '!', '-type', 'l', '-print'], false).stdout.split('\n').filter(Boolean);
    t.same(writable, [], 'nothing world-writable was created (umask 000)');
  });

  // ================================================================== 6b. --help and the like

  // Where koffi loads, --help, --version and usage errors come from the full
  // run, after confinePrivileges() (lib/early.ts answers them only when koffi
  // cannot load: test/packaging/build.test.ts). Seen from /proc while --help
  // waits in write(2) on a full pipe: the caller's ids, nothing effective, and
  // permitted only the helpers' three capabilities, in both install modes.
  scenario('6b. --help is written confined: the caller\'s ids, no effective capability; one clean answer', async (t, ctx) => {
    const ns = ctx.netns('6b');
    for (const program of PROGRAMS) {
      const r = await host.blockedWriting(att, ns, program, ['--help']);
      t.equal(r.status, 0, `${program} --help: exit 0 (${r.stderr.trim()})`);
      t.match(r.stdout, new RegExp(`^Usage: qemu-net-helper-${program} `), `${program} --help: the whole usage text came through the blocked pipe`);
      const seen = r.while_writing;
      if (!t.ok(seen, `${program} --help: its status was read while it waited to write`) || !seen) continue;
      t.same(seen.Uid, Array(4).fill(String(att.uid)), `${program} --help: every uid is the caller's while it writes`);
      t.same(seen.Gid, Array(4).fill(String(att.gid)), `${program} --help: every gid is the caller's`);
      t.equal(BigInt(`0x${seen.CapEff[0]}`), 0n, `${program} --help: no effective capability while it writes`);
      t.equal(BigInt(`0x${seen.CapPrm[0]}`), HELPER_CAPABILITIES, `${program} --help: permitted only cap_chown, cap_dac_override, cap_net_admin (confined)`);
    }
    const bad = await host.helper(att, ns, 'vepa', [`--dev=${'x'.repeat(100_000)}`, '--probe']);
    t.equal(bad.status, 2, 'a usage error with a 100 kB argument: exit 2');
    t.match(bad.stderr, ONE_LINE);
    t.ok(bad.stderr.length <= 1025, `in one line of at most 1024 characters (${bad.stderr.length - 1})`);
    const withFd = await result(host.own(att, ns, 'vepa', ['--help'], { proto: 'fd' }));
    t.equal(withFd.status, 2, '--help over QEMU\'s --fd protocol: exit 2, so that QEMU reports a failed helper instead of using fd 0');
    t.same(withFd.fds, [], 'and no fd');
    t.same(ns.macvtaps(), [], 'nothing was made');
  });

  // ================================================================== 7. the user allowed nothing

  scenario('7. the user allowed nothing: every helper refuses and logs it; others\' links are out of reach of --list, --release and --gc', async (t, ctx) => {
    const ns = ctx.netns('7', [['v0', 'v1'], ['w0', 'w1']]);
    policy([`allow user ${att.name} dev v0 netns ${ns.name}`, `allow user ${vic.name} dev w0 netns ${ns.name}`]);
    const live = host.own(vic, ns, 'vepa', ['--dev=w0'], { hold: true });
    const lr = await result(live);
    t.equal(lr.status, 0, lr.stderr);
    const liveLink = lr.record?.ifname ?? '';
    const stale = await result(host.own(vic, ns, 'bridge', ['--dev=w0']));
    t.equal(stale.status, 0, stale.stderr);
    const staleLink = stale.record?.ifname ?? '';
    const theirs = [liveLink, staleLink].sort();
    for (const program of PROGRAMS) {
      for (const dev of ['v0', 'w0']) {
        const r = await host.helper(non, ns, program, [`--dev=${dev}`, '--probe']);
        t.equal(r.status, 1, `${program} --dev=${dev}: refused (${r.stderr.trim()})`);
        t.match(r.stderr, ONE_LINE);
        const lines = await host.helperLog(r.pid);
        t.ok(lines.some((l) => / result=deny\b/.test(l.message) && l.facility === AUTHPRIV), `${program} --dev=${dev}: a deny line (${lines.map((l) => l.message).join(' | ')})`);
        const own = await result(host.own(non, ns, program, [`--dev=${dev}`]));
        t.equal(own.status, 1, `${program} --dev=${dev} --socketpair: refused`);
        t.same(own.fds, [], 'no fd');
        t.same(ns.macvtaps().sort(), theirs, `${program} --dev=${dev}: nothing created`);
      }
    }
    for (const who of [non, att]) {
      const list = await host.helper(who, ns, 'vepa', ['--list', '--json']);
      t.equal(list.status, 0, list.stderr);
      t.same(JSON.parse(list.stdout || 'null'), [], `${who.role}'s --list shows nothing of the victim's`);
      for (const link of theirs) {
        const rel = await host.helper(who, ns, 'vepa', [`--release=${link}`]);
        t.equal(rel.status, 1, `${who.role}'s --release=${link}: refused (${rel.stderr.trim()})`);
        t.ok(ns.link(link), `${link} survives`);
      }
      const gc = await host.helper(who, ns, 'vepa', ['--gc']);
      t.equal(gc.status, 0, gc.stderr);
      t.same(ns.macvtaps().sort(), theirs, `${who.role}'s --gc removes neither the victim's live link nor her stale one`);
    }
    const vgc = await host.helper(vic, ns, 'vepa', ['--gc']);
    t.equal(vgc.status, 0, vgc.stderr);
    t.same(ns.macvtaps(), [liveLink], "the victim's own --gc removes her stale link, not her live one");
    await live.stop();
  });

  scenario("7b. a link the victim's own process still holds, its owner gone, survives the attacker's passthrough request and --gc", async (t, ctx) => {
    const ns = ctx.netns('7b', [['x0', 'x1']]);
    policy([`allow user ${att.name},${vic.name} dev x0 mode passthru netns ${ns.name}`]);
    // As a VM manager does: the owner hands the queue on (here to a child of its own) and exits.
    const owner = host.own(vic, ns, 'passthrough', ['--dev=x0'], { handoff: true });
    const r = await result(owner);
    if (r.holder_pid) host.trackChild(r.holder_pid);
    t.equal(r.status, 0, `the victim's passthru link on x0 (${r.stderr.trim()})`);
    const ifname = r.record?.ifname ?? '';
    for (let i = 0; i < 500 && processState(r.owner_pid) !== undefined; i++) await new Promise((res) => setTimeout(res, 10));
    t.equal(processState(r.owner_pid), undefined, `its owner (pid ${r.owner_pid}) is gone`);
    t.ok(r.holder_pid && processState(r.holder_pid) === 'S', `the victim's process ${r.holder_pid} holds the queue`);
    const rows = JSON.parse((await host.helper(ROOT, ns, 'vepa', ['--list', '--json'])).stdout || '[]') as Array<{ name: string; state: string }>;
    t.comment(`root's --list: ${JSON.stringify(rows.map((x) => [x.name, x.state]))}`);
    const rootGc = await host.helper(ROOT, ns, 'vepa', ['--gc']);
    t.equal(rootGc.status, 0, rootGc.stderr);
    t.ok(ns.link(ifname), `the victim's ${ifname} survives root's --gc while her process holds its queue (${rootGc.stdout.trim()})`);
    const gc = await host.helper(att, ns, 'passthrough', ['--gc']);
    t.equal(gc.status, 0, gc.stderr);
    t.ok(ns.link(ifname), `the victim's ${ifname} survives the attacker's --gc`);
    // A passthru request collects stale links on its devices first; the attacker cannot see the victim's processes' fds.
    const grab = await host.helper(att, ns, 'passthrough', ['--dev=x0', '--probe']);
    t.not(grab.status, 0, `the attacker's passthru request on x0 fails: the device is the victim's (${grab.status}: ${grab.stderr.trim()})`);
    t.ok(ns.link(ifname), `the victim's ${ifname} survives the attacker's passthrough request`);
    host.killHelpers(); // the victim's process that holds the queue
    await owner.stop();
  });

  // ================================================================== purge

  t.test('purge: nothing of the package or the users remains', async (t) => {
    const listed = sh([...host.inNs, 'dpkg-query', '-L', PACKAGE], false).stdout.split('\n').filter(Boolean);
    const ours = listed.filter((p) => p.startsWith(`${LIBEXEC}/qemu-net-helper`) || p.startsWith('/usr/lib/qemu-net-helper') || p === CONFFILE || p.includes('qemu-net-helper'));
    t.ok(ours.length >= 5, `the package had installed ${ours.length} files of its own`);
    t.same(host.purge(), [], 'dpkg --purge succeeds');
    t.notOk(host.packageKnown(), 'dpkg knows the package no more');
    t.same(ours.filter((p) => existsSync(host.nsPath(p))), [], 'every file it installed is gone, the conffile too');
    const problems = await tearDown();
    t.same(problems, [], 'userdel, and the end of the namespace, went cleanly');
    t.same(host.devFilesOfUsers(), [], 'nothing under /dev belongs to a test user');
  });
}
