// An in-memory PolicyFs for tests: a table of paths with owner, mode and
// contents. Directories above every entry exist, owned by root, mode 0755,
// unless the table says otherwise.

import type { FileInfo, FileType, PolicyFs } from './fs.ts';

export interface MemoryEntry {
  type?: FileType;
  uid?: number;
  gid?: number;
  mode?: number;
  /** A file's contents. */
  content?: string | Buffer;
  /** Give two paths the same inode number to make them one file (a hard link). */
  ino?: number;
  /** Make every operation on this path fail with this code (e.g. 'EACCES'). */
  error?: string;
}

function errnoError(code: string, call: string, path: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${call} '${path}'`);
  err.code = code;
  return err;
}

export interface MemoryPolicyFs extends PolicyFs {
  /** Paths passed to readFile, in order. */
  readonly reads: string[];
}

export function memoryPolicyFs(table: Readonly<Record<string, MemoryEntry>>): MemoryPolicyFs {
  const entries = new Map<string, MemoryEntry & { ino: number }>();
  let nextIno = 1000;
  const add = (path: string, e: MemoryEntry): void => {
    entries.set(path, { ...e, ino: e.ino ?? nextIno++ });
  };
  for (const [path, e] of Object.entries(table)) add(path, { type: 'file', ...e });
  for (const path of [...entries.keys()]) {
    const parts = path.split('/').slice(1, -1);
    let dir = '';
    for (const p of parts) {
      dir += `/${p}`;
      if (!entries.has(dir)) add(dir, { type: 'dir' });
    }
  }
  if (!entries.has('/')) add('/', { type: 'dir' });

  const info = (e: MemoryEntry & { ino: number }): FileInfo => ({
    type: e.type ?? 'file',
    uid: e.uid ?? 0,
    gid: e.gid ?? 0,
    mode: e.mode ?? (e.type === 'dir' ? 0o755 : 0o644),
    dev: 1n,
    ino: BigInt(e.ino),
  });

  /** The entry at `path`, failing as the kernel would when a parent is missing or a symlink is in the way. */
  const walk = (path: string, call: string, followLast: boolean): MemoryEntry & { ino: number } => {
    const parts = path.split('/').slice(1);
    let cur = '';
    for (let i = 0; i < parts.length; i++) {
      cur += `/${parts[i]}`;
      const e = entries.get(cur);
      if (!e) throw errnoError('ENOENT', call, path);
      if (e.error) throw errnoError(e.error, call, path);
      const last = i === parts.length - 1;
      if (e.type === 'symlink' && (!last || followLast)) throw errnoError(last ? 'ELOOP' : 'EXDEV', call, `${path} (the memory fs does not follow symlinks)`);
      if (!last && e.type !== 'dir') throw errnoError('ENOTDIR', call, path);
    }
    const e = path === '/' ? entries.get('/') : entries.get(cur);
    if (!e) throw errnoError('ENOENT', call, path);
    return e;
  };

  const reads: string[] = [];
  return {
    reads,
    lstat(path) {
      try {
        return info(walk(path, 'lstat', false));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
        throw err;
      }
    },
    readFile(path, maxBytes) {
      reads.push(path);
      const e = walk(path, 'open', true);
      const data = e.type === 'file' ? Buffer.from(e.content ?? '') : Buffer.alloc(0);
      return { info: info(e), data: data.subarray(0, maxBytes + 1) };
    },
    readDir(path) {
      const e = walk(path, 'opendir', true);
      if (e.type !== 'dir') throw errnoError('ENOTDIR', 'opendir', path);
      const prefix = path === '/' ? '/' : `${path}/`;
      const names: Buffer[] = [];
      for (const p of entries.keys()) {
        if (p.startsWith(prefix) && p !== '/' && !p.slice(prefix.length).includes('/')) names.push(Buffer.from(p.slice(prefix.length), 'latin1'));
      }
      return names.reverse(); // not sorted: the loader must sort
    },
  };
}
