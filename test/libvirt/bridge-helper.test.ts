// libvirt's unprivileged session (qemu:///session, Debian 12's libvirt 9.0)
// with the helpers as its bridge_helper (issue 14): ~/.config/libvirt/qemu.conf
// says `bridge_helper = "WRAPPER"`, a root-owned script that execs the
// helper (here: the file-capability node running the sources with a test
// policy; installed, it would be /usr/libexec/qemu-net-helper-passthrough
// itself). For <interface type='bridge'><source bridge='v0'/> libvirt runs
// `WRAPPER --use-vnet --br=v0 --fd=N` from its daemon, receives the tap fd
// and hands it to QEMU. No MAC is passed, so only passthru mode (which
// delivers any MAC) works; the vepa helper refuses. The link's recorded
// owner is the long-lived daemon: once no process holds its queue (after
// virsh destroy) and the hand-over grace has passed, root's collection, or
// the user's next request on the device, removes it.
// See docs/libvirt.md; the session plumbing is test/libvirt/session.ts.

import { existsSync, readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { boot, bridgeInterface, CreateError, devNodesOf, fdsTo, holdersOf, libvirtSkipReason, openSession, qemuOf, waitFor, type Session } from './session.ts';

const skip = libvirtSkipReason();
if (skip) t.plan(0, skip);
else {
  const s: Session = await openSession(t, 'lvbh');
  const policy = s.policy([
    `allow user ${s.user.name} dev v0 netns ${s.host.name} mode passthru`,
    `allow user ${s.user.name} dev v0 netns ${s.host.name}`,
    'pool lvpool dev v0',
    `allow user ${s.user.name} pool lvpool netns ${s.host.name}`,
    '',
  ].join('\n'));
  const argvLog = `${s.home}/bridge-helper.argv`;
  const statusFile = `${s.home}/bridge-helper.status`;
  const sh = (text: string) => text.split('\n').map((l) => l.replace(/^ {4}/, '')).join('\n').trimStart();
  // The recommended form: a root-owned script that execs the helper ("$@" is libvirt's --use-vnet --br=NAME --fd=N).
  const passthrough = `${s.dir}/bridge-helper-passthrough`;
  s.writeRootScript(passthrough, sh(`
    #!/bin/sh
    printf '%s\\n' "$*" >> ${argvLog}
    exec ${s.helperArgv('qemu-net-helper-passthrough', policy).join(' ')} "$@"
  `));
  // A pool: the wrapper names it, so whatever <source bridge='...'/> says (libvirt passes it as --br) is not used.
  const pooled = `${s.dir}/bridge-helper-pool`;
  s.writeRootScript(pooled, sh(`
    #!/bin/sh
    printf '%s\\n' "$*" >> ${argvLog}
    exec ${s.helperArgv('qemu-net-helper-passthrough', policy).join(' ')} --pool=@lvpool "$@"
  `));
  // The vepa helper, not exec'd, so that its exit status can be recorded.
  const vepa = `${s.dir}/bridge-helper-vepa`;
  s.writeRootScript(vepa, sh(`
    #!/bin/sh
    printf '%s\\n' "$*" >> ${argvLog}
    ${s.helperArgv('qemu-net-helper-vepa', policy).join(' ')} "$@"
    status=$?
    echo "$status" > ${statusFile}
    exit "$status"
  `));

  /** Points the session daemon at `wrapper`: qemu.conf is read when the daemon starts. */
  async function useBridgeHelper(wrapper: string): Promise<void> {
    s.writeQemuConf(`bridge_helper = "${wrapper}"\n`);
    await s.stopDaemon();
  }
  const daemonPid = () => s.processes().find((p) => p.comm === 'libvirtd')?.pid;
  const onlyLink = () => {
    const names = s.host.macvtaps();
    return names.length === 1 ? s.host.link(names[0]!) : undefined;
  };

  /** Root moves the tag's created= back 60 s (keeping the rest), as if the hand-over grace had passed. */
  function backdate(t: Test, name: string): void {
    const alias = String(s.host.link(name)?.ifalias ?? '');
    t.match(alias, /^qemu-net-helper\/1 .*created=\d+/, `${name} is tagged`);
    const older = alias.replace(/created=(\d+)/, (_, c: string) => `created=${Number(c) - 60}`);
    s.host.ip('link', 'set', 'dev', name, 'alias', older);
    t.equal(s.host.link(name)?.ifalias, older, 'the same tag, made 60 s earlier');
  }

  /** Boots a domain on the passthrough link the bridge_helper makes; checks the plumbing; destroys it. Returns the link's name and node. */
  async function bootThroughBridgeHelper(t: Test, bridge = 'v0'): Promise<{ name: string; device: string }> {
    const b = await boot(s, bridgeInterface(bridge));
    t.ok(b.pingOk, `the guest pings the peer through the passthrough link libvirt's bridge_helper made (${b.resultMs} ms from virsh create)`);
    t.equal(readFileSync(argvLog, 'utf8').trim().split('\n').at(-1)?.replace(/--fd=\d+$/, '--fd=N'), `--use-vnet --br=${bridge} --fd=N`, `libvirt ran the helper with --use-vnet --br=${bridge} --fd=N`);
    const link = onlyLink();
    t.match(link, { linkinfo: { info_kind: 'macvtap', info_data: { mode: 'passthru' } }, link: 'v0' }, 'one passthru macvtap on v0');
    const name = String(link?.ifname);
    const device = `/dev/tap${link?.ifindex}`;
    const daemon = daemonPid();
    t.match(String(link?.ifalias), new RegExp(`helper=qemu-net-helper-passthrough uid=${s.user.uid} pid=${daemon} `), 'its recorded owner is the session daemon, the socket\'s peer');
    t.equal(fdsTo(b.qemu.pid, device).length, 1, 'QEMU holds its one queue');
    t.same(holdersOf(s, device), [b.qemu.pid], 'and only QEMU: the daemon passed the fd on');
    t.match(s.virsh(['domiflist', b.name]).stdout, new RegExp(`${name}\\s+bridge\\s+${bridge}\\s+virtio`), `virsh domiflist: the helper's link, on "bridge" ${bridge}`);

    const destroyed = s.virsh(['destroy', b.name]);
    t.equal(destroyed.status, 0, `virsh destroy: ${destroyed.stderr}`);
    t.ok(await waitFor(() => qemuOf(s, b.name) === undefined, 15_000), 'its QEMU is gone');
    t.same(holdersOf(s, device), [], 'nobody holds the queue');
    t.same(s.host.macvtaps(), [name], 'the link is still there: libvirt cannot delete it (no CAP_NET_ADMIN), and its owner lives');
    const list = s.rootHelper(['--list', '--json']);
    t.match(JSON.parse(list.stdout), [{ name, mode: 'passthru', uid: s.user.uid, pid: daemon, state: 'alive' }], 'root\'s --list: alive, owned by the daemon');
    return { name, device };
  }

  t.test('bridge_helper = the passthrough helper: <interface type=\'bridge\'> pings; after destroy the link is collected; the next start works', async (t) => {
    await useBridgeHelper(passthrough);
    const first = await bootThroughBridgeHelper(t);
    backdate(t, first.name);
    const gc = s.rootHelper(['--gc']);
    t.equal(gc.status, 0, `root's --gc: ${gc.stderr}`);
    t.match(gc.stdout, new RegExp(`^removed ${first.name}: no process holds its queue \\(its owner pid \\d+ no longer uses it\\)$`, 'm'), 'root\'s collection removes it');
    t.same(s.host.macvtaps(), [], 'gone');
    t.ok(await waitFor(() => !existsSync(first.device), 5_000), `${first.device} is gone`);

    const second = await bootThroughBridgeHelper(t);
    t.not(second.device, first.device, 'a new link');
    // Without root's collection: the user's next request on v0 collects the unused link standing in its way.
    backdate(t, second.name);
    const third = await bootThroughBridgeHelper(t);
    t.not(third.device, second.device, 'a new link');
    t.notOk(existsSync(second.device), 'the request removed the unused one');
    // Within the grace the user need not wait: the link is theirs to release.
    const released = s.helper('qemu-net-helper-passthrough', policy, [`--release=${third.name}`]);
    t.equal(released.status, 0, `the user releases it at once: ${released.stderr}`);
    t.same(s.host.macvtaps(), [], 'gone');
    t.ok(await waitFor(() => !existsSync(third.device), 5_000), `${third.device} is gone`);
    t.same(devNodesOf(s), [], 'nothing under /dev is the user\'s');
  });

  t.test('bridge_helper = a wrapper that gives the passthrough helper a policy pool: the domain gets a free member', async (t) => {
    await useBridgeHelper(pooled);
    const link = await bootThroughBridgeHelper(t, 'lvpool');
    const released = s.helper('qemu-net-helper-passthrough', policy, [`--release=${link.name}`]);
    t.equal(released.status, 0, `the user releases it: ${released.stderr}`);
    t.same(s.host.macvtaps(), [], 'gone');
    t.ok(await waitFor(() => !existsSync(link.device), 5_000), `${link.device} is gone`);
  });

  t.test('bridge_helper = the vepa helper: refused, since libvirt does not pass the guest\'s MAC', async (t) => {
    await useBridgeHelper(vepa);
    const err = await boot(s, bridgeInterface('v0'), { timeoutMs: 60_000 }).then(
      (b) => {
        s.virsh(['destroy', b.name]);
        return undefined;
      },
      (e: unknown) => e,
    );
    t.ok(err instanceof CreateError, 'virsh create fails');
    const message = err instanceof CreateError ? err.stderr : String(err);
    t.match(message, /failed to communicate with bridge helper/, `libvirt reports the helper's failure: ${message.trim()}`);
    t.match(message, /qemu-net-helper-vepa: [^\n]*\bMAC\b/, 'the helper says the mode needs the guest\'s MAC');
    t.equal(existsSync(statusFile) ? readFileSync(statusFile, 'utf8').trim() : 'none', '1', 'the helper exited 1');
    t.same(s.host.macvtaps(), [], 'nothing was made');
  });
}
