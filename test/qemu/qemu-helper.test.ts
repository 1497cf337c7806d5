// Stock QEMU (Debian's qemu-system-x86) runs qemu-net-helper-vepa through
// -netdev tap,helper=... and accepts the fd it hands over.

import t from 'tap';
import { addVethPair, createNetns } from '../support/netns.ts';
import { VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import { PAUSED_MACHINE, QEMU, runQemuMonitor } from '../support/qemu.ts';

const skip = privilegedSkipReason(['ip', QEMU]);
if (skip) t.plan(0, skip);
else {
  const mac = '52:54:00:aa:01:01';

  t.test('QEMU starts with the helper-made macvtap as its tap backend', async (t) => {
    const ns = createNetns(t, 'qemu');
    addVethPair(ns);
    const helper = `${VEPA.join(' ')} --dev=v0 --mac=${mac}`;
    const run = await runQemuMonitor(ns, [
      ...PAUSED_MACHINE,
      '-netdev', `tap,id=n0,helper=${helper}`,
      '-device', `virtio-net-pci,netdev=n0,mac=${mac}`,
    ], ['info network', 'quit']);
    t.equal(run.code, 0, `QEMU exits cleanly (stderr: ${run.stderr})`);
    t.match(run.stdout, new RegExp(`virtio-net-pci\\.0: index=0,type=nic,model=virtio-net-pci,macaddr=${mac}`));
    t.match(run.stdout, /n0: index=0,type=tap,helper=.*qemu-net-helper-vepa\.ts --dev=v0/, 'the tap backend came from the helper');
    const links = ns.macvtaps();
    t.equal(links.length, 1, 'the helper made one macvtap');
    const link = ns.link(links[0]!);
    t.equal(link?.address, mac, 'with the MAC we asked for');
    t.equal(link?.linkinfo?.info_data?.mode, 'vepa');
    t.equal(link?.link, 'v0');
  });

  t.test('a failing helper makes QEMU fail with the helper\'s own message', async (t) => {
    const ns = createNetns(t, 'qemufail');
    addVethPair(ns);
    const run = await runQemuMonitor(ns, [
      ...PAUSED_MACHINE,
      '-netdev', `tap,id=n0,helper=${VEPA.join(' ')} --dev=nope0`,
      '-device', 'virtio-net-pci,netdev=n0',
    ], ['quit']);
    t.not(run.code, 0, 'QEMU refuses to start');
    t.match(run.stderr, /qemu-net-helper-vepa: there is no network device named nope0 in this network namespace; check the name with 'ip link'/);
    t.same(ns.macvtaps(), [], 'nothing was created');
  });
}
