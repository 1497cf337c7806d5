// qemu-net-helper-vepa against the real kernel, in throwaway namespaces:
// what it creates (as the kernel reports it), the queue it hands over, a
// frame through that queue, QEMU's protocol, and no leftovers after failures.

import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { callHelper, HelperCallError } from '../../lib/client.ts';
import { AF_UNIX, IFF_NO_PI, IFF_TAP, IFF_VNET_HDR, SOCK_CLOEXEC, SOCK_STREAM } from '../../lib/constants.ts';
import * as libc from '../../lib/libc.ts';
import { receiveWithFds } from '../../lib/scm.ts';
import { readQueueInfo } from '../../lib/tap.ts';
import { captureOneFrame, testFrame } from '../support/capture.ts';
import { addVethPair, createNetns, type Netns } from '../support/netns.ts';
import { PASSTHROUGH, VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import { writeTapFrame } from '../support/tap-frames.ts';

const skip = privilegedSkipReason(['ip', 'tcpdump', 'setpriv']);
if (skip) t.plan(0, skip);
else {
  function vepaIn(ns: Netns, args: string[], timeoutMs = 15_000) {
    return callHelper({ command: [...ns.exec, ...VEPA], args, timeoutMs });
  }

  async function expectFailure(ns: Netns, args: string[]): Promise<HelperCallError> {
    try {
      const r = await vepaIn(ns, args);
      r.close();
    } catch (err) {
      if (err instanceof HelperCallError) return err;
      throw err;
    }
    throw new Error(`helper succeeded with ${args.join(' ')}`);
  }

  t.test('vepa: the kernel shows the link, the queue is its own, a frame reaches the wire', async (t) => {
    const ns = createNetns(t, 'vepa');
    addVethPair(ns);
    const mac = '52:54:00:aa:00:01';
    const r = await vepaIn(ns, ['--dev=v0', `--mac=${mac}`]);
    t.teardown(() => r.close());

    t.match(r.record, { lower: 'v0', mode: 'vepa', mac, queues: 1, vnetHdr: true, vhost: false, fds: ['tap'] });
    t.match(r.record.ifname, /^macvtap[0-9]+$/);
    t.equal(r.tapFds.length, 1);

    const link = ns.link(r.record.ifname);
    t.ok(link, 'link exists');
    t.equal(link?.ifindex, r.record.ifindex, 'ifindex matches the record');
    t.equal(link?.linkinfo?.info_kind, 'macvtap');
    t.equal(link?.linkinfo?.info_data?.mode, 'vepa');
    t.equal(link?.link, 'v0', 'lower device');
    t.equal(link?.address, mac);
    t.ok(link?.flags.includes('UP'), 'link is up');

    const q = readQueueInfo(r.tapFds[0]!);
    t.equal(q.name, r.record.ifname, 'TUNGETIFF names our link');
    t.equal(q.flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, 'tap, no_pi, vnet_hdr');

    const nonce = `qnh-${process.pid}-${Date.now()}`;
    const frame = testFrame(mac, 'ff:ff:ff:ff:ff:ff', nonce);
    const line = await captureOneFrame(ns, 'v1', `ether src ${mac} and ether proto 0x88b5`, () => {
      writeTapFrame(r.tapFds[0]!, frame);
    });
    t.match(line, new RegExp(`${mac} > ff:ff:ff:ff:ff:ff, ethertype Unknown \\(0x88b5\\)`), 'frame seen on the veth peer');
  });

  t.test('private mode and a chosen name', async (t) => {
    const ns = createNetns(t, 'priv');
    addVethPair(ns);
    const r = await vepaIn(ns, ['--dev=v0', '--mode=private', '--ifname=macvtapvm7_%d']);
    t.teardown(() => r.close());
    t.match(r.record.ifname, /^macvtapvm7_[0-9]+$/);
    t.equal(ns.link(r.record.ifname)?.linkinfo?.info_data?.mode, 'private');
    t.match(r.record.mac, /^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$/, 'generated MAC under QEMU prefix');
    t.equal(ns.link(r.record.ifname)?.address, r.record.mac);
  });

  t.test('--probe creates, reports and deletes', async (t) => {
    const ns = createNetns(t, 'probe');
    addVethPair(ns);
    const out = await runToEnd([...ns.exec, ...VEPA, '--dev=v0', '--probe', '--json']);
    t.equal(out.code, 0, out.stderr);
    const json = JSON.parse(out.stdout);
    t.match(json, { version: 1, lower: 'v0', mode: 'vepa', queues: 1, vnet_hdr: true, vhost: false, fds: ['tap'] });
    t.same(ns.macvtaps(), [], 'probe left no link');
  });

  // Helpers end with _exit(2) (runHelperAndExit): nothing written to stdout
  // or stderr may be lost, up to the last line of a DEBUG trace.
  t.test('a DEBUG trace and the output survive the immediate exit, to the last line', async (t) => {
    const ns = createNetns(t, 'trace');
    addVethPair(ns);
    const env = VEPA.indexOf('-i') + 1; // env -i PATH=... node helper.ts: add DEBUG after PATH
    const traced = [...VEPA.slice(0, env + 1), 'DEBUG=qemu-net-helper:*', ...VEPA.slice(env + 1)];
    const out = await runToEnd([...ns.exec, ...traced, '--dev=v0', '--probe', '--json']);
    t.equal(out.code, 0, out.stderr);
    t.match(JSON.parse(out.stdout), { lower: 'v0', fds: ['tap'] }, 'the whole record on stdout');
    const lines = out.stderr.trim().split('\n');
    t.ok(lines.length > 5, `a trace on stderr (${lines.length} lines)`);
    t.match(lines.at(-1), /qemu-net-helper:helper done: macvtap\d+$/, 'its last line is the end of the run');
  });

  t.test("QEMU's protocol without --mac: refused in vepa mode (the guest's MAC is never passed), not in passthru", async (t) => {
    const ns = createNetns(t, 'nomac');
    addVethPair(ns);
    addVethPair(ns, 'p0', 'p1');
    const [mine, theirs] = libc.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
    // libvirt's bridge_helper call: --use-vnet --br=NAME --fd=N, no MAC.
    const vepa = await runToEnd([...ns.exec, ...VEPA, '--use-vnet', '--br=v0', '--fd=3'], theirs);
    t.equal(vepa.code, 1);
    t.match(vepa.stderr, /^qemu-net-helper-vepa: no --mac: a vepa macvtap delivers frames only to its own MAC, and QEMU's helper protocol \(--fd\), which QEMU and libvirt's bridge_helper use, does not tell the helper the guest's; add --mac=MAC .*or use qemu-net-helper-passthrough/);
    t.same(ns.macvtaps(), [], 'nothing was made');
    const pass = await runToEnd([...ns.exec, ...PASSTHROUGH, '--use-vnet', '--br=p0', '--fd=3'], theirs);
    libc.closeQuietly(theirs);
    t.equal(pass.code, 0, pass.stderr);
    const msg = receiveWithFds(mine, 16, 4);
    libc.closeQuietly(mine, ...msg.fds);
    t.equal(msg.fds.length, 1, 'passthru delivers any MAC: the link is handed over');
    t.equal(ns.link(ns.macvtaps()[0]!)?.link, 'p0', '--br named the device');
  });

  t.test("QEMU's protocol: one zero byte, one fd, vnet header as asked", async (t) => {
    const ns = createNetns(t, 'qemu');
    addVethPair(ns);
    for (const useVnet of [true, false]) {
      const [mine, theirs] = libc.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
      // QEMU appends exactly these, in this order, after the user's options.
      const qemuTail = [...(useVnet ? ['--use-vnet'] : []), '--fd=3', '--br=br0'];
      const out = await runToEnd([...ns.exec, ...VEPA, '--dev=v0', '--mac=52:54:00:12:34:01', ...qemuTail], theirs);
      libc.closeQuietly(theirs);
      t.equal(out.code, 0, out.stderr);
      const msg = receiveWithFds(mine, 16, 4);
      libc.closeQuietly(mine);
      t.same([...msg.data], [0], 'one zero byte of data');
      t.equal(msg.fds.length, 1, 'exactly one fd');
      const q = readQueueInfo(msg.fds[0]!);
      t.match(q.name, /^macvtap[0-9]+$/);
      t.equal(Boolean(q.flags & IFF_VNET_HDR), useVnet, `IFF_VNET_HDR ${useVnet ? 'set' : 'clear'}`);
      libc.closeQuietly(...msg.fds);
      ns.ip('link', 'del', q.name);
    }
  });

  t.test('failures are one clear line, exit non-zero, and leave no link', async (t) => {
    const ns = createNetns(t, 'fail');
    addVethPair(ns);

    const noDev = await expectFailure(ns, ['--dev=nope0']);
    t.equal(noDev.exitCode, 1);
    t.match(noDev.reported, /^qemu-net-helper-vepa: there is no network device named nope0 .*; check the name with 'ip link'$/);

    const badMode = await expectFailure(ns, ['--dev=v0', '--mode=bridge']);
    t.equal(badMode.exitCode, 2);
    t.match(badMode.reported, /--mode="bridge" is not a mode qemu-net-helper-vepa provides; use one of: vepa, private/);

    ns.ip('link', 'add', 'link', 'v0', 'name', 'macvtapx', 'type', 'macvlan');
    const clash = await expectFailure(ns, ['--dev=v0', '--ifname=macvtapx']);
    ns.ip('link', 'del', 'macvtapx');
    t.equal(clash.exitCode, 1);
    t.match(clash.reported, /cannot create macvtapx: a link with that name already exists.*; choose another --ifname/);

    const squat = await expectFailure(ns, ['--dev=v0', '--ifname=v1']);
    t.equal(squat.exitCode, 2, 'a name outside the callers\' space is a usage error');
    t.match(squat.reported, /--ifname="v1" does not start with "macvtap"/);

    const longName = await expectFailure(ns, ['--dev=v0', '--ifname=abcdefghijklmnop']);
    t.equal(longName.exitCode, 2);
    t.match(longName.reported, /is 16 bytes long; the kernel allows at most 15/);

    for (const err of [noDev, badMode, clash, squat, longName]) {
      t.equal(err.stderr.trim().split('\n').length, 1, 'stderr is one line');
    }
    t.same(ns.macvtaps(), [], 'no macvtap left after the failures');
  });

  t.test('peer closed before the fd is sent: the link is deleted', async (t) => {
    const ns = createNetns(t, 'epipe');
    addVethPair(ns);
    const [mine, theirs] = libc.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
    libc.close(mine); // the other end is gone before the helper even starts
    const out = await runToEnd([...ns.exec, ...VEPA, '--dev=v0', '--socketpair=3'], theirs);
    libc.closeQuietly(theirs);
    t.equal(out.code, 1);
    t.match(out.stderr, /the other end closed its socket before the fd could be sent, so the link was deleted/);
    t.same(ns.macvtaps(), [], 'the created link was rolled back');
  });

  t.test('a reply fd that is not a connected unix stream socket is refused before anything is created', async (t) => {
    const ns = createNetns(t, 'badfd');
    addVethPair(ns);
    const cases: Array<[string, number | undefined, RegExp]> = [
      // Node reuses a closed low fd for its own epoll/io_uring/pipe fds at start-up:
      // none of them is a socket, so the check still refuses it.
      ['closed fd', undefined, /--fd=3 is not usable: fd 3 is not (open|a socket)/],
      ['a regular file', openSync('/etc/hostname', 'r'), /--fd=3 is not usable: fd 3 is not a socket/],
      ['a listening socket', listeningSocket(), /--fd=3 is not usable: fd 3 is a listening socket/],
      ['a datagram socket', libc.socketpair(AF_UNIX, 2 /* SOCK_DGRAM */ | SOCK_CLOEXEC)[0], /not a stream socket/],
    ];
    for (const [what, fd, message] of cases) {
      const out = await runToEnd([...ns.exec, ...VEPA, '--dev=v0', '--mac=52:54:00:12:34:02', '--fd=3'], fd);
      t.equal(out.code, 1, what);
      t.match(out.stderr, message, what);
    }
    // Standard streams are refused even when they are sockets (Node's stdio pipes are).
    for (const fd of [0, 1, 2]) {
      const out = await runToEnd([...ns.exec, ...VEPA, '--dev=v0', '--mac=52:54:00:12:34:02', `--fd=${fd}`]);
      t.equal(out.code, 2);
      t.match(out.stderr, new RegExp(`--fd=${fd} names standard (input|output|error), not a socket made for the helper`));
    }
    t.same(ns.macvtaps(), []);
  });

  t.test('a caller the policy does not allow is refused and nothing is created', async (t) => {
    const ns = createNetns(t, 'nonroot');
    addVethPair(ns);
    // An unprivileged run (plain node, no capabilities) may name its policy with --config.
    const dir = mkdtempSync('/tmp/qnh-policy-');
    chmodSync(dir, 0o755);
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(`${dir}/empty.conf`, '# nobody\n', { mode: 0o644 });
    const out = await runToEnd([...ns.exec, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...VEPA, '--dev=v0', '--probe', `--config=${dir}/empty.conf`]);
    t.equal(out.code, 1);
    t.match(out.stderr, /^qemu-net-helper-vepa: no rule in the policy allows uid 65534 the use of v0 in mode vepa[^\n]*; ask an administrator to allow it in the policy \(see net-helper.conf\(5\)\)\n$/);
    t.same(ns.macvtaps(), []);
  });

  t.test('several helpers at once on one device get distinct links', async (t) => {
    const ns = createNetns(t, 'many');
    addVethPair(ns);
    const results = await Promise.all(Array.from({ length: 8 }, () => vepaIn(ns, ['--dev=v0'], 30_000)));
    t.teardown(() => results.forEach((r) => r.close()));
    const names = new Set(results.map((r) => r.record.ifname));
    t.equal(names.size, 8, `eight distinct names: ${results.map((r) => r.record.ifname + '@' + r.record.ifindex).join(' ')}`);
    t.same(new Set(ns.macvtaps()), names, 'exactly those links exist');
  });
}

/** A unix stream socket in the listening state (bound to an abstract address). */
function listeningSocket(): number {
  const fd = libc.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const addr = Buffer.alloc(2 + 1 + 24);
  addr.writeUInt16LE(AF_UNIX, 0); // sun_family, then an abstract name (leading NUL)
  addr.write(`qnh-listen-${process.pid}`, 3);
  libc.bind(fd, addr);
  libc.listen(fd, 1);
  return fd;
}

/** Runs argv to completion; `fd3` (if given) becomes the child's fd 3. */
function runToEnd(argv: string[], fd3?: number | 'ignore'): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe'];
    if (fd3 !== undefined) stdio.push(fd3);
    const child = spawn(argv[0]!, argv.slice(1), { stdio });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });

  t.test('the client API releases what it received: release() closes the fds and deletes the link; a second release is refused', async (t) => {
    const ns = createNetns(t, 'apirel');
    addVethPair(ns);
    const r = await callHelper({ command: [...ns.exec, ...VEPA], args: ['--dev=v0'], timeoutMs: 30_000 });
    t.same(ns.macvtaps(), [r.record.ifname], 'the link exists');
    await r.release();
    t.same(ns.macvtaps(), [], 'release() deleted it');
    t.throws(() => readQueueInfo(r.tapFds[0]!), 'and its fds are closed');
    const again = await r.release().catch((e: HelperCallError) => e);
    t.ok(again instanceof HelperCallError, 'a second release fails');
    t.match((again as HelperCallError).message, new RegExp(`releasing ${r.record.ifname}: helper exited with status 1: .*is not a link made by qemu-net-helper`));
  });
}
