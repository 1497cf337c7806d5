// Deciding requests: nothing by default, deny beats allow, users and groups
// (supplementary groups included), modes, queues, vhost, namespaces,
// networks and pools as names for devices, alternative names, uid 0.

import t from 'tap';
import { tableAccounts, type Accounts } from '../../lib/policy/accounts.ts';
import { auditLine, decide, denialError, describeLimit, linkLimit, resolveNetwork, resolvePool, type Decision, type PolicyRequest } from '../../lib/policy/decide.ts';
import { DEFAULT_LINK_LIMIT } from '../../lib/policy/syntax.ts';
import { assemblePolicy, parsePolicyText } from '../../lib/policy/parse.ts';
import type { Policy } from '../../lib/policy/types.ts';
import { HelperError, oneLine } from '../../lib/errors.ts';

const FILE = '/etc/qemu/net-helper.conf';
const ALICE = 1000;
const BOB = 1001;
const MALLORY = 1002;
const KVM = 104;
const USERS = 100;

const accounts = tableAccounts({ alice: ALICE, bob: BOB, mallory: MALLORY, root: 0 }, { kvm: KVM, users: USERS, wheel: 10 });

function policy(text: string): Policy {
  const parsed = parsePolicyText(text, FILE);
  const { policy, problems } = assemblePolicy(parsed.statements, [FILE]);
  if (parsed.problems.length || problems.length) throw new Error(JSON.stringify([...parsed.problems, ...problems]));
  return policy;
}

const HOST = { isInitial: true, names: [], notes: [] };

function req(over: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    caller: { uid: ALICE, gid: ALICE, groups: [] },
    program: 'qemu-net-helper-vepa',
    via: { kind: 'dev' },
    dev: { name: 'eth0', altNames: [] },
    pf: null,
    mode: 'vepa',
    queues: 1,
    vhost: 'off',
    netns: HOST,
    ...over,
  };
}

function d(p: Policy, r: Partial<PolicyRequest> = {}, acc: Accounts = accounts): Decision {
  return decide(p, req(r), acc);
}

function allowedBy(decision: Decision): number | undefined {
  return decision.allow ? (decision.rule?.where.line ?? 0) : undefined;
}

t.test('nothing is allowed by default', async (t) => {
  const decision = d(policy(''));
  t.equal(decision.allow, false);
  t.equal(decision.reason, 'no rule in the policy allows uid 1000 the use of eth0 in mode vepa');
  t.equal(decision.rule, undefined);
  t.equal(d(policy('allow eth1\nnetwork n dev eth0 mode vepa')).allow, false, 'rules about other devices do not help');
});

t.test('bridge.conf forms: allow DEV is for everyone, deny all beats it', async (t) => {
  t.equal(allowedBy(d(policy('allow eth0'))), 1);
  t.equal(allowedBy(d(policy('allow all'))), 1);
  const denied = d(policy('allow eth0\ndeny all'));
  t.equal(denied.allow, false);
  t.equal(denied.reason, 'the policy denies uid 1000 the use of eth0 in mode vepa (deny rule at /etc/qemu/net-helper.conf:2)');
  t.equal(denied.rule?.where.line, 2);
  t.equal(d(policy('deny eth0\nallow eth0')).allow, false, 'order does not matter');
  t.equal(d(policy('deny eth1\nallow eth0')).allow, true);
});

t.test('deny beats allow, for the user named and no one else', async (t) => {
  const p = policy('allow group users eth0\ndeny user mallory all\n');
  t.equal(d(p, { caller: { uid: MALLORY, gid: USERS, groups: [] } }).allow, false);
  t.equal(allowedBy(d(p, { caller: { uid: ALICE, gid: USERS, groups: [] } })), 1);
  t.equal(d(policy('allow user alice eth0\ndeny user 1000 eth0')).allow, false, 'a numeric uid');
  t.equal(d(policy('allow user alice eth0\ndeny group kvm eth0'), { caller: { uid: ALICE, gid: ALICE, groups: [KVM] } }).allow, false, 'a deny by supplementary group');
  t.equal(d(policy('allow user alice eth0\ndeny eth0 mode passthru')).allow, true, 'a deny for another mode does not apply');
  t.equal(d(policy('allow user alice eth0 mode passthru\ndeny eth0 mode passthru'), { mode: 'passthru' }).allow, false);
  t.equal(d(policy('allow user alice eth0 netns host,lab\ndeny eth0 netns lab'), { netns: { isInitial: false, names: ['lab'], notes: [] } }).allow, false);
  t.equal(d(policy('allow user alice eth0 netns host,lab\ndeny eth0 netns lab')).allow, true, 'a deny for another namespace does not apply');
  t.equal(d(policy('allow user alice eth0 netns lab\ndeny eth0'), { netns: { isInitial: false, names: ['lab'], notes: [] } }).allow, false,
    'a deny without netns applies in every namespace');
});

t.test('users and groups: real uid, real gid, supplementary groups; names and ids', async (t) => {
  t.equal(allowedBy(d(policy('allow user alice eth0'))), 1);
  t.equal(d(policy('allow user bob eth0')).allow, false);
  t.equal(allowedBy(d(policy('allow user bob,alice eth0'))), 1);
  t.equal(allowedBy(d(policy('allow user 1000 eth0'))), 1);
  t.equal(allowedBy(d(policy('allow group kvm eth0'), { caller: { uid: ALICE, gid: KVM, groups: [] } })), 1, 'primary group');
  t.equal(allowedBy(d(policy('allow group kvm eth0'), { caller: { uid: ALICE, gid: ALICE, groups: [USERS, KVM] } })), 1, 'supplementary group');
  t.equal(d(policy('allow group kvm eth0'), { caller: { uid: ALICE, gid: ALICE, groups: [USERS] } }).allow, false);
  t.equal(allowedBy(d(policy('allow group 104 eth0'), { caller: { uid: ALICE, gid: ALICE, groups: [KVM] } })), 1);
  t.equal(d(policy('allow user nosuchuser eth0')).allow, false, 'an unknown name matches no one');
  t.equal(d(policy('allow group kvm eth0'), { caller: { uid: KVM, gid: ALICE, groups: [] } }).allow, false, 'a uid equal to the gid is not membership');
  t.equal(d(policy('allow user alice eth0'), { caller: { uid: BOB, gid: ALICE, groups: [ALICE] } }).allow, false, 'a gid equal to the uid is not the user');
});

t.test('account lookups that fail: refuse rather than guess', async (t) => {
  const broken: Accounts = {
    uidOf: (name) => {
      if (name === 'ldapuser') throw new Error('NSS: server unreachable');
      return accounts.uidOf(name);
    },
    gidOf: (name) => accounts.gidOf(name),
  };
  const denied = d(policy('allow eth0\ndeny user ldapuser eth0'), {}, broken);
  t.equal(denied.allow, false, 'a deny rule that may apply refuses');
  t.match(denied.reason, /deny rule at \/etc\/qemu\/net-helper.conf:2 may apply, but cannot look up user ldapuser: NSS: server unreachable/);
  t.equal(allowedBy(d(policy('allow user ldapuser eth0\nallow user alice eth0'), {}, broken)), 2, 'another allow rule still works');
  const none = d(policy('allow user ldapuser eth0'), {}, broken);
  t.equal(none.allow, false);
  t.match(none.reason, /no rule .* allows .*; cannot look up user ldapuser: NSS: server unreachable \(rule at .*:1\)/);
  t.equal(d(policy('allow eth0\ndeny user ldapuser eth1'), {}, broken).allow, true, 'a deny about another device is not looked up');
});

t.test('modes: defaults, lists, passthru must be named', async (t) => {
  const p = policy('allow user alice eth0');
  for (const mode of ['vepa', 'private', 'bridge'] as const) t.equal(allowedBy(d(p, { mode })), 1, `${mode} by default`);
  const pt = d(p, { mode: 'passthru' });
  t.equal(pt.allow, false, 'passthru is not a default');
  t.match(pt.reason, /the rule at .*:1 allows it only in mode vepa, private, bridge/);
  const only = d(policy('allow user alice eth0 mode vepa,private'), { mode: 'bridge' });
  t.equal(only.allow, false, 'device allowed only in another mode');
  t.equal(only.reason, 'no rule in the policy allows uid 1000 the use of eth0 in mode bridge; the rule at /etc/qemu/net-helper.conf:1 allows it only in mode vepa, private');
  t.equal(allowedBy(d(policy('allow user alice eth0 mode passthru'), { mode: 'passthru' })), 1);
  t.equal(d(policy('allow all'), { mode: 'passthru' }).allow, false, '"allow all" does not include passthru');
});

t.test('queues and vhost', async (t) => {
  t.equal(d(policy('allow eth0'), { queues: 2 }).allow, false, 'one queue by default');
  t.match(d(policy('allow eth0'), { queues: 2 }).allow === false && d(policy('allow eth0'), { queues: 2 }), { reason: /allows at most 1 queue$/ });
  t.equal(allowedBy(d(policy('allow eth0 queues 4'), { queues: 4 })), 1);
  t.equal(d(policy('allow eth0 queues 4'), { queues: 5 }).allow, false, 'queue limit');
  t.equal(allowedBy(d(policy('allow eth0 queues 2\nallow eth0 queues 8'), { queues: 5 })), 2, 'the rule that covers it');

  const novhost = d(policy('allow eth0'), { vhost: 'on' });
  t.equal(novhost.allow, false, 'vhost not allowed');
  t.match(novhost, { reason: /with vhost-net; the rule at .*:1 does not allow vhost-net$/ });
  t.match(d(policy('allow eth0'), { vhost: 'try' }), { allow: true, vhost: false }, 'try: allowed, without vhost');
  t.match(d(policy('allow eth0 vhost'), { vhost: 'try' }), { allow: true, vhost: true });
  t.match(d(policy('allow eth0 vhost'), { vhost: 'on' }), { allow: true, vhost: true });
  t.match(d(policy('allow eth0 vhost'), { vhost: 'off' }), { allow: true, vhost: false }, 'off is never granted vhost');
  const prefer = d(policy('allow eth0\nallow user alice eth0 vhost'), { vhost: 'try' });
  t.match(prefer, { allow: true, vhost: true }, 'try prefers a rule that grants vhost');
  t.equal(prefer.rule?.where.line, 2);
});

t.test('namespaces: only the host by default; named namespaces when a rule names them', async (t) => {
  const mine = { isInitial: false, names: [], notes: [] };
  const lab1 = { isInitial: false, names: ['lab1'], notes: [] };
  const p = policy('allow user alice eth0');
  t.equal(allowedBy(d(p)), 1);
  const other = d(p, { netns: mine });
  t.equal(other.allow, false, "a user's own namespace with a device called eth0 is not the host's eth0");
  t.equal(other.reason, "no rule in the policy allows uid 1000 the use of eth0 in mode vepa in a network namespace that is neither the host's nor named in /run/netns; the rule at /etc/qemu/net-helper.conf:1 allows it only in the host's network namespace");
  t.equal(d(p, { netns: lab1 }).allow, false, 'a named namespace is not allowed by default');
  t.equal(allowedBy(d(policy('allow user alice eth0 netns lab1'), { netns: lab1 })), 1, 'named namespace allowed');
  t.equal(d(policy('allow user alice eth0 netns lab1')).allow, false, 'and then not the host unless named');
  t.equal(allowedBy(d(policy('allow user alice eth0 netns host,lab1'))), 1);
  t.equal(allowedBy(d(policy('allow all pool vfs netns lab1\npool vfs dev eth0'), { netns: { isInitial: false, names: ['x', 'lab1'], notes: [] }, mode: 'passthru' })), 1);
  const notes = d(p, { netns: { isInitial: false, names: [], notes: ['cannot tell whether this is the host\'s network namespace (that of PID 1): EACCES'] } });
  t.match(notes, { allow: false, reason: /; cannot tell whether this is the host's network namespace \(that of PID 1\): EACCES$/ }, 'why the namespace was not recognised');
});

t.test('networks: a name for a device in a mode, both ways', async (t) => {
  const p = policy('network vepanet dev eth0 mode vepa\nallow group kvm network vepanet\n');
  const kvm = { uid: ALICE, gid: ALICE, groups: [KVM] };
  t.same(resolveNetwork(p, 'vepanet'), { name: 'vepanet', dev: 'eth0', mode: 'vepa', where: { file: FILE, line: 1 } }, 'network resolves to device and mode');
  t.equal(allowedBy(d(p, { caller: kvm, via: { kind: 'network', name: 'vepanet' } })), 2);
  t.equal(allowedBy(d(p, { caller: kvm })), 2, 'the same device and mode asked for directly');
  t.equal(d(p, { caller: kvm, mode: 'private' }).allow, false, 'but not the device in another mode');
  t.equal(d(p, { caller: { uid: BOB, gid: BOB, groups: [] }, via: { kind: 'network', name: 'vepanet' } }).allow, false);

  const denyDev = policy('network vepanet dev eth0 mode vepa\nallow network vepanet\ndeny user mallory dev eth0\n');
  t.equal(d(denyDev, { caller: { uid: MALLORY, gid: MALLORY, groups: [] }, via: { kind: 'network', name: 'vepanet' } }).allow, false,
    'deny dev eth0 also refuses the network that is eth0');
  const denyNet = policy('network vepanet dev eth0 mode vepa\nallow eth0\ndeny user mallory network vepanet\n');
  t.equal(d(denyNet, { caller: { uid: MALLORY, gid: MALLORY, groups: [] } }).allow, false, 'deny network refuses the same device and mode asked for directly');
  t.equal(d(denyNet, { caller: { uid: MALLORY, gid: MALLORY, groups: [] }, mode: 'private' }).allow, true, 'but not another mode');

  t.throws(() => resolveNetwork(p, 'nope'), HelperError);
  t.match(oneLine('prog', (() => { try { resolveNetwork(p, 'nope'); } catch (e) { return e; } })()), 'prog: no network named nope is defined in the policy; the networks defined are: vepanet');
  const missing = d(p, { caller: { uid: 0, gid: 0, groups: [] }, via: { kind: 'network', name: 'nope' } });
  t.match(missing, { allow: false, reason: 'no network named nope is defined in the policy' }, 'even for root the name must exist');
  t.match(d(p, { caller: kvm, via: { kind: 'network', name: 'vepanet' }, mode: 'private' }), { allow: false, reason: /is mode vepa, not private/ });
  t.match(d(p, { caller: kvm, via: { kind: 'network', name: 'vepanet' }, dev: { name: 'enp3s0', altNames: ['eth0'] } }),
    { allow: false, reason: /is device eth0, but the device found is enp3s0 \(eth0 is one of its alternative names\)/ });
  t.match(d(p, { caller: kvm, via: { kind: 'network', name: 'vepanet' }, queues: 2 }), { allow: false, reason: /^no rule .* the use of network vepanet \(eth0 in mode vepa\) with 2 queues; .*at most 1 queue/ });
});

t.test('pools: explicit lists and the VFs of a PF', async (t) => {
  const p = policy('pool lab dev eth1,eth2\npool vfs pf enp3s0f0\nallow user alice pool lab\nallow group kvm pool vfs queues 2\n');
  t.same(resolvePool(p, 'vfs').members, { kind: 'pf', pf: 'enp3s0f0' });
  t.throws(() => resolvePool(p, 'nope'), /no pool named nope is defined in the policy/);
  const lab = (dev: string, over: Partial<PolicyRequest> = {}) => d(p, { via: { kind: 'pool', name: 'lab' }, dev: { name: dev, altNames: [] }, mode: 'passthru', ...over });
  t.equal(allowedBy(lab('eth2')), 3);
  t.match(lab('eth3'), { allow: false, reason: /eth3 is not in pool lab/ });
  t.equal(lab('eth1', { mode: 'vepa' }).allow, false, 'a pool rule means passthru unless it says otherwise');
  t.equal(allowedBy(d(p, { dev: { name: 'eth1', altNames: [] }, mode: 'passthru' })), 3, 'a pool member asked for directly');

  const vf = { name: 'enp3s0f0v3', altNames: [] };
  const pf = { name: 'enp3s0f0', altNames: [] };
  const kvm = { uid: BOB, gid: BOB, groups: [KVM] };
  t.equal(allowedBy(d(p, { caller: kvm, via: { kind: 'pool', name: 'vfs' }, dev: vf, pf, mode: 'passthru', queues: 2 })), 4);
  t.match(d(p, { caller: kvm, via: { kind: 'pool', name: 'vfs' }, dev: vf, pf: null, mode: 'passthru' }), { allow: false, reason: /enp3s0f0v3 is not in pool vfs/ });
  t.equal(d(p, { caller: kvm, dev: pf, mode: 'passthru' }).allow, false, 'the PF itself is not in its VF pool');
  const denyVf = policy('pool vfs pf enp3s0f0\nallow pool vfs\ndeny dev enp3s0f0v3\n');
  t.equal(d(denyVf, { via: { kind: 'pool', name: 'vfs' }, dev: vf, pf, mode: 'passthru' }).allow, false, 'a deny on one member');
  t.equal(d(denyVf, { via: { kind: 'pool', name: 'vfs' }, dev: { name: 'enp3s0f0v4', altNames: [] }, pf, mode: 'passthru' }).allow, true, 'the others stay allowed');
  const denyPool = policy('pool vfs pf enp3s0f0\nallow all mode passthru\ndeny user alice pool vfs\n');
  t.equal(d(denyPool, { dev: vf, pf, mode: 'passthru' }).allow, false, 'deny pool covers its members asked for directly');
});

t.test('canonical names: alternative names and renames do not slip past a rule', async (t) => {
  const renamed = { name: 'eth0', altNames: ['uplink'] };
  t.equal(d(policy('allow dev uplink'), { dev: renamed }).allow, false, 'an allow rule naming an alternative name does not match');
  t.equal(d(policy('allow eth0\ndeny dev uplink'), { dev: renamed }).allow, false, 'a deny rule naming an alternative name does');
  t.equal(d(policy('allow all\ndeny dev secret'), { dev: { name: 'eth5', altNames: ['secret'] } }).allow, false);
  t.equal(d(policy('allow all mode passthru\npool p dev secret\ndeny pool p'), { dev: { name: 'eth5', altNames: ['secret'] }, mode: 'passthru' }).allow, false,
    'also through a pool');
  t.equal(d(policy('allow all mode passthru\npool vfs pf pf0alt\ndeny pool vfs'), { dev: { name: 'vf1', altNames: [] }, pf: { name: 'pf0', altNames: ['pf0alt'] }, mode: 'passthru' }).allow, false,
    'and through the alternative name of a PF');
});

t.test('uid 0 may do anything', async (t) => {
  const root = { uid: 0, gid: 0, groups: [] };
  t.match(d(policy(''), { caller: root, mode: 'passthru', queues: 256, vhost: 'on', netns: { isInitial: false, names: [], notes: [] } }),
    { allow: true, vhost: true, rule: undefined, reason: 'uid 0 may do anything' });
  t.match(d(policy('deny all'), { caller: root }), { allow: true }, 'deny rules do not bind root');
  t.equal(d(policy('allow user root eth0'), { caller: { uid: 1, gid: 0, groups: [0] } }).allow, false, 'gid 0 is not root');
  t.match(d(policy('allow all'), { caller: root, vhost: 'try' }), { allow: true, vhost: true });
});

t.test('requests that make no sense are refused', async (t) => {
  const p = policy('allow all');
  t.match(d(p, { queues: 0 }), { allow: false, reason: /invalid request: 0 queues/ });
  t.match(d(p, { queues: 257 }), { allow: false });
  t.match(d(p, { queues: 1.5 }), { allow: false });
  t.match(d(p, { mode: 'source' as 'vepa' }), { allow: false, reason: /unknown mode/ });
  t.match(d(p, { vhost: 'maybe' as 'on' }), { allow: false, reason: /unknown vhost/ });
  t.match(d(p, { caller: { uid: -1, gid: 0, groups: [] } }), { allow: false, reason: /invalid id -1/ });
});

t.test('the one-line refusal and the audit line', async (t) => {
  const p = policy('allow eth0\ndeny user mallory eth0\n');
  const r = req({ caller: { uid: MALLORY, gid: MALLORY, groups: [], name: 'mallory' } });
  const denied = decide(p, r, accounts);
  if (denied.allow) throw new Error('expected a refusal');
  t.equal(oneLine('qemu-net-helper-vepa', denialError(denied)),
    'qemu-net-helper-vepa: the policy denies mallory (uid 1002) the use of eth0 in mode vepa (deny rule at /etc/qemu/net-helper.conf:2); ask an administrator to allow it in the policy (see net-helper.conf(5))');
  t.equal(auditLine(r, denied),
    'uid=1002 gid=1002 program=qemu-net-helper-vepa dev="eth0" via=dev mode=vepa queues=1 vhost=off netns=host result=deny rule=/etc/qemu/net-helper.conf:2 ' +
    'reason="the policy denies mallory (uid 1002) the use of eth0 in mode vepa (deny rule at /etc/qemu/net-helper.conf:2)"');
  const ok = req({ via: { kind: 'network', name: 'n' }, netns: { isInitial: false, names: ['lab1'], notes: [] }, vhost: 'try' });
  const allowed = decide(policy('network n dev eth0 mode vepa\nallow network n netns lab1'), ok, accounts);
  t.equal(auditLine(ok, allowed),
    'uid=1000 gid=1000 program=qemu-net-helper-vepa dev="eth0" via="network:n" mode=vepa queues=1 vhost=try netns=lab1 result=allow vhost_granted=0 allmulti=1 rule=/etc/qemu/net-helper.conf:2');
  t.notMatch(auditLine(req({ program: 'a b\nc' }), allowed), /\n/, 'no newline can get into the audit line');
});

t.test('the link limit: most specific statement wins, the largest among equals, 16 by default, none for root', async (t) => {
  const alice = { uid: ALICE, gid: ALICE, groups: [KVM] };
  const bob = { uid: BOB, gid: BOB, groups: [] };
  t.same(linkLimit(policy('allow eth0'), alice, accounts), { links: DEFAULT_LINK_LIMIT, where: undefined }, 'the built-in default');
  t.equal(DEFAULT_LINK_LIMIT, 16);
  t.match(describeLimit(linkLimit(policy(''), alice, accounts)!), /built-in default/);
  t.equal(linkLimit(policy('limit links 1'), { uid: 0, gid: 0, groups: [] }, accounts), undefined, 'root has no limit');
  const p = policy('limit links 2\nlimit group kvm links 8\nlimit group users links 32\nlimit user bob links 1\n');
  t.same(linkLimit(p, alice, accounts), { links: 8, where: { file: FILE, line: 2 } }, 'a group limit beats everyone');
  t.same(linkLimit(p, bob, accounts), { links: 1, where: { file: FILE, line: 4 } }, 'a user limit beats all, even when smaller');
  t.same(linkLimit(p, { ...alice, groups: [KVM, USERS] }, accounts)?.links, 32, 'the largest of several group limits');
  t.same(linkLimit(p, { uid: MALLORY, gid: MALLORY, groups: [] }, accounts)?.links, 2, 'everyone else: the everyone limit');
  t.equal(describeLimit(linkLimit(p, bob, accounts)!), `the limit at ${FILE}:4`);
  const broken = { uidOf: () => { throw new Error('nss down'); }, gidOf: () => { throw new Error('nss down'); } };
  t.same(linkLimit(policy('limit links 3\nlimit user alice links 50'), alice, broken)?.links, 3, 'a statement whose names cannot be looked up does not apply');
});

t.test('audit lines quote every name a caller chose, so none can forge a field', async (t) => {
  const r = req({ dev: { name: 'eth0', altNames: [] }, via: { kind: 'network', name: 'lan uid=0' } });
  const line = auditLine(r, decide(policy('allow eth0'), r, accounts));
  t.match(line, / dev="eth0" via="network:lan uid=0" /);
  t.notMatch(line.replace(/"[^"]*"/g, '""'), / uid=0/, 'no uid=0 outside quotes');
});

t.test('persistent links need a rule that allows them', async (t) => {
  const p = policy('allow user alice dev eth0\nallow user bob dev eth0 persistent\n');
  const refused = d(p, { persistent: true });
  t.equal(refused.allow, false);
  t.match(refused.reason, /does not allow persistent links/);
  t.equal(d(p, { persistent: true, caller: { uid: BOB, gid: BOB, groups: [] } }).allow, true);
  t.equal(d(p, {}).allow, true, 'an ordinary request is not affected');
  t.match(auditLine(req({ persistent: true }), refused), / persistent=1 /);
});

t.test('allmulti: on by default, off where the rule says so, and an explicit on needs a rule that keeps it', async (t) => {
  const p = policy('allow user alice dev eth0\nallow user bob dev eth0 allmulti off\n');
  const bob = { caller: { uid: BOB, gid: BOB, groups: [] } };
  t.match(d(p, {}), { allow: true, allmulti: true }, 'default: on');
  t.match(d(p, { allmulti: 'off' }), { allow: true, allmulti: false }, 'asked off');
  t.match(d(p, bob), { allow: true, allmulti: false }, 'the rule turns it off');
  const refused = d(p, { ...bob, allmulti: 'on' });
  t.equal(refused.allow, false, 'explicit on against allmulti off is refused, not quietly changed');
  t.match(refused.reason, /turns allmulticast off/);
  t.match(d(p, { caller: { uid: 0, gid: 0, groups: [] } }), { allow: true, allmulti: true }, 'root: on by default');
  t.match(d(p, { caller: { uid: 0, gid: 0, groups: [] }, allmulti: 'off' }), { allow: true, allmulti: false }, 'root: as asked');
  t.match(auditLine(req({}), d(p, {})), / allmulti=1/);
  t.match(auditLine(req(bob), d(p, bob)), / allmulti=0/);
});

t.test('VLANs: an untagged rule grants no VLAN, a vlan rule grants its ids, a network its own', async (t) => {
  const p = policy('allow user alice dev eth0\nallow user bob dev eth0 vlan 100-101\nnetwork lan7 dev eth0 mode vepa vlan 7\nallow user alice network lan7\n');
  const bob = { caller: { uid: BOB, gid: BOB, groups: [] } };
  t.equal(d(p, {}).allow, true, 'untagged: allowed');
  const tagged = d(p, { vlan: 100 });
  t.equal(tagged.allow, false, 'alice\'s untagged rule does not grant VLAN 100');
  t.match(tagged.allow ? '' : tagged.reason, /eth0 VLAN 100 in mode vepa.*allows no VLAN/);
  t.equal(d(p, { ...bob, vlan: 101 }).allow, true, 'bob: VLAN 101 of his range');
  const untagged = d(p, bob);
  t.equal(untagged.allow, false, 'a VLAN grant is not an untagged grant');
  t.match(untagged.allow ? '' : untagged.reason, /allows only VLAN 100-101, not untagged use/);
  const outside = d(p, { ...bob, vlan: 102 });
  t.match(outside.allow ? '' : outside.reason, /allows only VLAN 100-101/);
  t.equal(d(p, { via: { kind: 'network', name: 'lan7' }, vlan: 7 }).allow, true, 'the network grants its VLAN');
  const wrong = d(p, { via: { kind: 'network', name: 'lan7' } });
  t.match(wrong.allow ? '' : wrong.reason, /network lan7 .* is VLAN 7, but the request is untagged/);
  t.equal(d(p, { caller: { uid: 0, gid: 0, groups: [] }, vlan: 4094 }).allow, true, 'root: any VLAN');
  t.match(auditLine(req({ ...bob, vlan: 101 }), d(p, { ...bob, vlan: 101 })), / vlan=101 /);
  t.equal(d(p, { vlan: 0 }).allow, false, 'an id out of range is an invalid request');
});
