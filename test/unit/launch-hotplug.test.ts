// qemu-net-launch attach/detach: their command line, and the pure parts of
// hotplug (QMP arguments, reading `info network`). The real thing runs in
// test/qemu/hotplug.test.ts.

import t from 'tap';
import { oneLine, UsageError } from '../../lib/errors.ts';
import { fdNames, nicArgs, parseInfoNetwork, tapFdsOf, tapNetdevArgs } from '../../lib/launch/hotplug.ts';
import { parseLaunchArgs } from '../../lib/launch/options.ts';

function usageError(argv: string[]): string {
  try {
    parseLaunchArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    return oneLine('qemu-net-launch', err);
  }
  throw new Error(`no error for ${argv.join(' ')}`);
}

t.test('attach and detach command lines', async (t) => {
  t.same(parseLaunchArgs(['attach', '--qmp=/run/q.sock', '-netdev', 'macvtap,id=h1,dev=v0,mode=vepa']), {
    action: 'attach', verbose: false, helperTemplate: ['/usr/libexec/{}'], qmp: '/run/q.sock', netdev: ['-netdev', 'macvtap,id=h1,dev=v0,mode=vepa'],
  });
  t.match(parseLaunchArgs(['attach', '--qmp', '/q', '--verbose', '--helper-dir=/opt/x', '--netdev', 'macvtap,id=a,dev=v0,mode=vepa']),
    { action: 'attach', verbose: true, qmp: '/q', helperTemplate: ['/opt/x/{}'], netdev: ['--netdev', 'macvtap,id=a,dev=v0,mode=vepa'] });
  t.same(parseLaunchArgs(['detach', '--qmp=/q', 'h1']), { action: 'detach', verbose: false, helperTemplate: ['/usr/libexec/{}'], qmp: '/q', id: 'h1', timeoutMs: 30_000 });
  t.match(parseLaunchArgs(['detach', '--timeout=5', '--qmp=/q', 'h1']), { timeoutMs: 5000 });
  const cases: Array<[string[], RegExp]> = [
    [['attach', '-netdev', 'macvtap,id=h1,dev=v0,mode=vepa'], /^qemu-net-launch: attach needs --qmp=SOCKET/],
    [['attach', '--qmp=/q'], /attach needs a netdev/],
    [['attach', '--qmp=/q', '-netdev', 'a', '-netdev', 'b'], /attach takes one netdev/],
    [['attach', '--qmp=/q', '--timeout=3', '-netdev', 'a'], /--timeout is for detach/],
    [['attach', '--qmp=/q', '--dry-run', '-netdev', 'a'], /unknown option "--dry-run"/],
    [['detach', '--qmp=/q'], /detach needs the netdev id/],
    [['detach', '--qmp=/q', 'a', 'b'], /detach takes one netdev id/],
    [['detach', '--qmp=/q', '1x'], /"1x" is not a QEMU id/],
    [['detach', '--qmp=/q', '--timeout=0', 'h1'], /--timeout="0" is not a whole number from 1 to 3600/],
    [['detach', `--qmp=/${'x'.repeat(107)}`, 'h1'], /cannot be a unix socket path/],
  ];
  for (const [argv, re] of cases) t.match(usageError(argv), re, argv.join(' '));
});

t.test('QMP arguments', async (t) => {
  const one = fdNames('h1', 1, 0);
  t.same(one, { taps: ['qnh-h1-tap0'], vhosts: [] });
  t.same(tapNetdevArgs('h1', one), { type: 'tap', id: 'h1', fds: 'qnh-h1-tap0', vhost: false });
  const two = fdNames('h1', 2, 2);
  t.same(tapNetdevArgs('h1', two), { type: 'tap', id: 'h1', fds: 'qnh-h1-tap0:qnh-h1-tap1', vhost: true, vhostfds: 'qnh-h1-vhost0:qnh-h1-vhost1' });
  t.same(nicArgs('h1', '52:54:00:00:00:01', 1), { driver: 'virtio-net-pci', id: 'h1-nic', netdev: 'h1', mac: '52:54:00:00:00:01' });
  t.same(nicArgs('h1', '52:54:00:00:00:01', 4), { driver: 'virtio-net-pci', id: 'h1-nic', netdev: 'h1', mac: '52:54:00:00:00:01', mq: true, vectors: 10 });
});

t.test('info network, as QEMU 7.2 prints it', async (t) => {
  const text = 'h1-nic: index=0,type=nic,model=virtio-net-pci,macaddr=9e:2b:ce:c4:1a:91\r\n \\ h1: index=0,type=tap,fd=12\r\nh2: index=0,type=tap,fd=15\r\nu: index=0,type=user,net=10.0.2.0,restrict=off\r\n';
  const entries = parseInfoNetwork(text);
  t.same(entries, [
    { name: 'h1-nic', type: 'nic', info: 'model=virtio-net-pci,macaddr=9e:2b:ce:c4:1a:91', nic: undefined },
    { name: 'h1', type: 'tap', info: 'fd=12', nic: 'h1-nic' },
    { name: 'h2', type: 'tap', info: 'fd=15', nic: undefined },
    { name: 'u', type: 'user', info: 'net=10.0.2.0,restrict=off', nic: undefined },
  ]);
  t.same(tapFdsOf(entries, 'h1'), [12]);
  t.same(tapFdsOf(entries, 'h2'), [15]);
  t.same(tapFdsOf(entries, 'u'), []);
  t.same(tapFdsOf(entries, 'nope'), []);
});
