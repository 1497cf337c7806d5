// lib/koffi-loader.ts: the trust check a single executable makes before it
// dlopens koffi's native module, and the load itself.

import { chmodSync, copyFileSync, lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HelperError } from '../../lib/errors.ts';
import koffi, { DEFAULT_KOFFI_NATIVE_PATH, KOFFI_NATIVE_PATH, loadKoffiNative, untrustedReason, type TrustStat } from '../../lib/koffi-loader.ts';
import { REPO } from '../support/paths.ts';
import { IS_CI } from '../support/privileged.ts';
import { REPO_KOFFI, trustedKoffiPath } from '../support/trusted-koffi.ts';

const DIR = 0o040755;
const FILE = 0o100644;

/** An lstat over a fake tree: path -> stat; anything else is ENOENT. */
function fakeLstat(tree: Record<string, TrustStat>) {
  return (path: string): TrustStat => {
    const st = tree[path];
    if (!st) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    return st;
  };
}

const GOOD: Record<string, TrustStat> = {
  '/': { mode: DIR, uid: 0 },
  '/usr': { mode: DIR, uid: 0 },
  '/usr/lib': { mode: DIR, uid: 0 },
  '/usr/lib/qemu-net-helper': { mode: DIR, uid: 0 },
  '/usr/lib/qemu-net-helper/koffi.node': { mode: FILE, uid: 0 },
};
const PATH = '/usr/lib/qemu-net-helper/koffi.node';

t.test('from source, koffi comes from node_modules and no path is compiled in', async (t) => {
  t.equal(KOFFI_NATIVE_PATH, undefined);
  t.equal(typeof koffi.load, 'function');
  t.equal(DEFAULT_KOFFI_NATIVE_PATH, PATH, 'the Debian package installs it here');
});

t.test('a root-owned chain that nobody else can write is trusted', async (t) => {
  t.equal(untrustedReason(PATH, fakeLstat(GOOD)), undefined);
});

t.test('every weakness anywhere in the chain is refused, naming the culprit', async (t) => {
  const cases: [string, Record<string, TrustStat>, RegExp][] = [
    ['file writable by others', { ...GOOD, [PATH]: { mode: FILE | 0o002, uid: 0 } }, /koffi\.node is writable by others/],
    ['file writable by group', { ...GOOD, [PATH]: { mode: FILE | 0o020, uid: 0 } }, /koffi\.node is writable by its group/],
    ['file owned by a user', { ...GOOD, [PATH]: { mode: FILE, uid: 1000 } }, /koffi\.node is owned by uid 1000, not root/],
    ['file is a symbolic link', { ...GOOD, [PATH]: { mode: 0o120777, uid: 0 } }, /koffi\.node is not a regular file \(a symbolic link\)/],
    ['file is a directory', { ...GOOD, [PATH]: { mode: DIR, uid: 0 } }, /is not a regular file/],
    ['parent group-writable (e.g. root:staff 2775)', { ...GOOD, '/usr/lib': { mode: DIR | 0o2020, uid: 0 } }, /^\/usr\/lib is writable by its group/],
    ['parent owned by a user', { ...GOOD, '/usr/lib/qemu-net-helper': { mode: DIR, uid: 1000 } }, /qemu-net-helper is owned by uid 1000/],
    ['sticky world-writable parent (/tmp)', { ...GOOD, '/usr': { mode: DIR | 0o1777, uid: 0 } }, /^\/usr is writable by others/],
    ['parent is a symbolic link', { ...GOOD, '/usr/lib': { mode: 0o120777, uid: 0 } }, /^\/usr\/lib is not a directory \(a symbolic link\)/],
    ['root directory writable', { ...GOOD, '/': { mode: DIR | 0o002, uid: 0 } }, /^\/ is writable by others/],
    ['file missing', { ...GOOD, [PATH]: undefined as unknown as TrustStat }, /koffi\.node does not exist/],
  ];
  for (const [name, tree, re] of cases) t.match(untrustedReason(PATH, fakeLstat(tree)), re, name);
});

t.test('only normalised absolute paths', async (t) => {
  const lstat = fakeLstat(GOOD);
  t.match(untrustedReason('usr/lib/qemu-net-helper/koffi.node', lstat), /not an absolute path/);
  t.match(untrustedReason('/usr/lib/../lib/qemu-net-helper/koffi.node', lstat), /not a normalised absolute path/);
  t.match(untrustedReason('/usr/lib/./qemu-net-helper/koffi.node', lstat), /not a normalised absolute path/);
  t.match(untrustedReason('/usr//lib/qemu-net-helper/koffi.node', lstat), /not a normalised absolute path/);
  t.match(untrustedReason('/usr/lib/qemu-net-helper/koffi.node/', lstat), /not a normalised absolute path/);
  t.match(untrustedReason(`/${'a/'.repeat(70)}koffi.node`, lstat), /too many components/);
});

t.test('loadKoffiNative refuses an untrusted file before loading anything', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qnh-koffi-')); // under /tmp: writable by others
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const copy = join(dir, 'koffi.node');
  copyFileSync(REPO_KOFFI, copy);
  chmodSync(copy, 0o644);
  const err = t.throws(() => loadKoffiNative(copy)) as HelperError;
  t.type(err, HelperError);
  t.match(err.message, /^refusing to load koffi's native module: \/tmp is writable by others$/);
  t.match(err.fix, /^install it again with packaging\/install\.sh, as root, in the source tree these programs were built from, or make the file/);
});

t.test('a missing koffi.node is named with its full path and the install command', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qnh-koffi-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const path of [join(dir, 'koffi.node'), join(dir, 'no-such-dir/koffi.node')]) {
    const err = t.throws(() => loadKoffiNative(path, undefined, lstatSync, 'apt-get install --reinstall qemu-net-helper')) as HelperError;
    t.type(err, HelperError);
    t.equal(`${err.message}; ${err.fix}`, `koffi's native module ${path} is missing; install it again with apt-get install --reinstall qemu-net-helper`);
  }
});

t.test('loadKoffiNative loads the real module from a trusted path and checks its version', async (t) => {
  const real = trustedKoffiPath(t);
  if (real === undefined) {
    if (IS_CI) throw new Error('CI runs as root, which can always make a trusted copy of koffi.node');
    t.pass(`skipped: needs root, or a checkout that is a trusted location (${untrustedReason(REPO_KOFFI, lstatSync)})`);
    return;
  }
  const native = loadKoffiNative(real, koffi.version);
  t.equal(native.version, koffi.version);
  const libc = native.load('libc.so.6');
  const getpid = libc.func('int getpid()');
  t.equal(getpid(), process.pid, 'a call through the dlopened module works');
  t.throws(() => loadKoffiNative(real, '0.0.0-other'), /is koffi \S+, but this program was built with koffi 0\.0\.0-other/);
});
