// Issue 15: the Debian package is reproducible. Two complete builds of the
// same commit (`npm run deb`'s steps: the single executables, then dpkg-deb
// with the tests' fast zstd compression) give byte-identical packages. The
// second build runs from another working directory, another TMPDIR and
// another umask, so that nothing of where or how it was started leaks in.
// Needs no root: dpkg-deb --root-owner-group makes root's files as any user.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BuildError, buildAll, sourceDateEpoch } from '../../packaging/build.ts';
import { DEB_BUILD, buildDeb } from '../../packaging/deb.ts';
import { REPO } from '../support/paths.ts';

function sh(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const lastCommit = Number(sh(['git', '-C', REPO, 'log', '-1', '--format=%ct']).trim());

t.test('SOURCE_DATE_EPOCH: the variable, else the last commit time; nonsense refused', async (t) => {
  t.equal(sourceDateEpoch({ SOURCE_DATE_EPOCH: '1700000000' }), 1700000000);
  t.equal(sourceDateEpoch({}), lastCommit, 'unset: git log -1 --format=%ct');
  t.equal(sourceDateEpoch({ SOURCE_DATE_EPOCH: '' }), lastCommit, 'empty counts as unset');
  t.throws(() => sourceDateEpoch({ SOURCE_DATE_EPOCH: 'yesterday' }), new BuildError('SOURCE_DATE_EPOCH=yesterday is not a number of seconds since 1970'));
});

t.test('two builds of one commit give byte-identical .debs', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'qnh-repro-test-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const saved = { cwd: process.cwd(), tmp: process.env.TMPDIR, sde: process.env.SOURCE_DATE_EPOCH };
  t.teardown(() => {
    process.chdir(saved.cwd);
    if (saved.tmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved.tmp;
    if (saved.sde === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = saved.sde;
  });
  // Without SOURCE_DATE_EPOCH, as a developer runs npm run deb.
  delete process.env.SOURCE_DATE_EPOCH;

  const started = Date.now();
  const first = join(work, 'one');
  const info1 = await buildAll({ ...DEB_BUILD, distDir: first });
  const deb1 = buildDeb(first, info1, 'zstd');
  const oneBuild = (Date.now() - started) / 1000;

  const second = join(work, 'two');
  const otherTmp = join(work, 'tmp');
  mkdirSync(otherTmp);
  process.env.TMPDIR = otherTmp;
  process.chdir(work);
  const umask = process.umask(0o077);
  let deb2: string;
  try {
    const info2 = await buildAll({ ...DEB_BUILD, distDir: second });
    deb2 = buildDeb(second, info2, 'zstd');
  } finally {
    process.umask(umask);
  }
  t.comment(`one build: ${oneBuild.toFixed(1)} s, both: ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const a = readFileSync(deb1);
  const b = readFileSync(deb2);
  if (a.equals(b)) {
    t.pass(`byte-identical (${(a.length / 2 ** 20).toFixed(1)} MiB)`);
  } else {
    // Say where: the executables, or the package's listing (modes, times, sizes).
    for (const p of info1.programs) {
      t.ok(readFileSync(join(first, 'bin', p)).equals(readFileSync(join(second, 'bin', p))), `dist/bin/${p} is the same`);
    }
    t.equal(sh(['dpkg-deb', '--contents', deb2]), sh(['dpkg-deb', '--contents', deb1]), 'the same files, modes and times');
    t.equal(sh(['dpkg-deb', '--info', deb2]), sh(['dpkg-deb', '--info', deb1]), 'the same control files');
    t.fail(`${deb1} and ${deb2} differ`);
  }
  // The dates in it are the last commit's.
  const listing = sh(['dpkg-deb', '--contents', deb1]);
  const date = new Date(lastCommit * 1000).toISOString().replace('T', ' ').slice(0, 19);
  t.ok(listing.split('\n').filter(Boolean).every((l) => l.includes(` ${date.slice(0, 16)} `)), `every file is dated ${date} (the last commit)`);
  const changelog = sh(['sh', '-c', `dpkg-deb --fsys-tarfile '${deb1}' | tar -xOf - ./usr/share/doc/qemu-net-helper/changelog.Debian.gz | gzip -dc`]);
  t.match(changelog, new Date(lastCommit * 1000).toUTCString().replace('GMT', '+0000'), 'changelog.Debian is dated by the last commit');
});
