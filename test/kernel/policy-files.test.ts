// The policy loader and namespace probe on the real file system and kernel:
// files chowned and chmodded under a private temporary directory (the real
// /etc is never touched), symbolic links and FIFOs, directory order from a
// real readdir, and /run/netns names of a real throwaway namespace.

import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { PolicyError } from '../../lib/policy/errors.ts';
import { loadPolicy, readPolicy } from '../../lib/policy/load.ts';
import { identifyNetns, nodeNetnsProbe } from '../../lib/policy/netns.ts';
import { createNetns } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';

const skip = privilegedSkipReason(['ip', 'mkfifo']);
if (skip) t.plan(0, skip);
else {
  const root = mkdtempSync(join(tmpdir(), 'qnh-policy-'));
  chmodSync(root, 0o755);
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;

  /** A fresh root-owned 0755 directory with the given files (mode 0644), for one case. */
  function tree(files: Record<string, string>): string {
    const dir = join(root, `case${++n}`);
    mkdirSync(dir, { mode: 0o755 });
    for (const [name, content] of Object.entries(files)) {
      const path = join(dir, name);
      mkdirSync(join(path, '..'), { recursive: true, mode: 0o755 });
      writeFileSync(path, content, { mode: 0o644 });
      chmodSync(path, 0o644);
    }
    return dir;
  }

  function problems(path: string): string[] {
    return readPolicy(path).problems.map((p) => `${p.file ? `${p.file}:${p.line}: ` : ''}${p.message}`);
  }

  t.test('a root-owned policy with a directory include loads from the real file system', async (t) => {
    const dir = tree({
      'net-helper.conf': '',
      'net-helper.d/b.conf': 'allow user bob eth1\n',
      'net-helper.d/a.conf': 'allow user alice eth0 queues 4\n',
      'net-helper.d/a.conf~': 'alow broken\n',
      'net-helper.d/.x.conf': 'alow broken\n',
    });
    writeFileSync(join(dir, 'net-helper.conf'), `include ${dir}/net-helper.d\nnetwork vepanet dev eth0 mode vepa\nallow group kvm network vepanet\n`);
    const policy = loadPolicy(join(dir, 'net-helper.conf'));
    t.same(policy.files, [join(dir, 'net-helper.conf'), join(dir, 'net-helper.d/a.conf'), join(dir, 'net-helper.d/b.conf')]);
    t.equal(policy.rules.length, 3);
    t.equal(policy.networks.get('vepanet')?.dev, 'eth0');
  });

  t.test('owner, group- and other-writable files and directories, symlinks, FIFOs', async (t) => {
    const owned = tree({ 'p.conf': 'allow all\n' });
    chownSync(join(owned, 'p.conf'), 1000, 1000);
    t.same(problems(join(owned, 'p.conf')), [`${owned}/p.conf is owned by uid 1000, not by root`]);
    t.throws(() => loadPolicy(join(owned, 'p.conf')), PolicyError);

    const gw = tree({ 'p.conf': 'allow all\n' });
    chmodSync(join(gw, 'p.conf'), 0o664);
    t.same(problems(join(gw, 'p.conf')), [`${gw}/p.conf is writable by its group (mode 0664)`]);

    const ow = tree({ 'p.conf': 'allow all\n' });
    chmodSync(join(ow, 'p.conf'), 0o646);
    t.same(problems(join(ow, 'p.conf')), [`${ow}/p.conf is writable by others (mode 0646)`]);

    const dirw = tree({ 'p.conf': 'allow all\n' });
    chmodSync(dirw, 0o777);
    t.same(problems(join(dirw, 'p.conf')), [`${dirw} is writable by its group and by others (mode 0777)`], 'parent directory writable');

    const dirOwned = tree({ 'p.conf': 'allow all\n' });
    chownSync(dirOwned, 1000, 1000);
    t.same(problems(join(dirOwned, 'p.conf')), [`${dirOwned} is owned by uid 1000, not by root`]);

    const sticky = tree({ 'p.conf': 'allow all\n' });
    chmodSync(sticky, 0o1777);
    t.ok(loadPolicy(join(sticky, 'p.conf')), 'a sticky root-owned directory is fine');

    const link = tree({ 'real.conf': 'allow all\n' });
    symlinkSync(join(link, 'real.conf'), join(link, 'p.conf'));
    t.same(problems(join(link, 'p.conf')), [`${link}/p.conf is a symbolic link, and the policy's files may not be`]);
    symlinkSync(link, join(root, `linkdir${n}`));
    t.same(problems(join(root, `linkdir${n}`, 'real.conf')), [`${root}/linkdir${n} is a symbolic link, and the policy's paths may not contain one`]);

    const withIncludes = tree({ 'p.conf': '', 'd/a.conf': 'allow eth0\n', 'w.conf': 'allow all\n' });
    writeFileSync(join(withIncludes, 'p.conf'), `include ${withIncludes}/d\ninclude ${withIncludes}/w.conf\n`);
    spawnSync('mkfifo', [join(withIncludes, 'd', 'fifo.conf')]);
    chmodSync(join(withIncludes, 'w.conf'), 0o666);
    t.same(problems(join(withIncludes, 'p.conf')), [
      `${withIncludes}/p.conf:1: ${withIncludes}/d/fifo.conf is not a regular file`,
      `${withIncludes}/p.conf:2: ${withIncludes}/w.conf is writable by its group and by others (mode 0666)`,
    ], 'a FIFO is refused without blocking; an included writable file is refused');
  });

  t.test('an include cycle and a missing file on the real file system', async (t) => {
    const dir = tree({ 'a.conf': '', 'b.conf': '' });
    writeFileSync(join(dir, 'a.conf'), `include ${dir}/b.conf\n`);
    writeFileSync(join(dir, 'b.conf'), `include ${dir}/a.conf\ninclude ${dir}/missing.conf\n`);
    t.same(problems(join(dir, 'a.conf')), [
      `${dir}/b.conf:1: include cycle: ${dir}/a.conf -> ${dir}/b.conf -> ${dir}/a.conf`,
      `${dir}/b.conf:2: ${dir}/missing.conf does not exist`,
    ]);
  });

  t.test('a throwaway namespace is recognised by its /run/netns name, and the host is not', async (t) => {
    const ns = createNetns(t, 'policy');
    const script = `
      import { identifyNetns, nodeNetnsProbe } from ${JSON.stringify(`${REPO}lib/policy/netns.ts`)};
      const policy = { files: [], networks: new Map(), pools: new Map(), rules: [{ netns: { host: false, names: [${JSON.stringify(ns.name)}, 'qnh-no-such-ns'] } }] };
      process.stdout.write(JSON.stringify(identifyNetns(policy, nodeNetnsProbe())));
    `;
    const r = spawnSync('ip', ['netns', 'exec', ns.name, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    const inside = JSON.parse(r.stdout);
    t.same(inside.names, [ns.name], 'inside: named');
    t.equal(inside.isInitial, false, 'inside: not the host');

    const policy = { files: [], networks: new Map(), pools: new Map(), rules: [] as never[] };
    const fake = { ...policy, rules: [{ netns: { host: false, names: [ns.name] } }] } as unknown as Parameters<typeof identifyNetns>[0];
    const outside = identifyNetns(fake, nodeNetnsProbe());
    t.same(outside.names, [], 'outside: the name is not ours');
    if (outside.notes.length === 0) t.equal(outside.isInitial, true, 'outside: the host');
    else t.equal(outside.isInitial, false, `outside: unknown, so not the host (${outside.notes.join('; ')})`);
  });
}
