// Hotplug through the launcher: a real guest (test/support/guest.ts) boots
// under TCG with no NIC and a QMP socket, waiting for eth0;
//   qemu-net-launch attach --qmp=SOCK -netdev macvtap,id=h1,dev=v0,mode=vepa
// gives it one, and it pings the veth peer in another namespace through it.
//   qemu-net-launch detach --qmp=SOCK h1
// then removes NIC, netdev and link while QEMU keeps running. Attaches that
// fail (a bad key, a helper refusal, a duplicate netdev id, a duplicate
// device id) leave no link and no fd in QEMU.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import t from 'tap';
import { Qmp } from '../../lib/launch/qmp.ts';
import { decodeOwnerTag } from '../../lib/owner.ts';
import { buildGuestImage, guestQemuArgs, QEMU_BINARY } from '../support/guest.ts';
import { helperAction, listHelperLinks } from '../support/helper-actions.ts';
import { hostAndPeer, type Netns } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

const CLEAN_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
const HELPERS = `--helper-command=env -i PATH=${CLEAN_PATH} ${process.execPath} ${REPO}helpers/{}.ts`;

interface Run { code: number | null; stdout: string; stderr: string; pid: number | undefined }

/** Runs qemu-net-launch in `ns` (bounded). */
function launcher(ns: Netns, args: string[], timeoutMs = 90_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(ns.exec[0]!, [...ns.exec.slice(1), process.execPath, `${REPO}helpers/qemu-net-launch.ts`, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: CLEAN_PATH } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`qemu-net-launch ${args.join(' ')} did not finish in ${timeoutMs} ms: ${stderr}`)); }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr, pid: child.pid }); });
  });
}

const MACVTAP_MAJOR = Number(/^\s*(\d+) macvtap$/m.exec(readFileSync('/proc/devices', 'utf8'))?.[1] ?? -1);

/** The macvtap queues QEMU holds: fds of character devices with macvtap's major number. */
function tapFdsOf(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const st = statSync(`/proc/${pid}/fd/${fd}`);
      if (st.isCharacterDevice() && Math.floor(st.rdev / 256) % 4096 === MACVTAP_MAJOR) out.push(fd);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** A QMP command from the test itself (only while no launcher holds the socket: QEMU serves one client at a time). */
function qmpOnce(sock: string, name: string, args: Record<string, unknown> = {}): unknown {
  const q = Qmp.connect(sock, 10_000);
  try {
    return q.execute(name, args, { timeoutMs: 10_000 });
  } finally {
    q.close();
  }
}

const skip = privilegedSkipReason(['ip', QEMU_BINARY, 'apt-get', 'dpkg-deb']);
if (skip) t.plan(0, skip);
else {
  t.test('attach and detach a macvtap NIC on a running guest; failed attaches leave nothing', async (t) => {
    const image = await buildGuestImage();
    const { host } = hostAndPeer(t, 'hplug', '169.254.78.1/16');
    const dir = mkdtempSync('/tmp/qnh-hotplug-');
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const sock = `${dir}/qmp.sock`;

    const args = [
      ...guestQemuArgs(image, { netdevId: 'unused', mac: '52:54:00:00:00:01', guestIp: '169.254.78.2/16', peerIp: '169.254.78.1', noNic: true, waitForNicS: 240, hold: true }),
      '-global', 'virtio-net-pci.romfile=', // no iPXE ROM (not installed, not needed)
      '-device', 'virtio-rng-pci,id=taken-nic', // makes attach's device_add fail for netdev id "taken"
      '-qmp', `unix:${sock},server=on,wait=off`,
    ];
    const started = performance.now();
    let console = '';
    const qemu: ChildProcess = spawn(host.exec[0]!, [...host.exec.slice(1), QEMU_BINARY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let exited = false;
    const exit = new Promise<number | null>((resolve) => qemu.on('close', (code) => { exited = true; resolve(code); }));
    qemu.stdout!.setEncoding('utf8').on('data', (d: string) => { console += d.replace(/\r/g, ''); });
    qemu.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    t.teardown(async () => {
      if (!exited) qemu.kill('SIGKILL');
      await exit;
    });
    const pid = qemu.pid!;
    const until = async (what: RegExp, timeoutMs: number): Promise<void> => {
      const deadline = performance.now() + timeoutMs;
      while (!what.test(console)) {
        if (exited || performance.now() > deadline) throw new Error(`no ${what} on the guest's console (${exited ? 'QEMU exited' : `${timeoutMs} ms`}):\n${console.slice(-4000)}\n--- stderr ---\n${stderr}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    await until(/^QNH-GUEST-INFO: waiting for eth0$/m, 90_000);
    t.pass(`the guest boots without a NIC and waits for one (${Math.round(performance.now() - started)} ms)`);
    const attach = (netdev: string) => launcher(host, ['attach', `--qmp=${sock}`, HELPERS, '-netdev', netdev]);
    const nothingLeft = (what: string, links: string[] = []) => {
      t.same(host.macvtaps(), links, `${what}: no link left`);
      t.same(tapFdsOf(pid), [], `${what}: no queue fd left in QEMU`);
    };

    // Refused before anything is made: a bad key (exit 2, no helper ran), a helper's refusal.
    let r = await attach('macvtap,id=h1,dev=v0,mode=vepa,colour=blue');
    t.equal(r.code, 2, 'a bad key is a usage error');
    t.match(r.stderr, /^qemu-net-launch: -netdev macvtap,id=h1,dev=v0,mode=vepa,colour=blue: unknown key "colour"; the keys are /);
    nothingLeft('bad key');
    r = await attach('macvtap,id=h1,network=nosuch');
    t.equal(r.code, 1, `the helper refuses a network the policy does not define: ${r.stderr.trim()}`);
    t.match(r.stderr, /^qemu-net-launch: -netdev macvtap,id=h1,network=nosuch: /);
    nothingLeft('helper refusal');

    // QEMU refuses device_add (its id is taken): the netdev is removed again and the link released.
    r = await attach('macvtap,id=taken,dev=v0,mode=vepa');
    t.equal(r.code, 1, 'device_add refused');
    t.match(r.stderr, /QEMU at \S+ refused device_add: GenericError: Duplicate device ID 'taken-nic'/);
    nothingLeft('device_add refused');
    t.notMatch(String(qmpOnce(sock, 'human-monitor-command', { 'command-line': 'info network' })), /taken:/, 'netdev taken was removed again');

    // The real thing.
    r = await attach('macvtap,id=h1,dev=v0,mode=vepa');
    t.equal(r.code, 0, `attach: ${r.stderr.trim()}`);
    const m = /^h1: (\S+) on v0, mode vepa, mac ([0-9a-f:]{17}), 1 queue, vhost off; NIC h1-nic in QEMU pid (\d+)\n$/.exec(r.stdout);
    t.ok(m, `attach says what it made: ${r.stdout.trim()}`);
    const ifname = m?.[1] ?? '';
    t.equal(Number(m?.[3]), pid, 'the QEMU it talked to is ours');
    t.same(host.macvtaps(), [ifname], 'one link');
    t.equal(host.link(ifname)?.address, m?.[2]);
    t.equal(tapFdsOf(pid).length, 1, 'QEMU holds its queue');
    const tag = decodeOwnerTag(host.link(ifname)?.ifalias);
    t.ok(tag, 'the link is tagged');
    t.not(tag?.pid, pid, 'the recorded owner is the launcher (the peer of the helper\'s socket pair), which has exited');
    t.match(listHelperLinks(host), [{ name: ifname, state: 'stale' }], '--list shows it stale: its recorded owner is gone');
    const gc = helperAction(host, '--gc');
    t.equal(gc.code, 0, gc.stderr);
    t.same(host.macvtaps(), [ifname], '--gc keeps it: QEMU holds its queue');

    // A second netdev h1: QEMU refuses netdev_add; the fd it was given is closed again, the new link released.
    r = await attach('macvtap,id=h1,dev=v0,mode=vepa');
    t.equal(r.code, 1, 'netdev_add refused');
    t.match(r.stderr, /refused netdev_add: GenericError: Duplicate ID 'h1'/);
    t.same(host.macvtaps(), [ifname], 'duplicate id: only the first link is left');
    t.equal(tapFdsOf(pid).length, 1, 'duplicate id: QEMU holds only the first link\'s queue');

    await until(/^QNH-GUEST-RESULT: ping=(ok|fail)$/m, 240_000);
    t.match(console, /^QNH-GUEST-RESULT: ping=ok$/m, 'the guest pings the veth peer through the hot-plugged NIC');
    t.match(console, new RegExp(`^QNH-GUEST-INFO: eth0 mac=${m?.[2]} `, 'm'), 'the guest NIC has the macvtap\'s MAC');
    t.pass(`ping result ${Math.round(performance.now() - started)} ms after start`);

    const before = performance.now();
    r = await launcher(host, ['detach', `--qmp=${sock}`, '--timeout=60', HELPERS, 'h1']);
    t.equal(r.code, 0, `detach: ${r.stderr.trim()}`);
    t.equal(r.stdout, `h1: removed NIC h1-nic and netdev h1 from QEMU pid ${pid}, released ${ifname}\n`);
    t.pass(`detach took ${Math.round(performance.now() - before)} ms`);
    nothingLeft('detach');
    await until(/^QNH-GUEST-INFO: eth0 removed$/m, 30_000);
    t.equal(exited, false, 'QEMU still runs');
    t.match(qmpOnce(sock, 'query-status'), { status: 'running' }, 'and its guest too');
    r = await launcher(host, ['detach', `--qmp=${sock}`, HELPERS, 'h1']);
    t.equal(r.code, 1);
    t.match(r.stderr, /^qemu-net-launch: QEMU has no netdev h1; /, 'a second detach finds nothing');

    qmpOnce(sock, 'quit');
    const code = await Promise.race([exit, new Promise((r) => setTimeout(() => r('timeout'), 20_000))]);
    t.equal(code, 0, 'QEMU quits when told');
  });

  // Two queues, so that a multiqueue attach is tested against QEMU too. A
  // guest that never lets the NIC go (here: its CPU never runs, -S): detach
  // gives up after --timeout and leaves NIC, netdev and link as they were,
  // because QEMU still uses the queue; once QEMU is gone the link is stale
  // and root's --gc takes it.
  t.test('detach from a guest that never acknowledges the unplug leaves everything in place', async (t) => {
    const { host } = hostAndPeer(t, 'hpnoack', '169.254.79.1/16');
    const dir = mkdtempSync('/tmp/qnh-hotplug-');
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const sock = `${dir}/qmp.sock`;
    const qemu: ChildProcess = spawn(host.exec[0]!, [...host.exec.slice(1), QEMU_BINARY, '-nodefaults', '-no-user-config', '-machine', 'pc', '-accel', 'tcg',
      '-m', '64', '-display', 'none', '-S', '-global', 'virtio-net-pci.romfile=', '-qmp', `unix:${sock},server=on,wait=off`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let exited = false;
    const exit = new Promise<number | null>((resolve) => qemu.on('close', (code) => { exited = true; resolve(code); }));
    qemu.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    t.teardown(async () => {
      if (!exited) qemu.kill('SIGKILL');
      await exit;
    });
    const deadline = performance.now() + 30_000;
    for (;;) {
      try {
        statSync(sock);
        break;
      } catch {
        if (exited || performance.now() > deadline) throw new Error(`QEMU made no QMP socket: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    let r = await launcher(host, ['attach', `--qmp=${sock}`, HELPERS, '-netdev', 'macvtap,id=h2,dev=v0,mode=vepa,queues=2']);
    t.equal(r.code, 0, `attach to a stopped guest: ${r.stderr.trim()}`);
    const ifname = /^h2: (\S+) on v0, mode vepa, mac \S+, 2 queues, /.exec(r.stdout)?.[1] ?? '';
    t.ok(ifname, `two queues: ${r.stdout.trim()}`);
    t.same(host.macvtaps(), [ifname], 'one link');
    t.equal(tapFdsOf(qemu.pid!).length, 2, 'QEMU holds both queues');
    t.match(String(qmpOnce(sock, 'human-monitor-command', { 'command-line': 'info qtree' })), /mq = true/, 'the NIC was added with mq=on');
    const started = performance.now();
    r = await launcher(host, ['detach', `--qmp=${sock}`, '--timeout=2', HELPERS, 'h2']);
    const took = performance.now() - started;
    t.equal(r.code, 1, 'detach fails');
    t.equal(r.stderr, `qemu-net-launch: the guest did not release NIC h2-nic within 2 s (QEMU asked it through ACPI hotplug); netdev h2 and ${ifname} are left as they were; run detach again once the guest has let it go, or give it longer with --timeout=SECONDS\n`);
    t.ok(took >= 2000 && took < 30_000, `after the 2 s it was given (${Math.round(took)} ms)`);
    t.same(host.macvtaps(), [ifname], 'the link is still there');
    t.equal(tapFdsOf(qemu.pid!).length, 2, 'QEMU still holds its queues');
    t.match(String(qmpOnce(sock, 'human-monitor-command', { 'command-line': 'info network' })), /\bh2:/, 'and the netdev');
    const gc = helperAction(host, '--gc');
    t.equal(gc.code, 0, gc.stderr);
    t.same(host.macvtaps(), [ifname], '--gc keeps it while QEMU holds the queue');
    qemu.kill('SIGKILL');
    await exit;
    const after = helperAction(host, '--gc');
    t.equal(after.code, 0, after.stderr);
    t.same(host.macvtaps(), [], 'once QEMU is gone root\'s --gc collects it');
  });
}
