// npm run demo: the main job, shown end to end, with no real NIC.
//
// In two throwaway network namespaces joined by a veth pair, stock QEMU
// runs qemu-net-helper-vepa through -netdev tap,helper=...; the helper
// makes a VEPA macvtap on the veth and hands QEMU its queue; a small guest
// (Debian cloud kernel + busybox) pings the veth peer through it.
// Everything the demo creates is deleted when it ends, also on Ctrl-C.

import { execFileSync } from 'node:child_process';
import { buildGuestImage, guestQemuArgs, QEMU_BINARY, runGuest } from './support/guest.ts';
import { VEPA } from './support/paths.ts';

const host = `qnh-demo-host-${process.pid}`;
const peer = `qnh-demo-peer-${process.pid}`;
const mac = '52:54:00:de:30:01';

function step(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

function run(argv: string[], show = true): string {
  if (show) process.stdout.write(`$ ${argv.join(' ')}\n`);
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
}

function cleanup(): void {
  for (const ns of [host, peer]) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // not created, or already gone
    }
  }
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('demo: needs root (it creates network namespaces); run it as root\n');
    return 1;
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { cleanup(); process.exit(130); });

  step('Two throwaway namespaces: "host" has veth v0, "peer" has v1 at 169.254.77.1');
  run(['ip', 'netns', 'add', host]);
  run(['ip', 'netns', 'add', peer]);
  run(['ip', '-n', host, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1', 'netns', peer]);
  run(['ip', '-n', host, 'link', 'set', 'v0', 'up']);
  run(['ip', '-n', peer, 'addr', 'add', '169.254.77.1/16', 'dev', 'v1']);
  run(['ip', '-n', peer, 'link', 'set', 'v1', 'up']);

  step('What the helper does, by hand: --probe creates the macvtap, opens its queue, prints the record, deletes it');
  process.stdout.write(run(['ip', 'netns', 'exec', host, ...VEPA, '--dev=v0', `--mac=${mac}`, '--probe']));

  step('Build (or reuse) the test guest: Debian cloud kernel + busybox initramfs');
  const image = await buildGuestImage({ log: (s) => process.stdout.write(`   ${s}\n`) });
  process.stdout.write(`   kernel ${image.kernelVersion}\n`);

  step('Stock QEMU runs the helper itself: -netdev tap,helper=...; the guest pings 169.254.77.1');
  const args = [
    ...guestQemuArgs(image, { netdevId: 'n0', mac, guestIp: '169.254.77.2/16', peerIp: '169.254.77.1' }),
    '-netdev', `tap,id=n0,helper=${VEPA.join(' ')} --dev=v0 --mac=${mac}`,
  ];
  process.stdout.write(`$ ip netns exec ${host} ${QEMU_BINARY} ... -netdev 'tap,id=n0,helper=${VEPA.join(' ')} --dev=v0 --mac=${mac}' ...\n`);
  const result = await runGuest(['ip', 'netns', 'exec', host, QEMU_BINARY, ...args], { timeoutMs: 120_000 });
  for (const line of result.console.split('\n')) {
    if (/PING|bytes from|packets transmitted|QNH-GUEST-RESULT/.test(line)) process.stdout.write(`   guest: ${line.trim()}\n`);
  }

  step('The macvtap outlives QEMU, but it is tagged with its owner (QEMU, now gone): stale, and --gc removes it');
  process.stdout.write(run(['ip', 'netns', 'exec', host, ...VEPA, '--list']));
  process.stdout.write(run(['ip', 'netns', 'exec', host, ...VEPA, '--gc']));
  process.stdout.write(run(['ip', '-n', host, '-br', 'link', 'show', 'type', 'macvtap']) || '(no macvtap left)\n');

  step(result.pingOk ? `Result: the guest reached its peer through the macvtap (${(result.resultMs / 1000).toFixed(1)} s from QEMU start)` : 'Result: the guest could NOT reach its peer');
  return result.pingOk ? 0 : 1;
}

main().then(
  (status) => { cleanup(); process.exitCode = status; },
  (err: unknown) => { cleanup(); process.stderr.write(`demo: ${(err as Error).message}\n`); process.exitCode = 1; },
);
