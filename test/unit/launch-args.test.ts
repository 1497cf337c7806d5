// qemu-net-launch's argument rewriting (lib/launch/qemu-options.ts, plan.ts,
// render.ts): every form, ids, ordering, QEMU's quoting, and an error for
// everything doubtful.

import t from 'tap';
import { oneLine, UsageError } from '../../lib/errors.ts';
import { HELPER_PROGRAMS } from '../../lib/helper/programs.ts';
import { helperOfMode, kernelModeName, LAUNCH_MODES, SHORTHANDS } from '../../lib/launch/helper-modes.ts';
import { planLaunch } from '../../lib/launch/plan.ts';
import { keyvalGet, parseKeyval, scanQemuArgs } from '../../lib/launch/qemu-options.ts';
import { renderQemuArgs, shorthandDevice, tapNetdev, vectorsFor, type MacvtapResult } from '../../lib/launch/render.ts';

const MAC1 = '52:54:00:00:00:01';
const MAC2 = '52:54:00:00:00:02';

/** A result as a helper would hand it over: `queues` tap fds from `first`, then as many vhost fds when `vhost`. */
function result(mac: string, queues = 1, first = 10, vhost = false): MacvtapResult {
  const tapFds = Array.from({ length: queues }, (_, i) => first + i);
  const vhostFds = vhost ? Array.from({ length: queues }, (_, i) => first + queues + i) : [];
  return { mac, tapFds, vhostFds };
}

/** Plans and renders with the given results. */
function rewrite(args: string[], results: MacvtapResult[]): string[] {
  return renderQemuArgs(planLaunch(args), results);
}

/** The UsageError planLaunch throws, as the one line a person reads. */
function planError(args: string[]): string {
  try {
    planLaunch(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    return oneLine('qemu-net-launch', err);
  }
  throw new Error(`no error for ${args.join(' ')}`);
}

t.test('QEMU option syntax', async (t) => {
  t.test('an implied first key, then key=value items', async (t) => {
    t.same(parseKeyval('macvtap,id=n0,dev=eth0', 'type'), {
      items: [{ key: 'type', value: 'macvtap' }, { key: 'id', value: 'n0' }, { key: 'dev', value: 'eth0' }],
      endsWithSeparator: false,
    });
    t.same(parseKeyval('type=macvtap,id=n0', 'type').items, [{ key: 'type', value: 'macvtap' }, { key: 'id', value: 'n0' }], 'the implied key may be written');
    t.same(parseKeyval('id=n0,macvtap', 'type').items, [{ key: 'id', value: 'n0' }, { key: 'macvtap', value: undefined }], 'only the first item is implied');
  });
  t.test(',, is a literal comma; a single comma separates', async (t) => {
    t.same(parseKeyval('virtio-net-pci,romfile=/a,,b,netdev=n0', 'driver').items,
      [{ key: 'driver', value: 'virtio-net-pci' }, { key: 'romfile', value: '/a,b' }, { key: 'netdev', value: 'n0' }]);
    t.same(parseKeyval('a,,b,c=d', 'driver').items, [{ key: 'driver', value: 'a,b' }, { key: 'c', value: 'd' }]);
    t.same(parseKeyval('x=a,,,y=b').items, [{ key: 'x', value: 'a,' }, { key: 'y', value: 'b' }]);
    t.same(parseKeyval('x=1=2').items, [{ key: 'x', value: '1=2' }], 'only the first = splits');
  });
  t.test('flags, empty values, trailing separators', async (t) => {
    t.same(parseKeyval('e1000,mq', 'driver').items, [{ key: 'driver', value: 'e1000' }, { key: 'mq', value: undefined }]);
    t.same(parseKeyval('x=').items, [{ key: 'x', value: '' }]);
    t.same(parseKeyval('a=b,'), { items: [{ key: 'a', value: 'b' }], endsWithSeparator: true });
    t.same(parseKeyval('a=b,,'), { items: [{ key: 'a', value: 'b,' }], endsWithSeparator: false });
    t.same(parseKeyval(''), { items: [], endsWithSeparator: false });
  });
  t.test('keyvalGet takes the last value, as QEMU does; a flag reads as on', async (t) => {
    const kv = parseKeyval('d,mac=a,mac=b,mq', 'driver');
    t.equal(keyvalGet(kv, 'mac'), 'b');
    t.equal(keyvalGet(kv, 'mq'), 'on');
    t.equal(keyvalGet(kv, 'netdev'), undefined);
  });
});

t.test('finding options as QEMU reads its argv', async (t) => {
  const opts = scanQemuArgs(['-S', '-append', '-netdev macvtap,id=x', 'disk.img', '--netdev', 'user,id=u', '-nodefaults', '-m', '256', '-device']);
  t.same(opts.map((o) => [o.index, o.name, o.spelling, o.value]), [
    [0, 'S', '-S', undefined],
    [1, 'append', '-append', '-netdev macvtap,id=x'],
    [4, 'netdev', '--netdev', 'user,id=u'],
    [6, 'nodefaults', '-nodefaults', undefined],
    [7, 'm', '-m', '256'],
    [9, 'device', '-device', undefined],
  ], 'arguments are never options; positional words are skipped; a missing last argument is undefined');
  const words = scanQemuArgs(['-append', '-net', '-net', 'vepa,dev=eth0']);
  t.same(words.map((o) => o.name), ['append', 'net'], "-append takes '-net' as its argument; the next -net is an option");
});

t.test('-netdev macvtap: each way to name the device, and which helper runs', async (t) => {
  const cases: Array<[string, string, string[]]> = [
    ['macvtap,id=n0,dev=eth0,mode=vepa', 'qemu-net-helper-vepa', ['--dev=eth0', '--mode=vepa']],
    ['macvtap,id=n0,dev=eth0,mode=private', 'qemu-net-helper-vepa', ['--dev=eth0', '--mode=private']],
    ['macvtap,id=n0,dev=eth0,mode=bridge', 'qemu-net-helper-bridge', ['--dev=eth0', '--mode=bridge']],
    ['macvtap,id=n0,dev=eth0,mode=passthrough', 'qemu-net-helper-passthrough', ['--dev=eth0', '--mode=passthru']],
    ['macvtap,id=n0,dev=eth0,mode=passthru', 'qemu-net-helper-passthrough', ['--dev=eth0', '--mode=passthru']],
    ['macvtap,id=n0,network=lan', 'qemu-net-helper-vepa', ['--network=lan']],
    ['macvtap,id=n0,network=lan,mode=bridge', 'qemu-net-helper-bridge', ['--network=lan', '--mode=bridge']],
    ['macvtap,id=n0,pool=vfs', 'qemu-net-helper-passthrough', ['--pool=@vfs']],
    ['macvtap,id=n0,pool=vfs,mode=passthrough', 'qemu-net-helper-passthrough', ['--pool=@vfs', '--mode=passthru']],
    ['macvtap,id=n0,pf=enp3s0f0', 'qemu-net-helper-passthrough', ['--pf=enp3s0f0']],
    ['type=macvtap,id=n0,dev=eth0,mode=vepa', 'qemu-net-helper-vepa', ['--dev=eth0', '--mode=vepa']],
    ['macvtap,mode=vepa,dev=eth0,id=n0', 'qemu-net-helper-vepa', ['--dev=eth0', '--mode=vepa']],
  ];
  for (const [text, helper, helperArgs] of cases) {
    const plan = planLaunch(['-netdev', text]);
    t.equal(plan.requests.length, 1, text);
    t.match(plan.requests[0], { id: 'n0', form: 'netdev', index: 0, helper, helperArgs, queues: 1, mac: undefined, nic: undefined, written: `-netdev ${text}` }, text);
  }
});

t.test('which helper makes which mode comes from the helper programs', async (t) => {
  t.same(LAUNCH_MODES, ['vepa', 'private', 'bridge', 'passthrough'], 'every mode some helper makes, passthru spelled out');
  for (const mode of LAUNCH_MODES) {
    const helper = helperOfMode(mode);
    t.ok(helper.modes.includes(kernelModeName(mode)), `${helper.name} makes ${mode}`);
    t.equal(planLaunch(['-netdev', `macvtap,id=n0,dev=eth0,mode=${mode}`]).requests[0]!.helper, helper.name, `mode=${mode} runs ${helper.name}`);
  }
  t.same(Object.values(SHORTHANDS).map((s) => s.helper), HELPER_PROGRAMS, 'one -net shorthand a helper');
  for (const [name, s] of Object.entries(SHORTHANDS)) t.same(s.modes.map(kernelModeName), s.helper.modes, `-net ${name} makes its helper's modes`);
  t.equal(planError(['-net', 'vepa,pool=vfs']), 'qemu-net-launch: -net vepa,pool=vfs: pool= is only for passthrough macvtaps; use mode=passthrough (or -net passthrough), or name one device with dev=');
});

t.test('-netdev macvtap: queues, vhost, mac and ifname become helper options in a fixed order', async (t) => {
  const plan = planLaunch(['-netdev', 'macvtap,id=n0,vhost=try,queues=4,ifname=macvtapvm1_%d,mac=52:54:00:AB:CD:EF,mode=vepa,dev=eth0']);
  t.same(plan.requests[0]!.helperArgs, ['--dev=eth0', '--mode=vepa', '--mac=52:54:00:ab:cd:ef', '--ifname=macvtapvm1_%d', '--queues=4', '--vhost=try']);
  t.equal(plan.requests[0]!.queues, 4);
  t.equal(plan.requests[0]!.mac, '52:54:00:ab:cd:ef', 'MACs are lower case, as the record has them');
  for (const v of ['on', 'off', 'try']) t.same(planLaunch(['-netdev', `macvtap,id=n0,dev=eth0,mode=vepa,vhost=${v}`]).requests[0]!.helperArgs, ['--dev=eth0', '--mode=vepa', `--vhost=${v}`]);
  t.same(planLaunch(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,queues=256']).requests[0]!.helperArgs, ['--dev=eth0', '--mode=vepa', '--queues=256']);
  t.same(planLaunch(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,vlan=100,allmulti=off']).requests[0]!.helperArgs, ['--dev=eth0', '--mode=vepa', '--vlan=100', '--allmulti=off'], 'vlan and allmulti');
  t.throws(() => planLaunch(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,vlan=0']), /vlan=0 is not a VLAN id from 1 to 4094/);
  t.throws(() => planLaunch(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,allmulti=maybe']), /allmulti=maybe is not on or off/);
  t.same(planLaunch(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,ifname=macvtapguest1']).requests[0]!.helperArgs, ['--dev=eth0', '--mode=vepa', '--ifname=macvtapguest1']);
});

t.test('-netdev macvtap becomes -netdev tap with the fds, as the record says', async (t) => {
  const args = ['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-device', `virtio-net-pci,netdev=n0,mac=${MAC1}`];
  t.same(rewrite(args, [result(MAC1, 1, 20)]), ['-netdev', 'tap,id=n0,fd=20,vhost=off', '-device', `virtio-net-pci,netdev=n0,mac=${MAC1}`], 'one queue: fd=, vhost=off');
  const mq = ['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,queues=2', '-device', `virtio-net-pci,netdev=n0,mac=${MAC1}`];
  t.same(rewrite(mq, [result(MAC1, 2, 20)])[1], 'tap,id=n0,fds=20:21,vhost=off', 'two queues: fds=a:b');
  t.same(rewrite(mq, [result(MAC1, 2, 20, true)])[1], 'tap,id=n0,fds=20:21,vhost=on,vhostfds=22:23', 'vhost: vhost=on with one vhost fd per queue');
  t.same(rewrite(args, [result(MAC1, 1, 20, true)])[1], 'tap,id=n0,fd=20,vhost=on,vhostfd=21', 'one queue with vhost: vhostfd=');
  t.equal(tapNetdev('x', result(MAC1, 3, 5, true)), 'tap,id=x,fds=5:6:7,vhost=on,vhostfds=8:9:10');
  t.throws(() => tapNetdev('x', { mac: MAC1, tapFds: [3, 4], vhostFds: [5] }), /2 tap fds but 1 vhost fds/);
  t.throws(() => tapNetdev('x', { mac: MAC1, tapFds: [], vhostFds: [] }), /no tap fds/);
});

t.test('the NIC that uses the netdev gets the macvtap\'s MAC', async (t) => {
  t.test('mac= taken from the NIC and passed to the helper', async (t) => {
    const plan = planLaunch(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-device', 'virtio-net-pci,mac=52:54:00:AA:00:01,netdev=n0']);
    t.equal(plan.requests[0]!.mac, '52:54:00:aa:00:01');
    t.same(plan.requests[0]!.helperArgs, ['--dev=eth0', '--mode=vepa', '--mac=52:54:00:aa:00:01']);
    t.same(renderQemuArgs(plan, [result('52:54:00:aa:00:01')])[3], 'virtio-net-pci,mac=52:54:00:AA:00:01,netdev=n0', 'the NIC is left as written');
  });
  t.test('the helper\'s MAC added to a NIC without one', async (t) => {
    const out = rewrite(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-device', 'virtio-net-pci,netdev=n0,romfile='], [result(MAC1)]);
    t.equal(out[3], `virtio-net-pci,netdev=n0,romfile=,mac=${MAC1}`);
  });
  t.test('the same MAC on the netdev and the NIC is fine; two different ones are an error', async (t) => {
    const plan = planLaunch(['-netdev', `macvtap,id=n0,dev=eth0,mode=vepa,mac=${MAC1.toUpperCase()}`, '-device', `virtio-net-pci,netdev=n0,mac=${MAC1}`]);
    t.same(plan.requests[0]!.helperArgs, ['--dev=eth0', '--mode=vepa', `--mac=${MAC1}`]);
    t.match(planError(['-netdev', `macvtap,id=n0,dev=eth0,mode=vepa,mac=${MAC1}`, '-device', `virtio-net-pci,netdev=n0,mac=${MAC2}`]),
      /^qemu-net-launch: -netdev macvtap,id=n0,dev=eth0,mode=vepa,mac=52:54:00:00:00:01 asks for mac=52:54:00:00:00:01 but its NIC \(-device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02\) has 52:54:00:00:00:02; give the MAC once/);
  });
  t.test('the netdev\'s mac= is given to a NIC without one', async (t) => {
    const out = rewrite(['-netdev', `macvtap,id=n0,dev=eth0,mode=vepa,mac=${MAC1}`, '-device', 'e1000,netdev=n0'], [result(MAC1)]);
    t.equal(out[3], `e1000,netdev=n0,mac=${MAC1}`);
  });
  t.test('a NIC\'s bad MAC is refused before anything runs', async (t) => {
    t.match(planError(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-device', 'virtio-net-pci,netdev=n0,mac=01:00:5e:00:00:01']), /mac=01:00:5e:00:00:01 is a multicast address/);
  });
  t.test('only the NIC of this netdev is touched', async (t) => {
    const args = ['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-device', 'virtio-net-pci,netdev=other', '-netdev', 'user,id=other', '-device', 'virtio-net-pci,netdev=n0'];
    const out = rewrite(args, [result(MAC1)]);
    t.same(out, ['-netdev', 'tap,id=n0,fd=10,vhost=off', '-device', 'virtio-net-pci,netdev=other', '-netdev', 'user,id=other', '-device', `virtio-net-pci,netdev=n0,mac=${MAC1}`]);
  });
  t.test('a netdev no NIC uses is still rewritten (a NIC may be added later)', async (t) => {
    const plan = planLaunch(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa']);
    t.equal(plan.requests[0]!.nic, undefined);
    t.same(renderQemuArgs(plan, [result(MAC1)]), ['-netdev', 'tap,id=n0,fd=10,vhost=off']);
  });
  t.test('JSON -device', async (t) => {
    const out = rewrite(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,queues=2', '-device', '{"driver":"virtio-net-pci","netdev":"n0","id":"nic0"}'], [result(MAC1, 2)]);
    t.same(JSON.parse(out[3]!), { driver: 'virtio-net-pci', netdev: 'n0', id: 'nic0', mac: MAC1, mq: true, vectors: 6 });
    const plan = planLaunch(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-device', `{"driver":"virtio-net-pci","netdev":"n0","mac":"${MAC2}"}`]);
    t.equal(plan.requests[0]!.mac, MAC2, 'its mac goes to the helper');
    t.equal(renderQemuArgs(plan, [result(MAC2)])[3], `{"driver":"virtio-net-pci","netdev":"n0","mac":"${MAC2}"}`, 'left as written when nothing is added');
  });
  t.test('legacy -net nic,netdev=ID gets macaddr=', async (t) => {
    const out = rewrite(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-net', 'nic,model=virtio,netdev=n0'], [result(MAC1)]);
    t.equal(out[3], `nic,model=virtio,netdev=n0,macaddr=${MAC1}`);
    t.equal(planLaunch(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-net', `nic,netdev=n0,macaddr=${MAC2}`]).requests[0]!.mac, MAC2);
  });
  t.test('two NICs on one netdev are refused', async (t) => {
    t.match(planError(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-device', 'virtio-net-pci,netdev=n0', '-device', 'e1000,netdev=n0']),
      /^qemu-net-launch: 2 NICs use netdev n0; a netdev serves one NIC/);
  });
});

t.test('several queues: mq=on and vectors=2N+2 on a virtio NIC unless given', async (t) => {
  t.equal(vectorsFor(1), 4);
  t.equal(vectorsFor(4), 10);
  const mq = (device: string, queues = 4) => rewrite(['-netdev', `macvtap,id=n0,dev=eth0,mode=vepa,queues=${queues}`, '-device', device], [result(MAC1, queues)])[3];
  t.equal(mq('virtio-net-pci,netdev=n0'), `virtio-net-pci,netdev=n0,mac=${MAC1},mq=on,vectors=10`);
  t.equal(mq('virtio-net,netdev=n0'), `virtio-net,netdev=n0,mac=${MAC1},mq=on,vectors=10`, 'the virtio-net alias');
  t.equal(mq('virtio-net-pci-non-transitional,netdev=n0'), `virtio-net-pci-non-transitional,netdev=n0,mac=${MAC1},mq=on,vectors=10`);
  t.equal(mq('virtio-net-pci,netdev=n0,mq=off'), `virtio-net-pci,netdev=n0,mq=off,mac=${MAC1},vectors=10`, 'an explicit mq= is respected');
  t.equal(mq('virtio-net-pci,netdev=n0,vectors=4'), `virtio-net-pci,netdev=n0,vectors=4,mac=${MAC1},mq=on`, 'explicit vectors= are respected');
  t.equal(mq('virtio-net-pci,netdev=n0,mq'), `virtio-net-pci,netdev=n0,mq,mac=${MAC1},vectors=10`, 'mq as a flag counts');
  t.equal(mq('virtio-net-device,netdev=n0'), `virtio-net-device,netdev=n0,mac=${MAC1},mq=on`, 'no vectors off PCI');
  t.equal(mq('e1000,netdev=n0'), `e1000,netdev=n0,mac=${MAC1}`, 'nothing but the MAC for a NIC without multiqueue');
  t.equal(mq('virtio-net-pci,netdev=n0', 1), `virtio-net-pci,netdev=n0,mac=${MAC1}`, 'one queue: nothing about queues');
});

t.test('QEMU quoting in NIC options survives, and appending respects it', async (t) => {
  const out = (device: string) => rewrite(['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-device', device], [result(MAC1)])[3];
  t.equal(out('virtio-net-pci,romfile=/x,,y.rom,netdev=n0'), `virtio-net-pci,romfile=/x,,y.rom,netdev=n0,mac=${MAC1}`);
  t.equal(out('virtio-net-pci,netdev=n0,'), `virtio-net-pci,netdev=n0,mac=${MAC1}`, 'a trailing separator is not doubled (that would escape it)');
  t.equal(out('virtio-net-pci,netdev=n0,romfile=a,,'), `virtio-net-pci,netdev=n0,romfile=a,,,mac=${MAC1}`, 'an escaped comma at the end is kept');
  t.same(parseKeyval(out('virtio-net-pci,netdev=n0,romfile=a,,')!, 'driver').items.map((i) => [i.key, i.value]),
    [['driver', 'virtio-net-pci'], ['netdev', 'n0'], ['romfile', 'a,'], ['mac', MAC1]], 'QEMU reads back what was meant');
  t.same(planLaunch(['-netdev', 'macvtap,id=n0,dev=a,,b,mode=vepa']).requests[0]!.helperArgs, ['--dev=a,b', '--mode=vepa'], 'a value with ,, reaches the helper unescaped');
});

t.test('the -net shorthands', async (t) => {
  t.test('-net vepa,dev=eth0 adds a netdev and a virtio NIC in its place', async (t) => {
    const args = ['-m', '256', '-net', 'vepa,dev=eth0', '-S'];
    const plan = planLaunch(args);
    t.match(plan.requests[0], { id: 'vepa0', form: 'net', helper: 'qemu-net-helper-vepa', helperArgs: ['--dev=eth0'], nic: undefined });
    t.same(renderQemuArgs(plan, [result(MAC1, 1, 7)]), ['-m', '256', '-netdev', 'tap,id=vepa0,fd=7,vhost=off', '-device', `virtio-net-pci,netdev=vepa0,mac=${MAC1}`, '-S']);
  });
  t.test('each shorthand runs its helper', async (t) => {
    t.match(planLaunch(['-net', 'bridge-macvtap,dev=eth0']).requests[0], { id: 'bridge-macvtap0', helper: 'qemu-net-helper-bridge', helperArgs: ['--dev=eth0'] });
    t.match(planLaunch(['-net', 'passthrough,pf=enp3s0f0']).requests[0], { id: 'passthrough0', helper: 'qemu-net-helper-passthrough', helperArgs: ['--pf=enp3s0f0'] });
    t.match(planLaunch(['-net', 'passthrough,pool=vfs']).requests[0], { helperArgs: ['--pool=@vfs'] });
    t.match(planLaunch(['-net', 'vepa,network=lan']).requests[0], { helper: 'qemu-net-helper-vepa', helperArgs: ['--network=lan'] });
    t.match(planLaunch(['-net', 'vepa,dev=eth0,mode=private']).requests[0], { helperArgs: ['--dev=eth0', '--mode=private'] });
    t.match(planLaunch(['-net', 'bridge-macvtap,dev=eth0,mode=bridge']).requests[0], { helperArgs: ['--dev=eth0', '--mode=bridge'] });
    t.match(planLaunch(['-net', 'passthrough,dev=eth0,mode=passthru']).requests[0], { helperArgs: ['--dev=eth0', '--mode=passthru'] });
  });
  t.test('queues, vhost and mac work as for -netdev macvtap', async (t) => {
    const plan = planLaunch(['-net', `vepa,dev=eth0,queues=2,vhost=on,mac=${MAC2}`]);
    t.same(plan.requests[0]!.helperArgs, ['--dev=eth0', `--mac=${MAC2}`, '--queues=2', '--vhost=on']);
    t.same(renderQemuArgs(plan, [result(MAC2, 2, 30, true)]), ['-netdev', 'tap,id=vepa0,fds=30:31,vhost=on,vhostfds=32:33', '-device', `virtio-net-pci,netdev=vepa0,mac=${MAC2},mq=on,vectors=6`]);
    t.equal(shorthandDevice('x', result(MAC1)), `virtio-net-pci,netdev=x,mac=${MAC1}`);
  });
  t.test('generated ids never collide with the user\'s, and count per shorthand', async (t) => {
    const args = ['-netdev', 'user,id=vepa0', '-net', 'vepa,dev=a', '-nic', 'user,id=vepa2', '-net', 'vepa,dev=b', '-net', 'bridge-macvtap,dev=c', '-net', 'nic,name=vepa3', '-net', 'vepa,dev=d', '-netdev', '{"type":"user","id":"vepa4"}', '-net', 'vepa,dev=e'];
    t.same(planLaunch(args).requests.map((r) => r.id), ['vepa1', 'vepa5', 'bridge-macvtap0', 'vepa6', 'vepa7']);
  });
  t.test('an explicit id', async (t) => {
    t.same(rewrite(['-net', 'vepa,id=lan0,dev=eth0'], [result(MAC1)]), ['-netdev', 'tap,id=lan0,fd=10,vhost=off', '-device', `virtio-net-pci,netdev=lan0,mac=${MAC1}`]);
    t.same(planLaunch(['-net', 'vepa,dev=a', '-net', 'vepa,id=vepa0,dev=b']).requests.map((r) => r.id), ['vepa1', 'vepa0'], 'a generated id avoids an explicit one that comes later');
  });
  t.test('a shorthand adds its own NIC: a -device on its id is refused', async (t) => {
    t.match(planError(['-net', 'vepa,id=lan0,dev=eth0', '-device', 'e1000,netdev=lan0']),
      /^qemu-net-launch: -net vepa,id=lan0,dev=eth0 adds its own NIC, but -device e1000,netdev=lan0 also uses netdev lan0; use -netdev macvtap,id=lan0,\.\.\. with your -device instead$/);
  });
  t.test('a mode the shorthand does not make is refused', async (t) => {
    t.match(planError(['-net', 'vepa,dev=eth0,mode=bridge']), /-net vepa does not make bridge macvtaps; leave mode= out, or use -netdev macvtap,\.\.\.,mode=bridge/);
    t.match(planError(['-net', 'bridge-macvtap,dev=eth0,mode=vepa']), /-net bridge-macvtap does not make vepa macvtaps/);
    t.match(planError(['-net', 'passthrough,dev=eth0,mode=private']), /-net passthrough does not make private macvtaps/);
    t.match(planError(['-net', 'vepa,pool=vfs']), /pool= is only for passthrough macvtaps/);
    t.match(planError(['-net', 'bridge-macvtap,pf=eth0']), /pf= is only for passthrough macvtaps/);
  });
  t.test('QEMU\'s own -net types are left alone', async (t) => {
    for (const net of ['nic', 'user', 'tap,helper=/usr/lib/qemu/qemu-bridge-helper', 'bridge,br=br0', 'none']) {
      t.same(planLaunch(['-net', net]).requests, [], `-net ${net}`);
    }
  });
});

t.test('everything else is untouched and in order', async (t) => {
  const args = [
    'disk.img', '-S', '-append', '-net vepa,dev=eth0 console=ttyS0', '-name', 'guest one', '-netdev', 'user,id=u0',
    '--netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-device', 'virtio-net-pci,netdev=u0', '-netdev', 'tap,id=t0,helper=/x --dev=eth1',
    '-net', 'vepa,dev=eth1', '-device', 'virtio-net-pci,netdev=n0', '-nodefaults', '-netdev', 'bridge,id=b0,br=br0', '-kernel', '-net',
  ];
  const out = rewrite(args, [result(MAC1, 1, 11), result(MAC2, 1, 12)]);
  t.same(out, [
    'disk.img', '-S', '-append', '-net vepa,dev=eth0 console=ttyS0', '-name', 'guest one', '-netdev', 'user,id=u0',
    '--netdev', 'tap,id=n0,fd=11,vhost=off', '-device', 'virtio-net-pci,netdev=u0', '-netdev', 'tap,id=t0,helper=/x --dev=eth1',
    '-netdev', 'tap,id=vepa0,fd=12,vhost=off', '-device', `virtio-net-pci,netdev=vepa0,mac=${MAC2}`,
    '-device', `virtio-net-pci,netdev=n0,mac=${MAC1}`, '-nodefaults', '-netdev', 'bridge,id=b0,br=br0', '-kernel', '-net',
  ]);
  t.same(planLaunch(['-m', '1G', '-netdev', 'user,id=u', '-device', 'e1000,netdev=u']).requests, [], 'no form of ours: nothing to do');
  t.same(renderQemuArgs(planLaunch(['-m', '1G']), []), ['-m', '1G']);
  t.same(rewrite(['-netdev', 'macvtap,id=a,dev=x,mode=vepa', '-netdev', 'macvtap,id=b,dev=y,mode=bridge'], [result(MAC1, 1, 3), result(MAC2, 1, 4)]),
    ['-netdev', 'tap,id=a,fd=3,vhost=off', '-netdev', 'tap,id=b,fd=4,vhost=off'], 'several netdevs, each with its own result, in order');
});

t.test('renderQemuArgs checks what it is given', async (t) => {
  const plan = planLaunch(['-netdev', `macvtap,id=n0,dev=eth0,mode=vepa,mac=${MAC1}`]);
  t.throws(() => renderQemuArgs(plan, []), /1 requests but 0 results/);
  t.throws(() => renderQemuArgs(plan, [result(MAC2)]), /asked for 52:54:00:00:00:01 but got 52:54:00:00:00:02/);
});

t.test('errors: one line, cause and fix, before anything runs', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,sndbuf=1'], /^qemu-net-launch: -netdev macvtap,id=n0,dev=eth0,mode=vepa,sndbuf=1: unknown key "sndbuf"; the keys are id, dev, network, pool, pf, mode, queues, vhost, mac, ifname, vlan, allmulti$/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,helper=/bin/sh'], /unknown key "helper"/],
    [['-net', 'vepa,dev=eth0,model=e1000'], /unknown key "model"/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,vhost'], /: vhost needs a value; write vhost=VALUE$/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,mac='], /: mac= is empty/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,dev=eth1'], /: dev is given twice; give each key once$/],
    [['-netdev', 'macvtap,id=n0,,dev=eth0,mode=vepa'], /: no lower device/], // ",," made dev=eth0 part of the id
    [['-netdev', 'macvtap,id=n0,,,dev=eth0,mode=vepa'], /: id=n0, is not a valid QEMU id/],
    [['-netdev', 'macvtap,id=n0,=x,dev=eth0,mode=vepa'], /an empty item \(stray comma\)/],
    [['-netdev', 'macvtap,id=n0,mode=vepa'], /: no lower device; add dev=IFNAME, network=NAME, pool=NAME \(a policy pool\) or pf=IFNAME$/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,network=lan'], /: dev= and network= cannot be combined; name the lower device one way only$/],
    [['-netdev', 'macvtap,id=n0,pool=a,pf=b'], /pool= and pf= cannot be combined/],
    [['-netdev', 'macvtap,id=n0,dev=eth0'], /: no mode; add mode=vepa, mode=private, mode=bridge or mode=passthrough$/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=source'], /mode=source is not a macvtap mode; use mode=vepa, mode=private, mode=bridge or mode=passthrough$/],
    [['-netdev', 'macvtap,id=n0,pool=vfs,mode=vepa'], /pool= is only for passthrough macvtaps; use mode=passthrough/],
    [['-netdev', 'macvtap,id=n0,pf=eth0,mode=bridge'], /pf= is only for passthrough macvtaps/],
    [['-netdev', 'macvtap,id=n0,dev=averyverylongname0,mode=vepa'], /dev=averyverylongname0 is 18 bytes long; the kernel allows at most 15/],
    [['-netdev', 'macvtap,id=n0,dev=a/b,mode=vepa'], /dev=a\/b contains '\/' or ':'/],
    [['-netdev', 'macvtap,id=n0,dev=a%d,mode=vepa'], /dev=a%d contains '%'/],
    [['-netdev', 'macvtap,id=n0,pf=a b'], /pf=a b contains white space/],
    [['-netdev', 'macvtap,id=n0,network=-lan'], /network=-lan may contain only letters.*; give the name of a network defined in \/etc\/qemu\/net-helper.conf$/],
    [['-netdev', 'macvtap,id=n0,pool=all'], /pool=all is the reserved word "all"/],
    [['-netdev', 'macvtap,id=n0,pool=a,,b'], /pool=a,b may contain only/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,ifname=a%d%d'], /ifname=a%d%d is a template with something other than one '%d'/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,ifname=eth1'], /ifname=eth1 does not start with "macvtap"/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,queues=0'], /queues=0 is not a whole number from 1 to 256; write it in plain decimal, e.g. queues=2$/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,queues=257'], /queues=257 is not a whole number from 1 to 256/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,queues=02'], /queues=02 is not a whole number/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,queues=0x2'], /queues=0x2 is not a whole number/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,vhost=yes'], /vhost=yes is not on, off or try; use vhost=on, vhost=off or vhost=try$/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,mac=52:54:00:00:00'], /mac=52:54:00:00:00 is not a MAC address; write it as six hex pairs such as 52:54:00:12:34:56$/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,mac=53:54:00:00:00:01'], /mac=53:54:00:00:00:01 is a multicast address; use a unicast address \(the lowest bit of the first byte clear\), such as 52:54:00:12:34:56$/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa,mac=00:00:00:00:00:00'], /mac=00:00:00:00:00:00 is not usable/],
    [['-netdev', 'macvtap,id=0n,dev=eth0,mode=vepa'], /id=0n is not a valid QEMU id; start it with a letter/],
    [['-net', 'vepa,id=a b,dev=eth0'], /id=a b is not a valid QEMU id/],
    [['-netdev', 'macvtap,dev=eth0,mode=vepa'], /: no id; add id=NAME and use it in the NIC: -device virtio-net-pci,netdev=NAME$/],
    [['-netdev', 'macvtap,id=n0,dev=a,mode=vepa', '-netdev', 'macvtap,id=n0,dev=b,mode=vepa'], /netdev id n0 is used twice; give each netdev its own id$/],
    [['-netdev', 'macvtap,id=n0,dev=a,mode=vepa', '-net', 'vepa,id=n0,dev=b'], /netdev id n0 is used twice/],
    [['-netdev', 'macvtap,id=n0,dev=eth0,mode=vepa', '-daemonize'], /^qemu-net-launch: -daemonize cannot be used with macvtaps from qemu-net-launch: QEMU would fork, the process that owns the links would exit, and --gc would delete them under the running guest; run QEMU in the foreground/],
    [['-net', 'vepa,dev=eth0', '--daemonize'], /--daemonize cannot be used/],
    [['-S', '-netdev'], /^qemu-net-launch: -netdev at the end of the command line has no argument; give it one/],
    [['-netdev', '{"type":"macvtap","id":"n0","dev":"eth0"}'], /the JSON form is not supported for macvtap; write -netdev macvtap,id=ID,dev=IFNAME,mode=MODE$/],
  ];
  for (const [args, expected] of cases) {
    const line = planError(args);
    t.match(line, expected, args.join(' '));
    t.notMatch(line, /\n/, 'one line');
  }
  t.same(planLaunch(['-daemonize', '-netdev', 'user,id=u']).requests, [], '-daemonize alone is QEMU\'s business');
  t.same(planLaunch(['-netdev', '{"type":"user","id":"u"}']).requests, [], 'JSON netdevs of other types are left alone');
  for (const type of ['toString', '__proto__', 'constructor']) {
    t.same(planLaunch(['-net', JSON.stringify({ type })]).requests, [], `JSON -net of type ${type} is QEMU's business, not taken for a shorthand`);
  }
});
