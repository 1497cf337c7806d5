// The policy language: every construct parses to what it means, and every
// mistake is reported with its file:line and refuses the policy.

import t, { type Test } from 'tap';
import { assemblePolicy, parsePolicyText, type Statement } from '../../lib/policy/parse.ts';
import { policyNameProblem } from '../../lib/policy/syntax.ts';
import type { Rule } from '../../lib/policy/types.ts';

const FILE = '/etc/qemu/net-helper.conf';

function parse(text: string) {
  return parsePolicyText(text, FILE);
}

/** The one statement `line` makes; fails the test when it makes a problem instead. */
function one(t: Test, line: string): Statement {
  const r = parse(line);
  t.same(r.problems, [], `no problem with ${JSON.stringify(line)}`);
  t.equal(r.statements.length, 1);
  return r.statements[0]!;
}

function rule(t: Test, line: string): Rule {
  const s = one(t, line);
  if (s.kind !== 'rule') throw new Error(`${line} is not a rule`);
  return s.rule;
}

/** The single problem `text` makes: asserts its line and that the message matches. */
function problem(t: Test, text: string, message: RegExp, line = 1) {
  const r = parse(text);
  t.equal(r.problems.length, 1, `one problem in ${JSON.stringify(text)}`);
  const p = r.problems[0];
  t.match(p, { file: FILE, line, message }, JSON.stringify(text));
  t.ok(p?.fix, 'has a fix');
  t.same(r.statements, [], 'the bad line makes no statement');
  return p;
}

t.test('bridge.conf lines read as they do for qemu-bridge-helper', async (t) => {
  t.match(rule(t, 'allow br0'), { action: 'allow', subject: { kind: 'everyone' }, target: { kind: 'dev', names: ['br0'] }, modes: undefined, queues: 1, vhost: false, netns: undefined });
  t.match(rule(t, 'deny br0'), { action: 'deny', subject: { kind: 'everyone' }, target: { kind: 'dev', names: ['br0'] } });
  t.match(rule(t, 'allow all'), { subject: { kind: 'everyone' }, target: { kind: 'all' } });
  t.match(rule(t, 'deny all'), { action: 'deny', subject: { kind: 'everyone' }, target: { kind: 'all' } });
  t.match(one(t, 'include /etc/qemu/alice.conf'), { kind: 'include', path: '/etc/qemu/alice.conf', where: { file: FILE, line: 1 } });
  t.match(rule(t, '   allow\tbr0   '), { target: { kind: 'dev', names: ['br0'] } }, 'leading and trailing blanks, tabs');
});

t.test('subjects', async (t) => {
  t.match(rule(t, 'allow user alice dev eth0').subject, { kind: 'user', refs: [{ kind: 'name', name: 'alice' }] });
  t.match(rule(t, 'allow user alice,bob,1000 dev eth0').subject, { kind: 'user', refs: [{ kind: 'name', name: 'alice' }, { kind: 'name', name: 'bob' }, { kind: 'id', id: 1000 }] });
  t.match(rule(t, 'allow group kvm,0 dev eth0').subject, { kind: 'group', refs: [{ kind: 'name', name: 'kvm' }, { kind: 'id', id: 0 }] });
  t.match(rule(t, 'allow user machine$ dev eth0').subject, { refs: [{ kind: 'name', name: 'machine$' }] }, 'samba machine accounts end in $');
  t.match(rule(t, 'allow everyone dev eth0').subject, { kind: 'everyone' });
  t.match(rule(t, 'allow all pool vfs'), { subject: { kind: 'everyone' }, target: { kind: 'pool', names: ['vfs'] } }, '"all" before a target is everyone');
  t.match(rule(t, 'allow all eth0'), { subject: { kind: 'everyone' }, target: { kind: 'dev', names: ['eth0'] } });
  t.match(rule(t, 'allow all all'), { subject: { kind: 'everyone' }, target: { kind: 'all' } });
  t.match(rule(t, 'allow all mode vepa'), { subject: { kind: 'everyone' }, target: { kind: 'all' }, modes: ['vepa'] }, '"all" before a qualifier is the target');
  t.match(rule(t, 'deny user mallory all'), { subject: { kind: 'user' }, target: { kind: 'all' } });
});

t.test('targets', async (t) => {
  t.match(rule(t, 'allow dev eth0,eth1').target, { kind: 'dev', names: ['eth0', 'eth1'] });
  t.match(rule(t, 'allow dev all').target, { kind: 'dev', names: ['all'] }, 'after dev, "all" is a device name');
  t.match(rule(t, 'allow network a,b-2').target, { kind: 'network', names: ['a', 'b-2'] });
  t.match(rule(t, 'allow pool vfs').target, { kind: 'pool', names: ['vfs'] });
  t.match(rule(t, 'allow abcdefghijklmno').target, { kind: 'dev', names: ['abcdefghijklmno'] }, '15 bytes is fine');
});

t.test('qualifiers', async (t) => {
  t.match(rule(t, 'allow user alice dev eth0 mode vepa,private queues 4 vhost netns host,lab1'),
    { modes: ['vepa', 'private'], queues: 4, vhost: true, netns: { host: true, names: ['lab1'] } });
  t.match(rule(t, 'allow eth0 netns lab1'), { netns: { host: false, names: ['lab1'] } });
  t.match(rule(t, 'allow eth0 vhost queues 256 mode passthru'), { modes: ['passthru'], queues: 256, vhost: true }, 'any order');
  t.match(rule(t, 'allow eth0 queues 1'), { queues: 1 });
  t.match(rule(t, 'deny eth0 mode passthru netns lab1'), { modes: ['passthru'], netns: { host: false, names: ['lab1'] } });
});

t.test('definitions', async (t) => {
  t.match(one(t, 'network vepanet dev eth0 mode vepa'), { kind: 'network', def: { name: 'vepanet', dev: 'eth0', mode: 'vepa', where: { line: 1 } } });
  t.match(one(t, 'network vepanet mode private dev eth0'), { def: { dev: 'eth0', mode: 'private' } }, 'either order');
  t.match(one(t, 'pool vfs pf enp3s0f0'), { kind: 'pool', def: { name: 'vfs', members: { kind: 'pf', pf: 'enp3s0f0' } } });
  t.match(one(t, 'pool lab dev eth1,eth2,eth3'), { kind: 'pool', def: { members: { kind: 'devs', devs: ['eth1', 'eth2', 'eth3'] } } });
});

t.test('comments, blank lines, line numbers', async (t) => {
  const r = parse('# a comment\n\n   \n\tallow eth0 # and a comment\nallow eth1#x\n# allow eth9\nallow eth2');
  t.same(r.problems, []);
  t.same(r.statements.map((s) => s.kind === 'rule' && [s.rule.where.line, s.rule.target]), [
    [4, { kind: 'dev', names: ['eth0'] }],
    [5, { kind: 'dev', names: ['eth1#x'] }],
    [7, { kind: 'dev', names: ['eth2'] }],
  ]);
  t.same(parse('').statements, [], 'an empty file is fine');
  t.same(parse('allow eth0\n').statements.length, 1, 'a final newline is fine');
});

t.test('names longer than 15 bytes are an error at parse time (CVE-2019-13164)', async (t) => {
  problem(t, 'allow abcdefghijklmnop', /"abcdefghijklmnop" is 16 bytes long/);
  problem(t, 'allow dev eth0,abcdefghijklmnop', /16 bytes/);
  problem(t, 'deny dev abcdefghijklmnop', /16 bytes/);
  problem(t, 'network n dev abcdefghijklmnop mode vepa', /16 bytes/);
  problem(t, 'pool p dev abcdefghijklmnop', /16 bytes/);
  problem(t, 'pool p pf abcdefghijklmnop', /16 bytes/);
  problem(t, 'allow dev ééééééééé', /18 bytes|non-ASCII/, 1);
  problem(t, 'allow dev eth0:1', /':'/);
  problem(t, 'allow dev eth%d', /'%'/);
});

t.test('numbers are plain decimal from 1 to 256', async (t) => {
  for (const bad of ['0x10', '010', '257', '0', '-1', '+4', '4.0', '1e2', '']) {
    if (bad === '') problem(t, 'allow eth0 queues', /needs a number/);
    else problem(t, `allow eth0 queues ${bad}`, /is not a whole number from 1 to 256/);
  }
  problem(t, 'allow user 0100 eth0', /not a numeric id/);
  problem(t, 'allow user 4294967295 eth0', /not a numeric id from 0 to 4294967294/);
  t.match(rule(t, 'allow user 4294967294 eth0').subject, { refs: [{ kind: 'id', id: 4294967294 }] });
});

t.test('mistakes, each with file:line', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['alow eth0', /unknown statement "alow"/],
    ['ALLOW eth0', /unknown statement "ALLOW"/],
    ['allow', /allow needs a target/],
    ['allow user', /allow user needs a user name/],
    ['allow user alice', /needs a target/],
    ['allow eth0 user bob', /"user" comes too late/],
    ['allow user alice group kvm eth0', /one subject/],
    ['allow dev eth0 network n', /one target/],
    ['allow eth0 eth1', /unexpected "eth1"/],
    ['allow eth0 frobnicate', /unexpected "frobnicate"/],
    ['allow mode', /expected what to allow, not "mode"/],
    ['allow eth0 mode', /needs a mode/],
    ['allow eth0 mode source', /unknown mode "source"/],
    ['allow eth0 mode vepa,vepa', /"vepa" is listed twice/],
    ['allow eth0 mode vepa, private', /empty item/],
    ['allow dev eth0,,eth1', /empty item/],
    ['allow eth0 mode vepa mode private', /mode is given twice/],
    ['allow eth0 vhost vhost', /vhost is given twice/],
    ['allow eth0 vhost on', /unexpected "on"/],
    ['allow network n mode vepa', /a network fixes its mode/],
    ['deny eth0 queues 2', /queues has no meaning in a deny rule/],
    ['deny eth0 vhost', /vhost has no meaning in a deny rule/],
    ['allow eth0 netns', /needs a namespace/],
    ['allow eth0 netns ../x', /namespace name "..\/x"/],
    ['allow eth0 netns .hidden', /namespace name/],
    ['allow user al/ice eth0', /user "al\/ice" is not a user or group name/],
    ['allow network all', /reserved word "all"/],
    ['allow network n/1', /network name "n\/1"/],
    ['include', /include needs a path/],
    ['include etc/qemu/x.conf', /is not an absolute path/],
    ['include /etc/qemu/../shadow', /"\.\." component/],
    ['include /etc//qemu', /"\/\/"/],
    ['include /etc/qemu/', /ends in "\/"/],
    ['include /a /b', /unexpected "\/b" after include PATH/],
    ['network', /network needs a name/],
    ['network n', /network n has no device/],
    ['network n dev eth0', /network n has no mode/],
    ['network n mode vepa', /network n has no device/],
    ['network n dev eth0,eth1 mode vepa', /more than one device/],
    ['network n dev eth0 mode vepa,private', /more than one mode/],
    ['network n dev eth0 mode vepa dev eth1', /gives dev twice/],
    ['network n dev eth0 mode vepa queues 4', /unexpected "queues" in the definition of network n/],
    ['pool p', /needs "dev" or "pf"/],
    ['pool p devs eth0', /expected "dev" or "pf" after pool p/],
    ['pool p pf eth0,eth1', /more than one physical function/],
    ['pool p pf eth0 extra', /unexpected "extra"/],
    ['pool p dev eth0 pf eth1', /unexpected "pf"/],
    ['allow eth0\r', /carriage return/],
    ['allow eth0\x00', /control character 0x00/],
    ['allow\x0beth0', /control character 0x0b/],
  ];
  for (const [text, message] of cases) problem(t, text, message);
});

t.test('bad bytes and long lines', async (t) => {
  const r = parsePolicyText(Buffer.from([0x61, 0x6c, 0x6c, 0x6f, 0x77, 0x20, 0xff, 0x0a]), FILE);
  t.match(r.problems, [{ line: 1, message: /not valid UTF-8/ }]);
  const long = parsePolicyText(`allow eth0\nallow ${'x'.repeat(5000)}\n`, FILE);
  t.match(long.problems, [{ line: 2, message: /5006 bytes long; at most 4096/ }]);
});

t.test('every bad line is reported, the good ones still parse', async (t) => {
  const r = parse('allow eth0\nalow eth1\nallow eth2 queues 0\nallow eth3');
  t.same(r.problems.map((p) => p.line), [2, 3]);
  t.equal(r.statements.length, 2);
});

t.test('assembling: duplicate definitions and undefined references refuse the policy', async (t) => {
  const a = parsePolicyText('network vepanet dev eth0 mode vepa\npool vfs pf eth9\nallow network vepanet\n', '/a.conf');
  const b = parsePolicyText('network vepanet dev eth1 mode vepa\npool vfs dev eth8\nallow network nope\nallow pool vfs,nopool\n', '/b.conf');
  t.same([...a.problems, ...b.problems], []);
  const { policy, problems } = assemblePolicy([...a.statements, ...b.statements], ['/a.conf', '/b.conf']);
  t.match(problems, [
    { file: '/b.conf', line: 1, message: 'network vepanet is already defined at /a.conf:1' },
    { file: '/b.conf', line: 2, message: 'pool vfs is already defined at /a.conf:2' },
    { file: '/b.conf', line: 3, message: 'no network named nope is defined' },
    { file: '/b.conf', line: 4, message: 'no pool named nopool is defined' },
  ]);
  t.equal(policy.networks.get('vepanet')?.dev, 'eth0', 'the first definition stands');

  const ok = assemblePolicy(parse('allow network later\nnetwork later dev eth0 mode private').statements, [FILE]);
  t.same(ok.problems, [], 'a network may be defined after the rule that uses it');
  t.equal(ok.policy.rules.length, 1);
});

t.test('VLANs: the vlan qualifier of allow rules, and networks that are a VLAN', async (t) => {
  t.same(rule(t, 'allow user alice dev eth0').vlans, [], 'none unless written: an untagged rule grants no VLAN');
  t.same(rule(t, 'allow user alice dev eth0 vlan 100').vlans, [100]);
  t.same(rule(t, 'allow user alice dev eth0 vlan 7,100-102,5').vlans, [5, 7, 100, 101, 102], 'lists and ranges, sorted');
  t.same(rule(t, 'allow user alice dev eth0 vlan 1-4094').vlans.length, 4094);
  problem(t, 'allow dev eth0 vlan 0', /vlan "0" is not an id or a range of ids from 1 to 4094/);
  problem(t, 'allow dev eth0 vlan 4095', /from 1 to 4094/);
  problem(t, 'allow dev eth0 vlan 200-100', /vlan "200-100" is not an id or a range/);
  problem(t, 'allow dev eth0 vlan 100,100', /listed twice/);
  problem(t, 'deny dev eth0 vlan 100', /vlan has no meaning in a deny rule/);
  problem(t, 'allow network lan vlan 100', /a network fixes its VLAN/);
  const net = one(t, 'network lan100 dev eth0 mode vepa vlan 100');
  t.match(net, { kind: 'network', def: { name: 'lan100', dev: 'eth0', mode: 'vepa', vlan: 100 } });
  t.match(one(t, 'network lan dev eth0 mode vepa'), { def: { vlan: undefined } });
  problem(t, 'network lan dev eth0 mode vepa vlan 5000', /vlan "5000" is not a whole number from 1 to 4094/);
  problem(t, 'network lan dev eth0 mode vepa vlan 5 vlan 6', /gives vlan twice/);
});

t.test('the allmulti qualifier', async (t) => {
  t.equal(rule(t, 'allow user alice dev eth0').allmulti, true, 'on unless written');
  t.equal(rule(t, 'allow user alice dev eth0 allmulti off').allmulti, false);
  t.equal(rule(t, 'allow user alice dev eth0 allmulti on vhost').allmulti, true);
  problem(t, 'allow user alice dev eth0 allmulti', /on or off/);
  problem(t, 'allow user alice dev eth0 allmulti no', /allmulti "no" is neither on nor off/);
  problem(t, 'deny user alice dev eth0 allmulti off', /allmulti has no meaning in a deny rule/);
  problem(t, 'allow dev eth0 allmulti off allmulti on', /allmulti is given twice/);
});

t.test('the persistent qualifier', async (t) => {
  t.equal(rule(t, 'allow user alice dev eth0 persistent').persistent, true);
  t.equal(rule(t, 'allow user alice dev eth0').persistent, false, 'not allowed unless written');
  problem(t, 'deny user alice dev eth0 persistent', /persistent has no meaning in a deny rule/);
  problem(t, 'allow dev eth0 persistent persistent', /persistent is given twice/);
});

t.test('limits: how many links a user may hold at once', async (t) => {
  t.match(one(t, 'limit links 4'), { kind: 'limit', def: { subject: { kind: 'everyone' }, links: 4, where: { file: FILE, line: 1 } } });
  t.match(one(t, 'limit everyone links 0'), { kind: 'limit', def: { subject: { kind: 'everyone' }, links: 0 } });
  t.match(one(t, 'limit user alice,1001 links 100'), { kind: 'limit', def: { subject: { kind: 'user', refs: [{ kind: 'name', name: 'alice' }, { kind: 'id', id: 1001 }] }, links: 100 } });
  t.match(one(t, 'limit group kvm links 64 # raised for the CI farm'), { kind: 'limit', def: { subject: { kind: 'group' }, links: 64 } });
  problem(t, 'limit links', /a number/);
  problem(t, 'limit links -1', /not a whole number from 0 to 100000/);
  problem(t, 'limit links 100001', /not a whole number from 0 to 100000/);
  problem(t, 'limit links 0x10', /not a whole number/);
  problem(t, 'limit user alice queues 4', /expected "links" in a limit, not "queues"/);
  problem(t, 'limit links 4 vhost', /unexpected|after/);
  const r = parse('limit links 2\nlimit user alice links 8\n');
  t.same(assemblePolicy(r.statements, [FILE]).policy.limits.map((l) => l.links), [2, 8], 'limits are kept in file order');
});

t.test('names in the callers\' space (macvtap...) cannot be devices, networks or pools of the policy', async (t) => {
  problem(t, 'allow dev macvtap0', /device name "macvtap0" starts with "macvtap", which is reserved/);
  problem(t, 'allow macvtap3', /reserved/);
  problem(t, 'network macvtapnet dev eth0 mode vepa', /network name "macvtapnet" starts with "macvtap"/);
  problem(t, 'pool macvtaps dev eth0,eth1', /pool name "macvtaps" starts with "macvtap"/);
  problem(t, 'pool vfs dev eth0,macvtap1', /device name "macvtap1"/);
  t.match(policyNameProblem('macvtapx'), /reserved/, 'and --network=/--pool=@ names likewise');
});

t.test('network and pool names as the command line would take them', async (t) => {
  t.equal(policyNameProblem('vepanet'), undefined);
  t.match(policyNameProblem(''), /empty/);
  t.match(policyNameProblem('-x'), /must not start/);
  t.match(policyNameProblem('a'.repeat(65)), /65 bytes/);
  t.match(policyNameProblem('a b'), /only letters/);
});
