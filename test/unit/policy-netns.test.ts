// Identifying the helper's network namespace for the policy: PID 1's or not,
// and which /run/netns names it has; narrow answers when anything is unknown.

import t from 'tap';
import { memoryPolicyFs } from '../../lib/policy/memory-fs.ts';
import { identifyNetns, nodeNetnsProbe, policyNetnsNames, type NetnsProbe, type NsId } from '../../lib/policy/netns.ts';
import { assemblePolicy, parsePolicyText } from '../../lib/policy/parse.ts';

const NSFS = 4n;
const HOST: NsId = { dev: NSFS, ino: 4026531840n };
const LAB: NsId = { dev: NSFS, ino: 4026532177n };

function policy(text: string) {
  return assemblePolicy(parsePolicyText(text, '/p.conf').statements, ['/p.conf']).policy;
}

function probe(self: NsId, named: Record<string, NsId>, init: NsId | Error = HOST): NetnsProbe & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    self: () => self,
    init: () => {
      if (init instanceof Error) throw init;
      return init;
    },
    named: (name) => {
      asked.push(name);
      return named[name];
    },
  };
}

const P = policy('allow eth0 netns lab1,host\nallow eth1 netns lab2\ndeny eth2 netns lab1\n');

t.test('the names a policy mentions, each once', async (t) => {
  t.same(policyNetnsNames(P), ['lab1', 'lab2']);
  t.same(policyNetnsNames(policy('allow eth0')), []);
});

t.test('host, named, and neither', async (t) => {
  t.same(identifyNetns(P, probe(HOST, { lab1: LAB })), { isInitial: true, names: [], notes: [] });
  const p = probe(LAB, { lab1: LAB, lab2: { dev: NSFS, ino: 1n } });
  t.same(identifyNetns(P, p), { isInitial: false, names: ['lab1'], notes: [] });
  t.same(p.asked, ['lab1', 'lab2'], 'only the names the policy mentions are looked at');
  t.same(identifyNetns(P, probe({ dev: NSFS, ino: 99n }, { lab1: LAB })), { isInitial: false, names: [], notes: [] }, "a user's own namespace");
  t.same(identifyNetns(P, probe(LAB, { lab1: { dev: 5n, ino: LAB.ino } })).names, [], 'the device number counts too');
  t.same(identifyNetns(P, probe(HOST, { lab1: HOST })), { isInitial: true, names: ['lab1'], notes: [] }, 'a name for the host namespace');
});

t.test('what cannot be read makes the answer narrower, with a note', async (t) => {
  const noInit = identifyNetns(P, probe(HOST, {}, new Error('/proc/1/ns/net: EACCES')));
  t.same(noInit, { isInitial: false, names: [], notes: ["cannot tell whether this is the host's network namespace (that of PID 1): /proc/1/ns/net: EACCES"] });
  const broken: NetnsProbe = { self: () => LAB, init: () => HOST, named: () => { throw new Error('/run/netns is writable by others (mode 0777)'); } };
  t.same(identifyNetns(P, broken), { isInitial: false, names: [], notes: ['cannot check /run/netns/lab1: /run/netns is writable by others (mode 0777)', 'cannot check /run/netns/lab2: /run/netns is writable by others (mode 0777)'] });
  const noSelf: NetnsProbe = { self: () => { throw new Error('EACCES'); }, init: () => HOST, named: () => LAB };
  t.match(identifyNetns(P, noSelf), { isInitial: false, names: [], notes: [/cannot identify this network namespace: EACCES/] });
});

t.test('the real probe trusts /run/netns only when root owns it and nobody else can write it', async (t) => {
  const entry = { type: 'file' as const, mode: 0o444, ino: 4242 };
  const id = (table: Parameters<typeof memoryPolicyFs>[0]) => nodeNetnsProbe({ fs: memoryPolicyFs(table) }).named('lab1');
  t.same(id({ '/run/netns/lab1': entry }), { dev: 1n, ino: 4242n });
  t.equal(id({ '/run/netns/other': entry }), undefined, 'no such name');
  t.equal(id({ '/run/other': {} }), undefined, 'no /run/netns at all');
  t.throws(() => id({ '/run/netns/lab1': entry, '/run/netns': { type: 'dir', mode: 0o777 } }), /\/run\/netns is writable by its group and by others/);
  t.throws(() => id({ '/run/netns/lab1': entry, '/run/netns': { type: 'dir', uid: 1000 } }), /\/run\/netns is owned by uid 1000/);
  t.throws(() => id({ '/run/netns/lab1': entry, '/run': { type: 'dir', mode: 0o757 } }), /\/run is writable by others/);
  t.throws(() => id({ '/run/netns/lab1': { type: 'symlink' } }), /is a symbolic link/);
  t.throws(() => nodeNetnsProbe({ fs: memoryPolicyFs({}) }).named('../etc'), /may contain only/);
});
