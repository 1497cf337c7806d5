// Loading the policy from an injected file system: ownership and mode of
// every file and directory, symbolic links, includes (files, directories,
// cycles, depth, twice), limits, and fail-closed refusal with file:line.

import t, { type Test } from 'tap';
import { checkConfig, formatCheckReport } from '../../lib/policy/check.ts';
import { PolicyError } from '../../lib/policy/errors.ts';
import { loadPolicy, POLICY_PATH, readPolicy } from '../../lib/policy/load.ts';
import { memoryPolicyFs, type MemoryEntry } from '../../lib/policy/memory-fs.ts';
import { tableAccounts } from '../../lib/policy/accounts.ts';
import { HelperError, oneLine } from '../../lib/errors.ts';

const TOP = POLICY_PATH;

function fsWith(table: Record<string, MemoryEntry>) {
  return memoryPolicyFs(table);
}

/** Loads and expects a refusal; returns every problem as "file:line: message". */
function refused(t: Test, table: Record<string, MemoryEntry>, path = TOP): string[] {
  const fs = fsWith(table);
  const r = readPolicy(path, { fs });
  t.ok(r.policy === undefined, 'refused');
  let thrown: unknown;
  try {
    loadPolicy(path, { fs });
  } catch (err) {
    thrown = err;
  }
  t.ok(thrown instanceof PolicyError && thrown instanceof HelperError, 'loadPolicy throws a PolicyError');
  return r.problems.map((p) => `${p.file ?? ''}${p.line !== undefined ? ':' + p.line : ''}: ${p.message}`);
}

t.test('a good policy with a directory include loads, in sorted order', async (t) => {
  const fs = fsWith({
    [TOP]: { content: 'include /etc/qemu/net-helper.d\nallow eth0\n' },
    '/etc/qemu/net-helper.d/20-b.conf': { content: 'allow eth2\n' },
    '/etc/qemu/net-helper.d/10-a.conf': { content: 'allow eth1\n' },
    '/etc/qemu/net-helper.d/30-c.conf.dpkg-old': { content: 'alow broken\n' },
    '/etc/qemu/net-helper.d/README': { content: 'not a policy\n' },
    '/etc/qemu/net-helper.d/.hidden.conf': { content: 'alow broken\n' },
    '/etc/qemu/net-helper.d/.conf': { content: 'alow broken\n' },
    '/etc/qemu/net-helper.d/notes': { type: 'dir' },
    '/etc/qemu/net-helper.d/link': { type: 'symlink' },
    '/etc/qemu/net-helper.d/B.conf': { content: 'allow eth3\n' },
  });
  const policy = loadPolicy(TOP, { fs });
  t.same(policy.files, [TOP, '/etc/qemu/net-helper.d/10-a.conf', '/etc/qemu/net-helper.d/20-b.conf', '/etc/qemu/net-helper.d/B.conf'],
    'byte order (digits before capitals), only *.conf, no dotfiles');
  t.same(policy.rules.map((r) => r.target.kind === 'dev' && r.target.names[0]), ['eth1', 'eth2', 'eth3', 'eth0'], 'includes expand in place');
  t.same(policy.rules.map((r) => `${r.where.file}:${r.where.line}`),
    ['/etc/qemu/net-helper.d/10-a.conf:1', '/etc/qemu/net-helper.d/20-b.conf:1', '/etc/qemu/net-helper.d/B.conf:1', `${TOP}:2`]);
  t.same(fs.reads, policy.files, 'nothing else was opened');
});

t.test('the top-level file is missing, a directory, a symlink', async (t) => {
  t.match(refused(t, { '/etc/qemu/other': {} }), [/^: \/etc\/qemu\/net-helper.conf does not exist$/]);
  t.match(refused(t, { [TOP]: { type: 'dir' } }), [/net-helper.conf is not a regular file/]);
  t.match(refused(t, { [TOP]: { type: 'symlink' } }), [/net-helper.conf is a symbolic link/]);
  t.match(refused(t, { [TOP]: { type: 'other' } }), [/is not a regular file/]);
  t.match(refused(t, { '/etc/qemu': { type: 'symlink' } }), [/^: \/etc\/qemu is a symbolic link/]);
  t.match(refused(t, { '/etc': { type: 'file' } }), [/\/etc is not a directory/]);
  t.match(refused(t, { [TOP]: { error: 'EACCES' } }), [/cannot examine .*net-helper.conf: EACCES/]);
});

t.test('ownership and modes of the file itself', async (t) => {
  t.same(refused(t, { [TOP]: { uid: 1000, content: 'allow eth0' } }), [`: ${TOP} is owned by uid 1000, not by root`]);
  t.same(refused(t, { [TOP]: { mode: 0o664, content: 'allow eth0' } }), [`: ${TOP} is writable by its group (mode 0664)`]);
  t.same(refused(t, { [TOP]: { mode: 0o646, content: 'allow eth0' } }), [`: ${TOP} is writable by others (mode 0646)`]);
  t.same(refused(t, { [TOP]: { mode: 0o666, content: 'allow eth0' } }), [`: ${TOP} is writable by its group and by others (mode 0666)`]);
  t.same(refused(t, { [TOP]: { mode: 0o1666, content: 'allow eth0' } }), [`: ${TOP} is writable by its group and by others (mode 1666)`], 'sticky does not excuse a file');
  t.ok(loadPolicy(TOP, { fs: fsWith({ [TOP]: { mode: 0o600, gid: 1000, content: 'allow eth0' } }) }), 'any group, unreadable by others: fine');
  t.ok(loadPolicy(TOP, { fs: fsWith({ [TOP]: { mode: 0o4755, content: 'allow eth0' } }) }), 'set-id bits do not matter');

  const fs = fsWith({ [TOP]: { uid: 1000, content: 'allow eth0' } });
  readPolicy(TOP, { fs });
  t.same(fs.reads, [], 'a file with the wrong owner is not even opened');
});

t.test('ownership and modes of every directory above', async (t) => {
  t.match(refused(t, { [TOP]: {}, '/etc/qemu': { type: 'dir', mode: 0o775 } }), ['/etc/qemu is writable by its group (mode 0775)']);
  t.match(refused(t, { [TOP]: {}, '/etc/qemu': { type: 'dir', uid: 1000 } }), ['/etc/qemu is owned by uid 1000, not by root']);
  t.match(refused(t, { [TOP]: {}, '/etc': { type: 'dir', mode: 0o757 } }), ['/etc is writable by others (mode 0757)']);
  t.match(refused(t, { [TOP]: {}, '/': { type: 'dir', mode: 0o777 } }), ['/ is writable by its group and by others (mode 0777)']);
  t.ok(loadPolicy('/tmp/x/p.conf', { fs: fsWith({ '/tmp/x/p.conf': { content: 'allow eth0' }, '/tmp': { type: 'dir', mode: 0o1777 } }) }),
    'a sticky, root-owned, world-writable directory (like /tmp) is fine above root-owned entries');
  t.match(refused(t, { '/tmp/x/p.conf': {}, '/tmp': { type: 'dir', mode: 0o1777, uid: 1000 } }, '/tmp/x/p.conf'), ['/tmp is owned by uid 1000, not by root'],
    'but only when root owns it');
  t.match(refused(t, { '/tmp/p.conf': { uid: 1000 }, '/tmp': { type: 'dir', mode: 0o1777 } }, '/tmp/p.conf'), ['/tmp/p.conf is owned by uid 1000, not by root'],
    'and the entry below is still checked');
});

t.test('included files are held to the same rules, and the include line is named', async (t) => {
  const base = (extra: Record<string, MemoryEntry>) => ({ [TOP]: { content: '# users\ninclude /etc/qemu/users.conf\n' }, ...extra });
  t.same(refused(t, base({ '/etc/qemu/users.conf': { uid: 1000, content: 'allow all' } })), [`${TOP}:2: /etc/qemu/users.conf is owned by uid 1000, not by root`]);
  t.same(refused(t, base({ '/etc/qemu/users.conf': { mode: 0o664 } })), [`${TOP}:2: /etc/qemu/users.conf is writable by its group (mode 0664)`]);
  t.same(refused(t, base({ '/etc/qemu/users.conf': { mode: 0o666 } })), [`${TOP}:2: /etc/qemu/users.conf is writable by its group and by others (mode 0666)`]);
  t.same(refused(t, base({ '/etc/qemu/users.conf': { type: 'symlink' } })), [`${TOP}:2: /etc/qemu/users.conf is a symbolic link, and the policy's files may not be`]);
  t.same(refused(t, base({})), [`${TOP}:2: /etc/qemu/users.conf does not exist`]);
  t.same(refused(t, { [TOP]: { content: 'include /home/alice/qemu.conf' }, '/home/alice/qemu.conf': {}, '/home/alice': { type: 'dir', uid: 1000, mode: 0o700 } }),
    [`${TOP}:1: /home/alice is owned by uid 1000, not by root`]);
  // A root-owned file included from a file that is itself writable: the first file is refused, so its include is never followed.
  const fs = fsWith({
    [TOP]: { content: 'include /etc/qemu/a.conf\n' },
    '/etc/qemu/a.conf': { mode: 0o666, content: 'include /etc/qemu/b.conf\n' },
    '/etc/qemu/b.conf': { content: 'allow all\n' },
  });
  const r = readPolicy(TOP, { fs });
  t.same(r.problems.map((p) => p.message), ['/etc/qemu/a.conf is writable by its group and by others (mode 0666)']);
  t.same(fs.reads, [TOP], 'the include inside the writable file was not followed');
  t.equal(r.policy, undefined);
});

t.test('a directory include: its own ownership, *.conf entries that are not regular files', async (t) => {
  const top = { [TOP]: { content: 'include /etc/qemu/d\n' } };
  t.same(refused(t, { ...top, '/etc/qemu/d': { type: 'dir', mode: 0o777 } }), [`${TOP}:1: /etc/qemu/d is writable by its group and by others (mode 0777)`]);
  t.same(refused(t, { ...top, '/etc/qemu/d/a.conf': { uid: 5 } }), [`${TOP}:1: /etc/qemu/d/a.conf is owned by uid 5, not by root`]);
  t.same(refused(t, { ...top, '/etc/qemu/d/a.conf': { type: 'symlink' } }), [`${TOP}:1: /etc/qemu/d/a.conf is a symbolic link, and the policy's files may not be`]);
  t.same(refused(t, { ...top, '/etc/qemu/d/sub.conf': { type: 'dir' } }), [`${TOP}:1: /etc/qemu/d/sub.conf is not a regular file`], 'no recursion into directories');
  t.match(refused(t, { ...top, '/etc/qemu/d/\xff.conf': {} }), [/whose name is not plain UTF-8/]);
  t.ok(loadPolicy(TOP, { fs: fsWith({ ...top, '/etc/qemu/d': { type: 'dir' } }) }).files.length === 1, 'an empty directory is fine');
  t.same(refused(t, { ...top, '/etc/qemu/d': { type: 'dir', error: 'EACCES' } }), [`${TOP}:1: cannot examine /etc/qemu/d: EACCES`]);
});

t.test('a parse error anywhere refuses everything, with file:line', async (t) => {
  const table = {
    [TOP]: { content: 'allow all\ninclude /etc/qemu/d\n' },
    '/etc/qemu/d/a.conf': { content: 'allow eth0\n\nallow eth1 queues 0x10\n' },
    '/etc/qemu/d/b.conf': { content: 'network n dev eth0 mode vepa\n' },
    '/etc/qemu/d/c.conf': { content: 'network n dev eth1 mode vepa\n' },
  };
  t.same(refused(t, table), [
    '/etc/qemu/d/a.conf:3: queues "0x10" is not a whole number from 1 to 256',
    '/etc/qemu/d/c.conf:1: network n is already defined at /etc/qemu/d/b.conf:1',
  ]);
  let err: unknown;
  try {
    loadPolicy(TOP, { fs: fsWith(table) });
  } catch (e) {
    err = e;
  }
  t.equal(oneLine('qemu-net-helper-vepa', err),
    'qemu-net-helper-vepa: policy refused: /etc/qemu/d/a.conf:3: queues "0x10" is not a whole number from 1 to 256 ' +
    '(and 1 more problem; list them with --check-config); write it in plain decimal, e.g. queues 4; until then the policy allows no one but root');
  t.equal((err as PolicyError).problems.length, 2);
});

t.test('include cycles, files included twice, depth, count and size limits', async (t) => {
  t.same(refused(t, {
    [TOP]: { content: 'include /etc/qemu/a.conf\n' },
    '/etc/qemu/a.conf': { content: 'allow eth0\ninclude /etc/qemu/b.conf\n' },
    '/etc/qemu/b.conf': { content: 'include /etc/qemu/a.conf\n' },
  }), ['/etc/qemu/b.conf:1: include cycle: /etc/qemu/a.conf -> /etc/qemu/b.conf -> /etc/qemu/a.conf']);
  t.same(refused(t, { [TOP]: { content: 'include /etc/qemu/net-helper.conf\n' } }),
    [`${TOP}:1: include cycle: ${TOP} -> ${TOP}`], 'a file including itself');
  t.same(refused(t, { [TOP]: { content: 'include /etc/qemu/d\n' }, '/etc/qemu/d/a.conf': { content: 'include /etc/qemu/d\n' } }),
    ['/etc/qemu/d/a.conf:1: include cycle: /etc/qemu/d -> /etc/qemu/d/a.conf -> /etc/qemu/d'], 'through a directory');
  t.same(refused(t, {
    [TOP]: { content: 'include /etc/qemu/a.conf\ninclude /etc/qemu/a.conf\n' },
    '/etc/qemu/a.conf': { content: '\n' },
  }), [`${TOP}:2: /etc/qemu/a.conf is included twice; it was first included from ${TOP}:1`]);
  t.same(refused(t, {
    [TOP]: { content: 'include /etc/qemu/a.conf\ninclude /etc/qemu/hard.conf\n' },
    '/etc/qemu/a.conf': { ino: 7 },
    '/etc/qemu/hard.conf': { ino: 7 },
  }), [`${TOP}:2: /etc/qemu/hard.conf (the same file as /etc/qemu/a.conf) is included twice; it was first included from ${TOP}:1`], 'a hard link is the same file');

  // A chain TOP -> f1 -> f2 -> ... : 8 levels are fine, 9 are not.
  const chain = (levels: number) => {
    const table: Record<string, MemoryEntry> = { [TOP]: { content: 'include /etc/qemu/f1.conf\n' } };
    for (let i = 1; i <= levels; i++) table[`/etc/qemu/f${i}.conf`] = { content: i < levels ? `include /etc/qemu/f${i + 1}.conf\n` : 'allow eth0\n' };
    return table;
  };
  t.equal(loadPolicy(TOP, { fs: fsWith(chain(8)) }).files.length, 9);
  t.same(refused(t, chain(9)), ['/etc/qemu/f8.conf:1: includes are nested more than 8 deep']);

  const many: Record<string, MemoryEntry> = { [TOP]: { content: 'include /etc/qemu/d\n' } };
  for (let i = 0; i < 5; i++) many[`/etc/qemu/d/${i}.conf`] = { content: `allow eth${i}\n` };
  t.equal(loadPolicy(TOP, { fs: fsWith(many), limits: { maxFiles: 6 } }).rules.length, 5);
  t.same(readPolicy(TOP, { fs: fsWith(many), limits: { maxFiles: 5 } }).problems.map((p) => p.message), ['more than 5 policy files are included']);

  t.same(refused(t, { [TOP]: { content: `# ${'x'.repeat(999)}\n`.repeat(2000) } }), [`: ${TOP} is larger than 1048576 bytes`]);
  const big: Record<string, MemoryEntry> = { [TOP]: { content: 'include /etc/qemu/d\n' } };
  for (let i = 0; i < 5; i++) big[`/etc/qemu/d/${i}.conf`] = { content: `# ${'x'.repeat(999)}\n`.repeat(1000) };
  t.match(refused(t, big), [/the policy files together are larger than 4194304 bytes \(at \/etc\/qemu\/d\/4.conf\)/]);
});

t.test('the loader takes only absolute, canonical paths', async (t) => {
  t.match(readPolicy('net-helper.conf', { fs: fsWith({}) }).problems, [{ message: /is not an absolute path/ }]);
  t.match(readPolicy('/etc/qemu/../qemu/net-helper.conf', { fs: fsWith({}) }).problems, [{ message: /"\.\." component/ }]);
});

t.test('checkConfig lists every problem, reads drafts, warns', async (t) => {
  const draft = fsWith({
    '/home/alice/draft.conf': { uid: 1000, content: 'allow eth0\nalow eth1\ndeny all\nallow user bob,carol dev eth2\nallow eth3 mode passthru\n' },
    '/home/alice': { type: 'dir', uid: 1000 },
  });
  const r = checkConfig('/home/alice/draft.conf', { fs: draft });
  t.equal(r.ok, false);
  t.same(r.errors, [
    '/home/alice is owned by uid 1000, not by root; chown root /home/alice',
    '/home/alice/draft.conf is owned by uid 1000, not by root; chown root /home/alice/draft.conf',
    '/home/alice/draft.conf:2: unknown statement "alow"; a line starts with allow, deny, include, network, pool or limit',
  ], 'ownership is reported and the grammar is still checked');

  const good = fsWith({ [TOP]: { content: 'deny all\nallow user bob,carol dev eth2\nallow eth3 mode passthru\nnetwork n dev eth0 mode vepa\n' } });
  const ok = checkConfig(TOP, { fs: good, accounts: tableAccounts({ bob: 1001 }, {}) });
  t.equal(ok.ok, true);
  t.same(ok.errors, []);
  t.same(ok.warnings, [
    `${TOP}:1: this denies everything to everyone, and a deny always beats an allow, so none of the 2 allow rules can take effect`,
    `${TOP}:3: lets every user put a device in passthru mode, which gives a guest all of that device's traffic`,
    `${TOP}:2: there is no user named carol, so this part of the rule matches no one`,
  ]);
  t.equal(ok.summary, `${TOP}: ok: 1 file, 1 network, 0 pools, 2 allow rules, 1 deny rule`);
  t.equal(formatCheckReport(ok).split('\n').length, 5);
  t.match(formatCheckReport(checkConfig(TOP, { fs: fsWith({ '/etc/qemu/other': {} }) })), /^error: \/etc\/qemu\/net-helper.conf does not exist; create it.*\n.*refused: 1 error;/);
  t.same(checkConfig(TOP, { fs: fsWith({ [TOP]: { content: '# nothing yet\n' } }) }).warnings, ['there are no allow rules, so only root may use the helpers']);
});
