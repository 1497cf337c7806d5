// packaging/build.ts: a helper built into a single executable, the build's
// own verification, and what the executable does before the program runs
// (the SEA prologue and koffi loading from the compiled-in path).

import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULT_INSTALL_COMMAND, untrustedReason } from '../../lib/koffi-loader.ts';
import { VERSION } from '../../lib/version.ts';
import { HELPER_CAPABILITIES } from '../../lib/privileges.ts';
import { BuildError, buildExecutable, pinnedNode, verifyExecutable } from '../../packaging/build.ts';
import { HELPER_CAPS } from '../../packaging/deb.ts';
import { copyExecutable } from '../support/cap-node.ts';
import { addVethPair, createNetns } from '../support/netns.ts';
import { REPO } from '../support/paths.ts';
import { IS_CI, privilegedSkipReason } from '../support/privileged.ts';
import { REPO_KOFFI, trustedKoffiPath } from '../support/trusted-koffi.ts';

const CLEAN_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };
const VEPA_ENTRY = join(REPO, 'helpers/qemu-net-helper-vepa.ts');

function run(argv: string[], env: Record<string, string> = CLEAN_ENV) {
  return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env, timeout: 30_000 });
}

const work = mkdtempSync(join(tmpdir(), 'qnh-build-test-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

const TRUSTED_KOFFI = trustedKoffiPath(t);
const trustedKoffi = TRUSTED_KOFFI !== undefined;

t.test('a helper built with a trusted koffi path', async (t) => {
  const koffiPath = TRUSTED_KOFFI ?? REPO_KOFFI;
  const built = await buildExecutable(VEPA_ENTRY, { koffiPath, outDir: join(work, 'trusted') });
  t.equal(built.path, join(work, 'trusted/qemu-net-helper-vepa'));
  t.ok(built.packages.includes('debug'), 'npm packages are bundled');
  t.notOk(built.packages.some((p) => /koffi/.test(p)), "koffi's JS is not bundled");
  t.equal(lstatSync(built.path).mode & 0o7777, 0o755);
  const sections = run(['readelf', '-S', '--wide', built.path]).stdout;
  t.match(sections, /\.text/, 'readelf reads its sections');
  t.notMatch(sections, /\.symtab|\.debug_info/, 'built from a stripped node: no symbol table, no DWARF');
  t.ok(built.bytes < lstatSync(pinnedNode().path).size - 10 * 2 ** 20, `smaller than node by the stripped sections (${(built.bytes / 2 ** 20).toFixed(1)} MiB)`);

  const version = run([built.path, '--version']);
  t.equal(version.status, 0);
  const [first, second] = version.stdout.split('\n');
  t.match(first, /^qemu-net-helper-vepa \d+\.\d+\.\d+$/, 'the first line is what the program prints');
  t.equal(second, `runtime: Node v${pinnedNode().version} single executable; node options: --disable-sigusr1; koffi ${JSON.parse(readFileSync(join(REPO, 'node_modules/koffi/package.json'), 'utf8')).version} from ${koffiPath}; code cache accepted`);

  await t.test('the caller cannot add node options or make it write coverage files', async (t) => {
    const cov = join(work, 'coverage');
    const r = run([built.path, '--version'], { ...CLEAN_ENV, NODE_OPTIONS: '--inspect=127.0.0.1:9 --require=/nonexistent.js', NODE_V8_COVERAGE: cov });
    t.equal(r.status, 0, r.stderr);
    t.match(r.stdout, /node options: --disable-sigusr1;/, 'execArgv is only the built-in option');
    t.notOk(existsSync(cov), 'NODE_V8_COVERAGE: nothing was written');
  });

  if (!trustedKoffi) {
    if (IS_CI) throw new Error(`CI must run the program: koffi.node is untrusted (${untrustedReason(REPO_KOFFI, lstatSync)}) and this is not root`);
    t.pass(`skipped running the program: this checkout is not a trusted location for koffi.node (${untrustedReason(REPO_KOFFI, lstatSync)}), and copying it elsewhere needs root`);
    return;
  }
  await t.test('arguments go to the program, never to node', async (t) => {
    const r = run([built.path, '--inspect', '--version']);
    t.equal(r.status, 2, 'the helper itself rejects --inspect as an unknown option');
    t.match(r.stderr, /^qemu-net-helper-vepa: .*--inspect/);
  });

  await t.test('the program runs, with koffi dlopened from the compiled-in path', async (t) => {
    const r = run([built.path, '--help']);
    t.equal(r.status, 0, r.stderr);
    t.match(r.stdout, /^Usage: qemu-net-helper-vepa \(--dev=IFNAME \| --network=NAME\)/);
  });

  await t.test('and makes a macvtap for real', async (t) => {
    if (process.getuid?.() !== 0) return t.pass('skipped: needs root');
    const ns = createNetns(t, 'sea');
    addVethPair(ns);
    const r = run([...ns.exec, built.path, '--dev=v0', '--mac=52:54:00:5e:a0:01', '--probe', '--json']);
    t.equal(r.status, 0, r.stderr);
    t.match(JSON.parse(r.stdout), { lower: 'v0', mode: 'vepa', mac: '52:54:00:5e:a0:01' });
    t.same(ns.macvtaps(), [], '--probe deleted it again');
  });
});

// --help, --version and usage errors are answered before koffi loads
// (lib/early.ts), so they work when koffi.node is refused or missing; the
// rest of the run needs it and says why it cannot have it in one line.
t.test('an untrusted koffi path: --help works; a request is refused in one line, exit 1, nothing loaded', async (t) => {
  const dir = join(work, 'untrusted-lib'); // under the temporary directory: writable by others
  mkdirSync(dir);
  copyFileSync(REPO_KOFFI, join(dir, 'koffi.node'));
  const built = await buildExecutable(VEPA_ENTRY, { koffiPath: join(dir, 'koffi.node'), outDir: join(work, 'untrusted') });
  t.equal(run([built.path, '--version']).status, 0, '--version needs no koffi');
  const help = run([built.path, '--help']);
  t.equal(help.status, 0, help.stderr);
  t.match(help.stdout, /^Usage: qemu-net-helper-vepa /, '--help needs no koffi');
  const usage = run([built.path, '--dev=v0', '--queues=0', '--probe']);
  t.equal(usage.status, 2, 'a usage error needs no koffi');
  t.match(usage.stderr, /^qemu-net-helper-vepa: --queues="0" is not a whole number from 1 to 256;/);
  const r = run([built.path, '--dev=v0', '--probe']);
  t.equal(r.status, 1);
  t.match(r.stderr, new RegExp(`^qemu-net-helper-vepa: refusing to load koffi's native module: /\\S* is writable by (others|its group); install it again with ${DEFAULT_INSTALL_COMMAND.replace(/[.]/g, '\\.')}, or make`));
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.equal(r.stdout, '');

  // That answer is written before any confinement: setuid root is dropped for
  // good first; file capabilities stay held (capset needs koffi). Seen from
  // /proc while --help waits in write(2) on a full pipe (agent.py blocked).
  await t.test('installed setuid root or with file capabilities, another user\'s --help is written with their ids', async (t) => {
    const skip = privilegedSkipReason(['setcap', 'setpriv', 'python3']);
    if (skip) return t.pass(`skipped: ${skip}`);
    for (const [mode, install, held] of [
      ['setuid root', (p: string) => chmodSync(p, 0o4755), 0n],
      ['file capabilities', (p: string) => t.equal(run(['setcap', HELPER_CAPS, p]).status, 0, 'setcap'), HELPER_CAPABILITIES],
    ] as const) {
      const { path } = copyExecutable(t, 'qnh-installed-', built.path, 'qemu-net-helper-vepa');
      install(path);
      const r = run(['python3', join(REPO, 'test/cotenant/agent.py'), 'blocked', '--', 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', path, '--help']);
      t.equal(r.status, 0, r.stderr);
      const b = JSON.parse(r.stdout).blocked as { status: number; stdout: string; while_writing: Record<string, string[]> | null };
      t.equal(b.status, 0, `${mode}: --help exits 0`);
      t.match(b.stdout, /^Usage: qemu-net-helper-vepa /, `${mode}: the usage text`);
      t.same(b.while_writing?.Uid, ['65534', '65534', '65534', '65534'], `${mode}: every uid the caller's while it writes`);
      t.same(b.while_writing?.Gid, ['65534', '65534', '65534', '65534'], `${mode}: every gid the caller's`);
      t.equal(BigInt(`0x${b.while_writing?.CapPrm?.[0] ?? 'f'}`), held, `${mode}: permitted capabilities ${held ? 'the file\'s, held' : 'none'}`);
    }
  });
});

t.test('a missing koffi.node: the launcher answers --help, --version and usage errors; a launch names the file and the install command', async (t) => {
  const missing = `${work}/not-installed/koffi.node`;
  const command = 'apt-get install --reinstall qemu-net-helper';
  const built = await buildExecutable(join(REPO, 'helpers/qemu-net-launch.ts'), { koffiPath: missing, installCommand: command, outDir: join(work, 'missing') });
  const version = run([built.path, '--version']);
  t.equal(version.status, 0, version.stderr);
  t.match(version.stdout, new RegExp(`^qemu-net-launch ${VERSION}\n.*koffi \\S+ from ${missing}`));
  const help = run([built.path, '--help']);
  t.equal(help.status, 0, help.stderr);
  t.match(help.stdout, /^Usage: qemu-net-launch /);
  const usage = run([built.path, '--frobnicate', '--', 'qemu-system-x86_64']);
  t.equal(usage.status, 2);
  t.match(usage.stderr, /^qemu-net-launch: unknown option "--frobnicate"/);
  const r = run([built.path, '--dry-run', '--', 'qemu-system-x86_64', '-netdev', 'macvtap,id=n0,dev=v0']);
  t.equal(r.status, 1);
  t.equal(r.stderr, `qemu-net-launch: koffi's native module ${missing} is missing; install it again with ${command}\n`);
  t.equal(r.stdout, '');

  await t.test('installed with file capabilities by mistake, it refuses before it answers anything', async (t) => {
    const skip = privilegedSkipReason(['setcap', 'setpriv']);
    if (skip) return t.pass(`skipped: ${skip}`);
    const capped = copyExecutable(t, 'qnh-capped-launch-', built.path, 'qemu-net-launch').path;
    const asNobody = (args: string[]) => run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', capped, ...args]);
    t.equal(asNobody(['--version']).status, 0, 'a plain copy answers --version');
    const setcap = run(['setcap', 'cap_net_admin=ep', capped]);
    t.equal(setcap.status, 0, setcap.stderr);
    for (const args of [['--version'], ['--help'], ['--frobnicate']]) {
      const r = asNobody(args);
      t.equal(r.status, 1, `${args[0]}: exit 1`);
      t.equal(r.stderr, 'qemu-net-launch: runs with privileges (setuid, setgid or file capabilities) and would hand them to any program it runs; install it as a plain executable (mode 0755, no capabilities): the helpers do the privileged work\n', `${args[0]}: refused in one line`);
      t.equal(r.stdout, '', `${args[0]}: nothing else`);
    }
  });
});

t.test('the build refuses what it cannot verify', async (t) => {
  const node = pinnedNode();
  const plain = join(work, 'plain-node');
  copyFileSync(node.path, plain);
  t.throws(() => verifyExecutable(plain, 'plain-node', node, Buffer.from('blob'), { koffiPath: REPO_KOFFI }),
    new BuildError(`${plain} is byte-identical to the node binary: nothing was injected`));
  const exe = join(work, 'trusted/qemu-net-helper-vepa');
  t.throws(() => verifyExecutable(exe, 'qemu-net-helper-vepa', node, Buffer.from('a blob that was never injected'), { koffiPath: REPO_KOFFI }),
    /does not contain the SEA blob/);
  t.throws(() => verifyExecutable(exe, 'qemu-net-helper-vepa', node, Buffer.alloc(0), { koffiPath: REPO_KOFFI }), /does not contain the SEA blob/);
});

// The helpers are one executable under three names (hard links): each name
// runs its own program, chosen by the name the kernel executed, and any other
// name is refused before anything loads.
t.test('one executable for every helper, hard-linked under their names', async (t) => {
  const names = ['qemu-net-helper-vepa', 'qemu-net-helper-bridge', 'qemu-net-helper-passthrough'];
  const built = await buildExecutable(join(REPO, 'helpers/qemu-net-helper.ts'), { koffiPath: TRUSTED_KOFFI ?? REPO_KOFFI, outDir: join(work, 'multi'), names });
  t.same(built.names, names);
  const inode = lstatSync(built.path).ino;
  for (const name of names) {
    const path = join(work, 'multi', name);
    t.equal(lstatSync(path).ino, inode, `${name} is the same file`);
    t.equal(run([path, '--version']).stdout.split('\n')[0], `${name} ${VERSION}`, `${name} runs as itself`);
  }
  t.equal(lstatSync(built.path).nlink, 3, 'three names, one file');
  const stranger = join(work, 'multi', 'qemu-net-helper-other');
  linkSync(built.path, stranger);
  const r = run([stranger, '--help']);
  t.equal(r.status, 1, 'another name is refused');
  t.equal(r.stderr, 'qemu-net-helper: this executable runs as qemu-net-helper-vepa, qemu-net-helper-bridge, qemu-net-helper-passthrough, and was executed as none of them; run it by one of those names\n', 'in one line');
  t.equal(r.stdout, '');
  const argv0 = spawnSync(built.path, ['--version'], { argv0: 'qemu-net-helper-bridge', encoding: 'utf8', env: CLEAN_ENV });
  t.match(argv0.stdout, /^qemu-net-helper-vepa /, 'argv[0] does not choose the program');
  if (trustedKoffi) {
    const help = run([join(work, 'multi', 'qemu-net-helper-bridge'), '--help']);
    t.equal(help.status, 0, help.stderr);
    t.match(help.stdout, /^Usage: qemu-net-helper-bridge /, 'the bridge helper runs for real under its name');
  }
});

// packaging/code-cache.cjs makes the cache; V8 takes it only if it was made
// under the executable's V8 flags. Made under another flag, V8 rejects it at
// run time (the program still runs, only slower), and the build must say so.
t.test('a code cache that V8 rejects fails the build', async (t) => {
  await t.rejects(buildExecutable(VEPA_ENTRY, { koffiPath: REPO_KOFFI, outDir: join(work, 'rejected'), blobArgs: ['--stack-size=900'] }),
    /qemu-net-helper-vepa: V8's code cache is rejected, expected accepted/);
  t.notOk(existsSync(join(work, 'rejected/qemu-net-helper-vepa')), 'nothing is left in the output directory');
  const none = await buildExecutable(VEPA_ENTRY, { koffiPath: REPO_KOFFI, outDir: join(work, 'no-cache'), codeCache: false });
  t.match(run([none.path, '--version']).stdout.split('\n')[1], /; code cache none$/, 'built without one, it says so');
});
