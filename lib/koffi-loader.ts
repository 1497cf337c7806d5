// Where koffi (the FFI behind lib/libc.ts) comes from.
//
// From source (npm test, npm run demo): koffi's own JS from node_modules,
// exactly as `import koffi from 'koffi'` would.
//
// In a single executable (the installed helpers, which run with file
// capabilities or setuid root): koffi's native module only, loaded with
// process.dlopen from one absolute path fixed when the executable was built
// (KOFFI_NATIVE_PATH), and only after checking that the file and every
// directory above it belong to root and are writable by nobody else. The
// path never comes from argv[0], the environment or the working directory,
// and nothing is extracted at run time. koffi's JS wrapper is not needed: it
// only finds the native module and adds deprecated aliases; the native
// module's exports are the whole API this project uses.
//
// A bundle (packaging/build.ts) replaces the QNH_* identifiers below with
// string literals; from source they are undeclared globals, so `typeof`
// says 'undefined'.

import { lstatSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { isSea } from 'node:sea';
import type koffiModule from 'koffi';
import { S_IFDIR, S_IFMT, S_IFREG, S_IWGRP, S_IWOTH } from './constants.ts';
import { HelperError } from './errors.ts';

export type Koffi = typeof koffiModule;

/** Where a package installs koffi's native module unless the build says otherwise (packaging/build.ts --libdir). */
export const DEFAULT_KOFFI_NATIVE_PATH = '/usr/lib/qemu-net-helper/koffi.node';

declare const QNH_KOFFI_NATIVE_PATH: string | undefined;
declare const QNH_KOFFI_VERSION: string | undefined;
declare const QNH_INSTALL_COMMAND: string | undefined;

/** The bundle's compiled-in path of koffi.node; undefined when running from source. */
export const KOFFI_NATIVE_PATH: string | undefined = typeof QNH_KOFFI_NATIVE_PATH === 'string' ? QNH_KOFFI_NATIVE_PATH : undefined;
/** The koffi version the bundle was built against; the native module must report the same. */
const KOFFI_VERSION: string | undefined = typeof QNH_KOFFI_VERSION === 'string' ? QNH_KOFFI_VERSION : undefined;
/**
 * How the people who installed this executable install koffi.node again: the
 * build says (packaging/build.ts --install-command; the .deb and the RPM set
 * their package manager's command).
 */
export const DEFAULT_INSTALL_COMMAND = 'packaging/install.sh, as root, in the source tree these programs were built from';
const INSTALL_COMMAND: string = typeof QNH_INSTALL_COMMAND === 'string' ? QNH_INSTALL_COMMAND : DEFAULT_INSTALL_COMMAND;

/** Components of a path we accept: a normalised absolute path, no '.', '..' or empty parts. */
const MAX_COMPONENTS = 64;

/** The fields of lstat(2) the trust check reads (injectable for tests). */
export interface TrustStat {
  mode: number;
  uid: number;
}
export type LstatFn = (path: string) => TrustStat;

/**
 * Why `path` cannot be trusted as root's own file, or undefined when it can:
 * it must be absolute and normalised, every directory from / down must be a
 * real directory (no symbolic link) owned by uid 0 and not writable by group
 * or others, and the file itself a regular file under the same rules.
 * Anyone else who could write any of them could make a privileged helper
 * load their code.
 */
export function untrustedReason(path: string, lstat: LstatFn = lstatSync): string | undefined {
  if (!path.startsWith('/')) return `${path} is not an absolute path`;
  const parts = path.split('/').slice(1);
  if (parts.length > MAX_COMPONENTS) return `${path} has too many components`;
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return `${path} is not a normalised absolute path`;
  let current = '';
  for (let i = -1; i < parts.length; i++) {
    current = i < 0 ? '/' : `${current === '/' ? '' : current}/${parts[i]}`;
    const isLeaf = i === parts.length - 1;
    let st: TrustStat;
    try {
      st = lstat(current);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'ENOENT' ? `${current} does not exist` : `cannot inspect ${current}: ${(err as Error).message}`;
    }
    const type = st.mode & S_IFMT;
    if (isLeaf ? type !== S_IFREG : type !== S_IFDIR) {
      return `${current} is not a ${isLeaf ? 'regular file' : 'directory'}${(type === 0o120000) ? ' (a symbolic link)' : ''}`;
    }
    if (st.uid !== 0) return `${current} is owned by uid ${st.uid}, not root`;
    if (st.mode & S_IWOTH) return `${current} is writable by others`;
    if (st.mode & S_IWGRP) return `${current} is writable by its group`;
  }
  return undefined;
}

/** Whether `path` (or a directory above it) does not exist: nothing was installed there, rather than something untrusted. */
function isMissing(path: string, lstat: LstatFn): boolean {
  try {
    lstat(path);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR';
  }
}

/**
 * Loads koffi's native module from `path` after the trust check. Throws a
 * HelperError (cause; fix) when the file is missing or cannot be trusted or
 * loaded; the fix names `installCommand`, the command that installs it.
 */
export function loadKoffiNative(path: string, expectedVersion?: string, lstat: LstatFn = lstatSync, installCommand = INSTALL_COMMAND): Koffi {
  const reinstall = `install it again with ${installCommand}`;
  if (path.startsWith('/') && isMissing(path, lstat)) throw new HelperError(`koffi's native module ${path} is missing`, reinstall);
  const fix = `${reinstall}, or make the file and its directories root-owned and not writable by group or others`;
  const why = untrustedReason(path, lstat);
  if (why) throw new HelperError(`refusing to load koffi's native module: ${why}`, fix);
  const module = { exports: {} as Record<string, unknown> };
  try {
    process.dlopen(module, path, osConstants.dlopen.RTLD_NOW);
  } catch (err) {
    throw new HelperError(`cannot load koffi's native module ${path}: ${(err as Error).message}`, reinstall);
  }
  const native = module.exports;
  if (typeof native.load !== 'function' || typeof native.version !== 'string') {
    throw new HelperError(`${path} is not koffi's native module`, reinstall);
  }
  if (expectedVersion !== undefined && native.version !== expectedVersion) {
    throw new HelperError(`${path} is koffi ${native.version}, but this program was built with koffi ${expectedVersion}`, reinstall);
  }
  return native as unknown as Koffi;
}

function loadKoffi(): Koffi {
  if (KOFFI_NATIVE_PATH !== undefined || isSea()) {
    if (KOFFI_NATIVE_PATH === undefined) throw new HelperError('this single executable was built without a path for koffi', 'build it with npm run package');
    // Built into a bundle: only a single executable may use it, and only
    // the compiled-in path. (A bundle run by plain node would otherwise be
    // a way around the check.)
    if (!isSea()) throw new HelperError('this bundle only runs as a single executable', "run the installed helper, or the sources with 'node helpers/NAME.ts'");
    return loadKoffiNative(KOFFI_NATIVE_PATH, KOFFI_VERSION);
  }
  try {
    return createRequire(import.meta.url)('koffi') as Koffi;
  } catch (err) {
    throw new HelperError(`cannot load koffi from node_modules: ${(err as Error).message.split('\n')[0]}`, 'run npm ci in the source tree');
  }
}

const koffi: Koffi = loadKoffi();
export default koffi;
