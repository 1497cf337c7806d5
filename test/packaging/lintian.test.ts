// Issue 15: Debian's lintian (--info --pedantic) on the built package finds
// no error and no warning; what bundling Node inherently brings is overridden
// in packaging/debian/lintian-overrides, each override with its reason, and
// every override is still needed (lintian would report an unused one). Built with gzip -1: Debian 12's lintian
// calls zstd members malformed, and xz takes minutes.
//
// Runs as root or under CI (CI=true: it must run); elsewhere it skips.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildAll } from '../../packaging/build.ts';
import { DEB_BUILD, buildDeb } from '../../packaging/deb.ts';
import { REPO } from '../support/paths.ts';
import { IS_CI } from '../support/privileged.ts';

const OVERRIDES = join(REPO, 'packaging/debian/lintian-overrides');

t.test('every override says why, on the line before it', async (t) => {
  const lines = readFileSync(OVERRIDES, 'utf8').split('\n');
  const overrides = lines.map((l, i) => [l, i] as const).filter(([l]) => l.trim() !== '' && !l.startsWith('#'));
  t.ok(overrides.length > 0);
  for (const [line, i] of overrides) {
    t.match(line, /^qemu-net-helper: [a-z0-9-]+( |$)/, `line ${i + 1} is an override of this package`);
    t.match(lines[i - 1], /^# \S.{10,}/, `line ${i + 1} (${line}) has its justification above it`);
  }
});

const mustRun = IS_CI || process.getuid?.() === 0;
const haveLintian = spawnSync('sh', ['-c', 'command -v lintian'], { stdio: 'ignore' }).status === 0;

t.test('lintian --info --pedantic: no E: or W: that is not overridden, no unused override', { skip: mustRun ? false : 'needs root or CI=true' }, async (t) => {
  if (!haveLintian) throw new Error('lintian is not installed; apt-get install lintian (bash .ci/setup does)');
  const dist = mkdtempSync(join(tmpdir(), 'qnh-lintian-test-'));
  t.teardown(() => rmSync(dist, { recursive: true, force: true }));
  const started = Date.now();
  const deb = buildDeb(dist, await buildAll({ ...DEB_BUILD, distDir: dist }), 'gzip');
  const built = Date.now();
  // --fail-on error,warning: exit status 2 on any E: or W: not overridden.
  const r = spawnSync('lintian', ['--info', '--pedantic', '--fail-on', 'error,warning', '--status-log', '--no-cfg', deb], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 600_000 });
  t.comment(`build ${((built - started) / 1000).toFixed(1)} s, lintian ${((Date.now() - built) / 1000).toFixed(1)} s`);
  t.equal(r.error, undefined, 'lintian ran');
  t.match(r.stderr, /^complete qemu-net-helper_\S+ \(/m, 'and processed the package');
  const tags = r.stdout.split('\n').map((l) => /^([EWIPX]): qemu-net-helper(?: binary)?: (\S+)(.*)$/.exec(l)).filter((m) => m !== null);
  const bad = tags.filter((m) => m[1] === 'E' || m[1] === 'W').map((m) => m[0]);
  t.same(bad, [], 'no error or warning that is not overridden');
  const unused = tags.filter((m) => m[2] === 'unused-override' || m[2] === 'mismatched-override').map((m) => m[0]);
  t.same(unused, [], 'every override matches something');
  // Info and pedantic tags are not failures for lintian, but ours should not be among them.
  const rest = tags.filter((m) => m[1] === 'I' || m[1] === 'P' || m[1] === 'X').map((m) => m[0]);
  t.same(rest, [], 'no info, pedantic or experimental tag either');
  t.equal(r.status, 0, `lintian's own verdict (--fail-on error,warning): ${r.stderr.trim().split('\n').filter((l) => !/root privileges|^complete /.test(l)).join(' | ')}`);
});
