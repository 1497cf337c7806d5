// Who could change a file: it and every directory above it must be owned by
// root and not writable by group or others, and none may be a symbolic link.
// A directory writable by others is accepted only if it is root's and sticky
// (like /tmp): then nobody but root can rename or delete the root-owned entry
// below it.

import { S_ISVTX, S_IWGRP, S_IWOTH } from '../constants.ts';
import type { FileInfo, PolicyFs } from './fs.ts';

export interface PathProblem {
  path: string;
  message: string;
  fix: string;
  /** True when only ownership or permission bits are wrong (the file could still be read). */
  ownership: boolean;
}

function octal(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}

/** Why root could not trust `info` (the file or directory at `path`), or undefined. */
export function ownershipProblem(path: string, info: FileInfo): PathProblem | undefined {
  if (info.uid !== 0) return { path, message: `${path} is owned by uid ${info.uid}, not by root`, fix: `chown root ${path}`, ownership: true };
  const writable = info.mode & (S_IWGRP | S_IWOTH);
  if (writable === 0 || (info.type === 'dir' && (info.mode & S_ISVTX) !== 0)) return undefined;
  const who = writable === (S_IWGRP | S_IWOTH) ? 'its group and by others' : writable === S_IWGRP ? 'its group' : 'others';
  return { path, message: `${path} is writable by ${who} (mode ${octal(info.mode)})`, fix: `chmod go-w ${path}`, ownership: true };
}

function errorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message ?? String(err);
}

/** lstat that turns unexpected errors into a problem. */
export function safeLstat(fs: PolicyFs, path: string): { info: FileInfo | undefined } | { problem: PathProblem } {
  try {
    return { info: fs.lstat(path) };
  } catch (err) {
    return { problem: { path, message: `cannot examine ${path}: ${errorText(err)}`, fix: `check ${path} with ls -ld`, ownership: false } };
  }
}

/**
 * Checks every directory from "/" down to the parent of `path` (which must be
 * absolute and canonical). Results are cached per directory in `cache`.
 * Returns the problems found; a problem with ownership=false means the walk
 * stopped there.
 */
export function checkParents(fs: PolicyFs, path: string, cache: Map<string, PathProblem[]> = new Map()): PathProblem[] {
  const parts = path.split('/').slice(1, -1);
  const dirs = ['/'];
  for (const p of parts) dirs.push(dirs[dirs.length - 1] === '/' ? `/${p}` : `${dirs[dirs.length - 1]}/${p}`);
  const found: PathProblem[] = [];
  for (const dir of dirs) {
    let problems = cache.get(dir);
    if (!problems) {
      problems = [];
      const r = safeLstat(fs, dir);
      if ('problem' in r) problems.push(r.problem);
      else if (!r.info) problems.push({ path: dir, message: `${dir} does not exist`, fix: `create ${dir}, owned by root`, ownership: false });
      else if (r.info.type === 'symlink') problems.push({ path: dir, message: `${dir} is a symbolic link, and the policy's paths may not contain one`, fix: `replace ${dir} with the directory it points to, or name the real path`, ownership: false });
      else if (r.info.type !== 'dir') problems.push({ path: dir, message: `${dir} is not a directory`, fix: `check ${dir} with ls -ld`, ownership: false });
      else {
        const p = ownershipProblem(dir, r.info);
        if (p) problems.push(p);
      }
      cache.set(dir, problems);
    }
    found.push(...problems);
    if (problems.some((p) => !p.ownership)) break;
  }
  return found;
}
