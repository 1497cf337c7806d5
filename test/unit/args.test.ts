// Strict option parsing and the helper's interpretation of its command line.

import t from 'tap';
import { parseDecimal, parseOptions, type OptionSpec } from '../../lib/args.ts';
import { UsageError } from '../../lib/errors.ts';
import { optionSpecs, outputSocketFromArgv, parseHelperArgs } from '../../lib/helper/options.ts';
import { usage } from '../../lib/helper/usage.ts';
import { BRIDGE_HELPER, PASSTHROUGH_HELPER, VEPA_HELPER } from '../../lib/helper/programs.ts';

const specs: OptionSpec[] = [
  { name: 'dev', kind: 'value', aliases: ['arg-dev'] },
  { name: 'probe', kind: 'flag' },
  { name: 'fd', kind: 'value' },
];

function usageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error('no UsageError thrown');
}

t.test('parseOptions accepts the two value forms and flags', async (t) => {
  t.same([...parseOptions(['--dev=eth0', '--probe'], specs)], [['dev', 'eth0'], ['probe', true]]);
  t.same([...parseOptions(['--dev', 'eth0'], specs)], [['dev', 'eth0']]);
  t.same([...parseOptions(['--arg-dev=eth1'], specs)], [['dev', 'eth1']], 'alias maps to the canonical name');
  t.same([...parseOptions(['--fd=0x10'], specs)], [['fd', '0x10']], 'values stay strings: no numeric coercion');
  t.same([...parseOptions(['--dev=a=b'], specs)], [['dev', 'a=b']], 'only the first = splits');
});

t.test('parseOptions rejects what minimist would let through', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--nope=1'], /unknown option "--nope"/],
    [['--Dev=a'], /unknown option "--Dev"/],
    [['-d'], /unknown option "-d"/],
    [['eth0'], /unexpected argument "eth0"/],
    [['--'], /'--' is not accepted/],
    [['--dev=a', '--dev=b'], /--dev is given more than once/],
    [['--dev=a', '--arg-dev=b'], /--arg-dev is given more than once \(also as --dev\)/],
    [['--probe', '--probe'], /--probe is given more than once/],
    [['--probe=yes'], /--probe takes no value/],
    [['--dev'], /--dev needs a value/],
    [['--dev='], /--dev needs a value/],
    [['--dev', '--probe'], /--dev needs a value/],
    [['--__proto__=x'], /reserved word "__proto__"/],
    [['--constructor'], /reserved word "constructor"/],
    [['--dev=__proto__'], /reserved word "__proto__"/],
    [['--dev=prototype'], /reserved word "prototype"/],
    [['--no-probe'], /unknown option "--no-probe"/],
  ];
  for (const [argv, message] of cases) {
    t.match(usageError(() => parseOptions(argv, specs)).message, message, argv.join(' '));
  }
  t.equal(({} as Record<string, unknown>).x, undefined, 'Object.prototype untouched');
});

t.test('parseDecimal takes plain decimal only', async (t) => {
  t.equal(parseDecimal('fd', '0', 0, 10), 0);
  t.equal(parseDecimal('fd', '10', 0, 10), 10);
  for (const bad of ['0x10', '010', '1e1', '+1', '-1', ' 1', '1 ', '11', '', '1.0', '٣']) {
    t.throws(() => parseDecimal('fd', bad, 0, 10), UsageError, JSON.stringify(bad));
  }
});

t.test("the helper accepts QEMU's tail: --use-vnet --fd=N --br=NAME", async (t) => {
  const r = parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--mac=52:54:00:12:34:56', '--use-vnet', '--fd=5', '--br=br0']);
  t.match(r, { action: 'create', target: { kind: 'dev', name: 'eth0' }, mode: 'vepa', ifname: 'macvtap%d', output: { kind: 'fd', fd: 5 }, vnetHdr: true });
  if (r.action === 'create') t.same([...r.mac!], [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
  const noVnet = parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--fd=5', '--br=br0']);
  t.match(noVnet, { vnetHdr: false }, 'without --use-vnet, no vnet header');
  t.match(parseHelperArgs(VEPA_HELPER, ['--use-vnet', '--fd=5', '--br=eth1']), { target: { kind: 'br', name: 'eth1' } }, '--br names the device (or a policy network) when --dev is absent');
  t.match(parseHelperArgs(VEPA_HELPER, ['--use-vnet', '--fd=5', '--br=office-lan-vepa-net']), { target: { kind: 'br', name: 'office-lan-vepa-net' } }, 'a name too long for a device can be a network');
  t.match(parseHelperArgs(VEPA_HELPER, ['--arg-dev=eth2', '--try-vhost', '--socketpair=4']), { target: { kind: 'dev', name: 'eth2' }, output: { kind: 'socketpair', fd: 4 }, vnetHdr: true });
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--mode=private', '--probe', '--json']), { mode: 'private', output: { kind: 'probe', json: true } });
  t.same(parseHelperArgs(VEPA_HELPER, ['--help']), { action: 'help' });
});

t.test('the helper rejects bad requests with a cause and a fix', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--dev=eth0'], /^no output given$/],
    [['--dev=eth0', '--fd=3', '--probe'], /--fd and --probe cannot be combined/],
    [['--fd=3'], /no lower device given/],
    [['--dev=eth0', '--fd=2'], /--fd=2 names standard error/],
    [['--dev=eth0', '--socketpair=0'], /--socketpair=0 names standard input/],
    [['--dev=eth0', '--fd=0x3'], /--fd="0x3" is not a whole number/],
    [['--dev=eth0', '--fd=-3'], /unexpected argument|is not a whole number/],
    [['--dev=eth0', '--fd=3', '--json'], /--json goes with --probe/],
    [['--dev=eth0', '--probe', '--mode=bridge'], /--mode="bridge" is not a mode qemu-net-helper-vepa provides/],
    [['--dev=eth0', '--probe', '--mode=passthru'], /is not a mode/],
    [['--dev=abcdefghijklmnop', '--probe'], /--dev="abcdefghijklmnop" is 16 bytes long/],
    [['--dev=a/b', '--probe'], /contains '\/' or ':'/],
    [['--dev=..', '--probe'], /is "\." or "\.\."/],
    [['--dev=eth 0', '--probe'], /white space/],
    [['--dev=eth\n0', '--probe'], /control character/],
    [['--dev=eth%d', '--probe'], /contains '%'/],
    [['--dev=eth0', '--ifname=a%d%d', '--probe'], /template with something other than one '%d'/],
    [['--dev=eth0', '--ifname=a%s', '--probe'], /template with something other than one '%d'/],
    [['--dev=eth0', '--mac=01:00:5e:00:00:01', '--probe'], /multicast/],
    [['--dev=eth0', '--mac=52:54:00:12:34', '--probe'], /is not a MAC address/],
    [['--dev=eth0', '--mac=00:00:00:00:00:00', '--probe'], /not usable/],
    [['--dev=eth0', '--fd=3', '--br=abcdefghijklmnopq'], /--br=.* is 17 bytes long/],
    // Names a caller chooses for the new link live in their own space (lib/names.ts CALLER_IFNAME_PREFIX).
    [['--dev=eth0', '--ifname=eth1', '--probe'], /--ifname="eth1" does not start with "macvtap"/],
    [['--dev=eth0', '--ifname=lo0', '--probe'], /does not start with "macvtap"/],
    [['--dev=eth0', '--ifname=bonding_masters', '--probe'], /does not start with "macvtap"|bytes long/],
    [['--dev=eth0', '--ifname=-x', '--probe'], /--ifname="-x" starts with '-'/],
    [['--dev=eth0', '--ifname=--help', '--probe'], /starts with '-'|unexpected/],
    [['--dev=eth0', '--ifname=macvtap=0', '--probe'], /does not start with "macvtap" followed only by/],
    [['--dev=-x', '--probe'], /--dev="-x" starts with '-'/],
  ];
  for (const [argv, message] of cases) {
    const err = usageError(() => parseHelperArgs(VEPA_HELPER, argv));
    t.match(err.message, message, JSON.stringify(argv));
    t.ok(err.fix.length > 0, 'has a fix');
  }
});

t.test('names a caller may give the new link', async (t) => {
  for (const ok of ['macvtap%d', 'macvtap0', 'macvtap-alice0', 'macvtap.vm_1', 'macvtapvm%dq']) {
    const r = parseHelperArgs(VEPA_HELPER, ['--dev=eth0', `--ifname=${ok}`, '--probe']);
    t.equal(r.action === 'create' && r.ifname, ok, ok);
  }
  const r = parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--probe']);
  t.equal(r.action === 'create' && r.ifname, 'macvtap%d', 'the default template is in the callers\' space');
});

t.test('the reply socket is known even when the rest of the line is bad', async (t) => {
  t.same(outputSocketFromArgv(['--bogus', '--socketpair=7']), { kind: 'socketpair', fd: 7 });
  t.equal(outputSocketFromArgv(['--socketpair=2']), undefined, 'never a standard stream');
  t.equal(outputSocketFromArgv(['--socketpair=07']), undefined);
  t.same(outputSocketFromArgv(['--dev', 'eth0', '--socketpair', '5']), { kind: 'socketpair', fd: 5 }, 'the two-word form the parser accepts too');
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev', 'eth0', '--socketpair', '5']), { output: { kind: 'socketpair', fd: 5 } }, 'which the parser does accept');
  t.equal(outputSocketFromArgv(['--socketpair']), undefined, 'no value');
});

t.test('queues, vhost and the passthrough targets', async (t) => {
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--queues=8', '--vhost=on', '--socketpair=3']), { queues: 8, vhost: 'on' });
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--probe']), { queues: 1, vhost: 'try' }, 'defaults');
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--try-vhost', '--probe']), { vhost: 'try' });
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--probe']), { allmulti: undefined }, 'allmulti: the default is left to the policy');
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--allmulti=off', '--probe']), { allmulti: 'off' });
  t.match(parseHelperArgs(PASSTHROUGH_HELPER, ['--dev=eth1', '--allmulti=on', '--probe']), { allmulti: 'on' });
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--vlan=100', '--probe']), { vlan: 100 });
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--probe']), { vlan: undefined });
  t.match(parseHelperArgs(VEPA_HELPER, ['--dev=eth0', '--fd=3', '--vhost=try']), { vhost: 'off' }, 'with --fd QEMU opens vhost itself');
  t.match(parseHelperArgs(BRIDGE_HELPER, ['--dev=eth0', '--probe']), { mode: 'bridge', target: { kind: 'dev', name: 'eth0' } });
  t.match(parseHelperArgs(PASSTHROUGH_HELPER, ['--pool=eth1,eth2', '--probe']), { mode: 'passthru', target: { kind: 'pool', members: ['eth1', 'eth2'] } });
  t.match(parseHelperArgs(PASSTHROUGH_HELPER, ['--pf=enp3s0f0', '--probe']), { target: { kind: 'pf', name: 'enp3s0f0' } });
  const bad: Array<[typeof VEPA_HELPER, string[], RegExp]> = [
    [VEPA_HELPER, ['--dev=eth0', '--fd=3', '--queues=2'], /--queues=2 cannot be used with --fd: QEMU's helper= protocol carries exactly one fd/],
    [VEPA_HELPER, ['--dev=eth0', '--fd=3', '--vhost=on'], /--vhost=on cannot be used with --fd/],
    [VEPA_HELPER, ['--dev=eth0', '--probe', '--queues=0'], /--queues="0" is not a whole number from 1 to 256/],
    [VEPA_HELPER, ['--dev=eth0', '--probe', '--queues=257'], /from 1 to 256/],
    [VEPA_HELPER, ['--dev=eth0', '--probe', '--vhost=yes'], /--vhost="yes" is not on, off or try/],
    [VEPA_HELPER, ['--dev=eth0', '--probe', '--vhost=on', '--try-vhost'], /cannot be combined/],
    [VEPA_HELPER, ['--dev=eth0', '--probe', '--allmulti=yes'], /--allmulti="yes" is not on or off/],
    [VEPA_HELPER, ['--dev=eth0', '--probe', '--vlan=0'], /--vlan="0" is not a whole number from 1 to 4094/],
    [VEPA_HELPER, ['--dev=eth0', '--probe', '--vlan=4095'], /from 1 to 4094/],
    [VEPA_HELPER, ['--pool=eth1', '--probe'], /unknown option "--pool"/],
    [BRIDGE_HELPER, ['--pf=eth1', '--probe'], /unknown option "--pf"/],
    [PASSTHROUGH_HELPER, ['--dev=eth0', '--pool=eth1', '--probe'], /--dev and --pool cannot be combined/],
    [PASSTHROUGH_HELPER, ['--pool=eth1,eth1', '--probe'], /names a device twice/],
    [PASSTHROUGH_HELPER, ['--pool=eth1,,eth2', '--probe'], /--pool="" is empty/],
    [PASSTHROUGH_HELPER, ['--pool=eth1,abcdefghijklmnop', '--probe'], /16 bytes long/],
    [PASSTHROUGH_HELPER, ['--probe'], /no lower device given; name it with --dev=IFNAME, --pool=IF1,IF2,..., --pf=IFNAME/],
    [PASSTHROUGH_HELPER, ['--dev=eth0', '--mode=vepa', '--probe'], /not a mode qemu-net-helper-passthrough provides; use one of: passthru/],
  ];
  for (const [program, argv, message] of bad) {
    const err = usageError(() => parseHelperArgs(program, argv));
    t.match(`${err.message}; ${err.fix}`, message, JSON.stringify(argv));
  }
});

t.test('--help names every option the program accepts, and nothing stale', async (t) => {
  for (const program of [VEPA_HELPER, BRIDGE_HELPER, PASSTHROUGH_HELPER]) {
    const text = usage(program);
    for (const spec of optionSpecs(program)) {
      t.ok(text.includes(`--${spec.name}`), `${program.name} --help mentions --${spec.name}`);
    }
    t.notMatch(text, /only root may/, 'no pre-policy wording');
    t.ok(text.split('\n').every((l) => l.length <= 110), 'lines fit a terminal');
  }
});
