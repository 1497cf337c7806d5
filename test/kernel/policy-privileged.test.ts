// The helpers run with privileges on behalf of an unprivileged user (uid
// 65534 here), against the policy. The privileged executable is a copy of
// the pinned node with the helpers' file capabilities (cap_net_admin,
// cap_dac_override, cap_chown), running the same sources: the kernel sets
// AT_SECURE for it exactly as for the installed single executables. The
// policy path comes through the test-only entry point, since --config is
// refused in a privileged run (that refusal is tested too).

import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { makeCapNode } from '../support/cap-node.ts';
import { callHelper, HelperCallError } from '../../lib/client.ts';
import { holdLink, type HeldLink, type HeldLinkError } from '../support/held-link.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import { waitStopped } from '../support/process.ts';

const skip = privilegedSkipReason(['ip', 'setcap', 'setpriv']);
if (skip) t.plan(0, skip);
else {
  const USER = 65534;
  // A root-owned directory others can enter: the policy's parents must be root's and not writable by others.
  const { dir, path: capNode } = makeCapNode(t, 'qnh-priv-');

  let policyCounter = 0;
  /** Writes a root-owned 0644 policy file and returns its path. */
  function policyFile(text: string): string {
    const path = `${dir}/policy-${++policyCounter}.conf`;
    writeFileSync(path, text, { mode: 0o644 });
    return path;
  }

  /** The user, in the namespace, with an empty environment: what runs the helper, or the owner that runs it. */
  function asUser(ns: Netns, opts: { env?: string[]; pre?: string[] } = {}): string[] {
    return [...ns.exec, 'setpriv', `--reuid=${USER}`, `--regid=${USER}`, '--clear-groups', ...(opts.pre ?? []),
      'env', '-i', 'PATH=/usr/bin:/bin', ...(opts.env ?? [])];
  }

  function helperOnly(program: string, policy: string, args: string[], seams: string[] = []): string[] {
    return [capNode, `${REPO}test/support/helper-with-seams.ts`, program, `--seam-policy=${policy}`, ...seams, '--', ...args];
  }

  function helperArgv(ns: Netns, program: string, policy: string, args: string[], opts: { env?: string[]; pre?: string[] } = {}): string[] {
    return [...asUser(ns, opts), ...helperOnly(program, policy, args)];
  }

  /** The helper run by an owner process of the user's own (their QEMU, in real use), which keeps the link until released. */
  function holdAsUser(ns: Netns, program: string, policy: string, args: string[], seams: string[] = [], onSpawn?: (pid: number) => void): Promise<HeldLink> {
    return holdLink(asUser(ns), helperOnly(program, policy, args, seams), { onSpawn });
  }

  function run(ns: Netns, policy: string, args: string[], opts: { env?: string[]; pre?: string[]; program?: string } = {}): SpawnSyncReturns<string> {
    const argv = helperArgv(ns, opts.program ?? 'qemu-net-helper-vepa', policy, args, opts);
    return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  }

  function withVeth(t: { teardown(fn: () => void): void }, label: string): Netns {
    const ns = createNetns(t, label);
    addVethPair(ns);
    return ns;
  }

  t.test('the executable really is privileged and the caller really is not', async (t) => {
    const r = spawnSync('setpriv', [`--reuid=${USER}`, `--regid=${USER}`, '--clear-groups', capNode, '-e',
      'const s=require("fs").readFileSync("/proc/self/status","utf8"); console.log(process.getuid(), /CapEff:\\s*(\\w+)/.exec(s)[1])'], { encoding: 'utf8' });
    // Effective at exec, as the file says: CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_NET_ADMIN (12).
    t.equal(r.stdout.trim(), `${USER} 0000000000001003`, `uid ${USER} with exactly the helpers' capabilities`);
  });

  // The same sources under a setuid-root copy of node: postinst's fallback install mode.
  const suidNode = `${dir}/node-suid`;
  copyFileSync(process.execPath, suidNode);
  chmodSync(suidNode, 0o4755);

  /** What /proc says of a thread's ids and capabilities. */
  function creds(statusPath: string): { uids: string; capEff: bigint; capPrm: bigint } {
    const text = readFileSync(statusPath, 'utf8');
    const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
    return { uids: field('Uid').split(/\s+/).join(','), capEff: BigInt(`0x${field('CapEff')}`), capPrm: BigInt(`0x${field('CapPrm')}`) };
  }

  t.test('confined from the first line, in both install modes: the caller\'s uids, nothing effective, only CAP_NET_ADMIN, CAP_DAC_OVERRIDE and CAP_CHOWN permitted', async (t) => {
    const ns = withVeth(t, 'pconfine');
    const policy = policyFile(`allow user ${USER} dev v0 netns ${ns.name}\n`);
    const HELPER_CAPS_MASK = (1n << 12n) | (1n << 1n) | (1n << 0n); // CAP_NET_ADMIN, CAP_DAC_OVERRIDE, CAP_CHOWN
    for (const [mode, node] of [['file capabilities', capNode], ['setuid root', suidNode]] as const) {
      for (const step of ['parsed', 'tagged', 'opened'] as const) {
        const argv = [...asUser(ns), node, `${REPO}test/support/helper-with-seams.ts`, 'qemu-net-helper-vepa', `--seam-policy=${policy}`, `--seam-fault=${step}:stop`, '--', '--dev=v0', '--probe'];
        const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        // ip netns exec and setpriv exec in place: the child's pid is the helper's.
        await waitStopped(child.pid!);
        const main = creds(`/proc/${child.pid}/status`);
        t.equal(main.uids, `${USER},${USER},${USER},${USER}`, `${mode}, at ${step}: every uid is the caller's`);
        t.equal(main.capEff, 0n, `${mode}, at ${step}: no capability effective between operations`);
        t.equal(main.capPrm, HELPER_CAPS_MASK, `${mode}, at ${step}: only CAP_NET_ADMIN, CAP_DAC_OVERRIDE and CAP_CHOWN permitted`);
        if (mode === 'setuid root') {
          const others = readdirSync(`/proc/${child.pid}/task`).filter((tid) => tid !== String(child.pid)).map((tid) => creds(`/proc/${child.pid}/task/${tid}/status`));
          t.ok(others.length > 0, `${mode}: Node runs other threads (${others.length})`);
          t.ok(others.every((c) => c.capEff === 0n && c.capPrm === 0n), `${mode}, at ${step}: no other thread has any capability`);
        }
        process.kill(child.pid!, 'SIGCONT');
        t.equal(await exited, 0, `${mode}, at ${step}: the run then completes`);
      }
    }
    t.same(ns.macvtaps(), []);
  });

  t.test('allowed by the policy: the macvtap is made, tagged with the caller, and handed over', async (t) => {
    const ns = withVeth(t, 'pallow');
    const policy = policyFile(`allow user ${USER} dev v0 netns ${ns.name}\n`);
    const probe = run(ns, policy, ['--dev=v0', '--probe', '--json']);
    t.equal(probe.status, 0, probe.stderr);
    t.match(JSON.parse(probe.stdout), { lower: 'v0', mode: 'vepa', fds: ['tap'] });
    t.same(ns.macvtaps(), [], 'probe deleted its link (before dropping privileges)');

    const r = await holdAsUser(ns, 'qemu-net-helper-vepa', policy, ['--dev=v0']);
    t.teardown(() => r.release());
    t.match(ns.link(r.record.ifname)?.ifalias, new RegExp(`uid=${USER} pid=${r.ownerPid} `), 'tagged with the caller\'s uid and the socket\'s owner');
    t.equal(r.record.vhost, false);

    // A reply socket whose other end is not the caller's own process (here: root's, this test's) is refused.
    const err = await callHelper({ command: helperArgv(ns, 'qemu-net-helper-vepa', policy, ['--dev=v0']), args: [], timeoutMs: 30_000 })
      .then((x) => { x.close(); return undefined; }, (e: HelperCallError) => e);
    t.match(err?.reported, new RegExp(`the process at the other end of --socketpair=3 \\(pid ${process.pid}\\) runs as uid 0, not as you \\(uid ${USER}\\)`));
    t.same(ns.macvtaps(), [r.record.ifname], 'and nothing was made for it');
  });

  t.test('the per-user limit admits exactly as many links as it allows, however many helpers of the user race for them', async (t) => {
    const ns = withVeth(t, 'plimit');
    const policy = policyFile(`allow user ${USER} dev v0 netns ${ns.name}\nlimit user ${USER} links 3\n`);
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => holdAsUser(ns, 'qemu-net-helper-vepa', policy, ['--dev=v0'])));
    const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    t.teardown(() => Promise.all(won.map((w) => w.release())));
    t.equal(won.length, 3, `exactly three of six concurrent requests got a link (${results.map((r) => r.status).join(',')})`);
    for (const r of results) {
      if (r.status === 'rejected') t.match((r.reason as Error).message, new RegExp(`uid ${USER} already holds 3 links, and the limit at .*:2 allows 3`));
    }
    t.equal(ns.macvtaps().length, 3, 'and exactly three links exist');
  });

  t.test('refusals: not in the policy, deny beats allow, another mode, more queues, a private namespace with its own v0', async (t) => {
    const ns = withVeth(t, 'pdeny');
    const cases: Array<[string, string[], RegExp]> = [
      ['', ['--dev=v0', '--probe'], /no rule in the policy allows uid 65534 the use of v0/],
      [`allow user ${USER} dev v0 netns ${ns.name}\ndeny user ${USER} dev v0\n`, ['--dev=v0', '--probe'], /policy-\d+\.conf:2/],
      [`allow user ${USER} dev v0 mode private netns ${ns.name}\n`, ['--dev=v0', '--probe'], /in mode vepa/],
      [`allow user ${USER} dev v0 netns ${ns.name}\n`, ['--dev=v0', '--queues=2', '--probe'], /queues/],
      [`allow user ${USER} dev v0\n`, ['--dev=v0', '--probe'], /network namespace that is neither the host's nor named/],
    ];
    for (const [text, args, message] of cases) {
      const r = run(ns, policyFile(text), args);
      t.equal(r.status, 1, `${JSON.stringify(text)} -> refused`);
      t.match(r.stderr, message);
      t.match(r.stderr, /^qemu-net-helper-vepa: [^\n]+\n$/, 'one line');
      t.same(ns.macvtaps(), [], 'nothing created');
    }
  });

  t.test('a network named in the policy gives the device and the mode', async (t) => {
    const ns = withVeth(t, 'pnet');
    const policy = policyFile(`network lan dev v0 mode private\nallow user ${USER} network lan netns ${ns.name}\n`);
    const r = run(ns, policy, ['--network=lan', '--probe', '--json']);
    t.equal(r.status, 0, r.stderr);
    t.match(JSON.parse(r.stdout), { lower: 'v0', mode: 'private' });
    const wrong = run(ns, policy, ['--network=lan', '--mode=vepa', '--probe']);
    t.match(wrong.stderr, /--mode=vepa contradicts network lan, which is private/);
    const bridge = run(ns, policy, ['--network=lan', '--probe'], { program: 'qemu-net-helper-bridge' });
    t.match(bridge.stderr, /network lan is a private network, which qemu-net-helper-bridge does not make/);
    // QEMU's and libvirt's --br=NAME names the network as well (libvirt: <source bridge='lan'/>).
    const br = run(ns, policy, ['--br=lan', '--probe', '--json']);
    t.equal(br.status, 0, br.stderr);
    t.match(JSON.parse(br.stdout), { lower: 'v0', mode: 'private' });
    const brLong = run(ns, policyFile(`network office-lan-private dev v0 mode private\nallow user ${USER} network office-lan-private netns ${ns.name}\n`), ['--br=office-lan-private', '--probe', '--json']);
    t.equal(brLong.status, 0, brLong.stderr);
    t.match(JSON.parse(brLong.stdout), { lower: 'v0' }, 'a network name longer than a device name');
    t.match(run(ns, policy, ['--br=no-such-network-here', '--probe']).stderr, /--br=no-such-network-here names no network of the policy, and is not a device name/);
  });

  t.test('--config is refused when privileged', async (t) => {
    const ns = withVeth(t, 'pconfig');
    const r = run(ns, policyFile(''), ['--dev=v0', `--config=${policyFile(`allow all\n`)}`, '--probe']);
    t.equal(r.status, 1);
    t.match(r.stderr, /--config is refused when the helper runs with privileges/);
    t.same(ns.macvtaps(), []);
  });

  t.test('maintenance: a user lists, releases and collects only their own links', async (t) => {
    const ns = withVeth(t, 'pmaint');
    const policy = policyFile(`allow user ${USER} dev v0 netns ${ns.name}\n`);
    const mine = await holdAsUser(ns, 'qemu-net-helper-vepa', policy, ['--dev=v0']);
    t.teardown(() => mine.release());
    ns.ip('link', 'add', 'link', 'v0', 'name', 'rootvt0', 'type', 'macvtap');
    ns.ip('link', 'set', 'rootvt0', 'alias', 'qemu-net-helper/1 helper=qemu-net-helper-vepa uid=0 pid=1 start=1 created=1', 'group', String(0x51000001));
    const list = run(ns, policy, ['--list', '--json']);
    t.equal(list.status, 0, list.stderr);
    t.same(JSON.parse(list.stdout).map((r: { name: string }) => r.name), [mine.record.ifname], 'only the caller\'s link');
    const steal = run(ns, policy, ['--release=rootvt0']);
    t.match(steal.stderr, /rootvt0 belongs to uid 0, not to you \(uid 65534\); only its owner or root may release it/);
    const gc = run(ns, policy, ['--gc']);
    t.equal(gc.status, 0);
    t.ok(ns.macvtaps().includes('rootvt0'), 'root\'s stale link is not the user\'s to collect');
    const release = run(ns, policy, [`--release=${mine.record.ifname}`]);
    t.equal(release.status, 0, release.stderr);
    t.same(ns.macvtaps(), ['rootvt0']);
  });

  t.test('an unsafe policy file refuses everything, naming the path and the problem', async (t) => {
    const ns = withVeth(t, 'punsafe');
    const rule = `allow user ${USER} dev v0 netns ${ns.name}\n`;
    const owned = policyFile(rule);
    chownSync(owned, USER, USER);
    const groupWritable = policyFile(rule);
    chmodSync(groupWritable, 0o664);
    const link = `${dir}/link.conf`;
    symlinkSync(policyFile(rule), link);
    const syntax = policyFile(`allow user ${USER} dev v0 netns ${ns.name}\nallow user\n`);
    const cases: Array<[string, RegExp]> = [
      [owned, /owned by uid 65534|not owned by root|owner/],
      [groupWritable, /writable by (its )?group|group-writable|writable/],
      [link, /symbolic link|symlink/],
      [syntax, /policy-\d+\.conf:2/],
      [`${dir}/missing.conf`, /missing\.conf/],
    ];
    for (const [path, message] of cases) {
      const r = run(ns, path, ['--dev=v0', '--probe']);
      t.equal(r.status, 1, path);
      t.match(r.stderr, message, path);
      t.same(ns.macvtaps(), []);
    }
  });

  t.test('a hostile environment and process state change nothing', async (t) => {
    const ns = withVeth(t, 'phostile');
    const policy = policyFile(`allow user ${USER} dev v0 netns ${ns.name}\n`);
    const attacker = mkdtempSync('/tmp/qnh-attacker-');
    chmodSync(attacker, 0o777);
    t.teardown(() => rmSync(attacker, { recursive: true, force: true }));
    const payload = `${attacker}/payload.cjs`;
    writeFileSync(payload, `require('fs').writeFileSync('${attacker}/pwned', 'x')`, { mode: 0o644 });
    const envs: Array<[string, string[]]> = [
      ['NODE_OPTIONS --require', [`NODE_OPTIONS=--require ${payload}`]],
      ['NODE_OPTIONS --import', [`NODE_OPTIONS=--import ${payload}`]],
      ['NODE_V8_COVERAGE', [`NODE_V8_COVERAGE=${attacker}/cov`]],
      ['DEBUG=*', ['DEBUG=*', 'DEBUG_COLORS=1', 'NODE_DEBUG=net,fs']],
      ['libuv and friends', ['UV_THREADPOOL_SIZE=1024', 'UV_USE_IO_URING=1', `HOME=${attacker}`, `TMPDIR=${attacker}`, `OPENSSL_CONF=${attacker}/x.cnf`, `LD_PRELOAD=${attacker}/x.so`]],
      ['pkg variables', ['PKG_EXECPATH=PKG_INVOKE_NODEJS', `PKG_NATIVE_CACHE_PATH=${attacker}`]],
      ['PKG_EXECPATH=the helper', [`PKG_EXECPATH=${capNode}`]],
      ['a huge environment', Array.from({ length: 2000 }, (_, i) => `JUNK${i}=${'x'.repeat(60)}`)],
    ];
    for (const [what, env] of envs) {
      const r = run(ns, policy, ['--dev=v0', '--probe'], { env });
      t.equal(r.status, 0, `${what}: still works (${r.stderr.trim().slice(0, 200)})`);
      t.notMatch(r.stderr, /qemu-net-helper:\w+ /, `${what}: no debug output`);
    }
    t.same(readdirSync(attacker).sort(), ['payload.cjs'], 'nothing was written where the caller pointed');

    const states: Array<[string, string[]]> = [
      ['umask 000', ['sh', '-c', 'umask 000; exec "$0" "$@"']],
      ['fds 0-2 closed', ['sh', '-c', 'exec "$0" "$@" <&- >&- 2>&-']],
      ['a deleted working directory', ['sh', '-c', `mkdir -p ${attacker}/gone && cd ${attacker}/gone && rmdir ${attacker}/gone && exec "$0" "$@"`]],
      ['ulimit -n 24', ['sh', '-c', 'ulimit -n 24; exec "$0" "$@"']],
      ['ulimit -n 28', ['sh', '-c', 'ulimit -n 28; exec "$0" "$@"']],
      ['ulimit -n 12 (Node itself cannot start)', ['sh', '-c', 'ulimit -n 12; exec "$0" "$@"']],
    ];
    for (const [what, pre] of states) {
      const r = run(ns, policy, ['--dev=v0', '--probe'], { pre });
      // With stderr closed there is no line to read: the exit status speaks.
      if (what.includes('Node itself')) {
        // Node dies in its own start-up, before any line of ours runs: nothing can have been made.
        t.ok(r.status !== 0, `${what}: fails (${r.status ?? r.signal})`);
      } else {
        const clear = r.status === 0 || (r.status === 1 && (/^qemu-net-helper-vepa: [^\n]+\n$/.test(r.stderr) || what.startsWith('fds')));
        t.ok(clear, `${what}: succeeds or fails with one clear line (${r.status ?? r.signal}: ${r.stderr.trim().slice(0, 200)})`);
      }
      t.notMatch(r.stderr, /cannot delete/, `${what}: never unable to clean up`);
      t.same(ns.macvtaps(), [], `${what}: nothing left`);
    }
    t.notOk(existsSync(`${attacker}/pwned`));
    t.same(readdirSync('/dev').filter((n) => n.startsWith('.qemu-net-helper-')), [], 'no private node directory left in /dev');
  });

  t.test('signals: SIGTERM mid-run waits for the run to finish; SIGSTOP/SIGCONT change nothing', async (t) => {
    const ns = withVeth(t, 'psig');
    const policy = policyFile(`allow user ${USER} dev v0 netns ${ns.name}\n`);
    for (const step of ['created', 'tagged', 'opened'] as const) {
      let spawned: (pid: number) => void = () => {};
      const pid = new Promise<number>((resolve) => { spawned = resolve; });
      const call = holdAsUser(ns, 'qemu-net-helper-vepa', policy, ['--dev=v0'], [`--seam-fault=${step}:stop`], spawned);
      const helperPid = await pid;
      await waitStopped(helperPid);
      process.kill(helperPid, 'SIGTERM');
      process.kill(helperPid, 'SIGCONT');
      const r = await call;
      t.equal(r.record.lower, 'v0', `${step}: SIGTERM arrived while stopped; the run still completed`);
      await r.release();
      ns.ip('link', 'del', r.record.ifname);
    }
    t.same(ns.macvtaps(), []);
  });

  t.test('arguments: names that would slip past a rule are refused before anything else', async (t) => {
    const ns = withVeth(t, 'pargs');
    const policy = policyFile(`allow user ${USER} dev v0 netns ${ns.name}\n`);
    for (const dev of ['v0xxxxxxxxxxxxxxx', 'v0/..', '../v0', 'v0%d', 'v0 ', 'v0\n', '']) {
      const r = run(ns, policy, [`--dev=${dev}`, '--probe']);
      t.equal(r.status, 2, JSON.stringify(dev));
    }
    for (const args of [['--__proto__=x', '--dev=v0', '--probe'], ['--dev=v0', '--dev=v1', '--probe'], ['--dev=v0', '--fd=0x10'], ['--dev=v0', '--fd']]) {
      t.equal(run(ns, policy, args).status, 2, args.join(' '));
    }
    t.same(ns.macvtaps(), []);
  });

  t.test('a caller outside the policy cannot make a link even through QEMU\'s protocol', async (t) => {
    const ns = withVeth(t, 'pqemu');
    const err = await holdAsUser(ns, 'qemu-net-helper-vepa', policyFile(''), ['--dev=v0'])
      .then(async (r) => { await r.release(); return undefined; }, (e: HeldLinkError) => e);
    t.match(err?.message, /no rule in the policy allows uid 65534/);
    t.same(ns.macvtaps(), []);
  });
}
