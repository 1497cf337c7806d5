// The file system as the policy loader sees it: lstat, a no-follow open that
// reports what it opened, and a directory listing. Injected so that ownership,
// symlink and include handling can be unit-tested; nodePolicyFs is the real one.

import { closeSync, constants as fsConstants, fstatSync, lstatSync, openSync, readdirSync, readSync, type BigIntStats } from 'node:fs';

export type FileType = 'file' | 'dir' | 'symlink' | 'other';

/** What lstat(2)/fstat(2) say about a file, reduced to what the policy checks. */
export interface FileInfo {
  type: FileType;
  uid: number;
  gid: number;
  /** Permission bits including set-id and sticky: st_mode & 07777. */
  mode: number;
  dev: bigint;
  ino: bigint;
}

export interface PolicyFs {
  /** lstat(2). undefined when nothing is there (ENOENT, ENOTDIR); throws an Error with `code` on anything else. */
  lstat(path: string): FileInfo | undefined;
  /**
   * open(2) with O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_NOCTTY|O_CLOEXEC, fstat(2) the
   * fd, and read at most maxBytes + 1 bytes (one more than allowed, so that the
   * caller sees a file that is too big). Throws an Error with `code`.
   */
  readFile(path: string, maxBytes: number): { info: FileInfo; data: Buffer };
  /** The names in a directory, as bytes, without "." and "..". Throws an Error with `code`. */
  readDir(path: string): Buffer[];
}

export function fileInfo(st: BigIntStats): FileInfo {
  const type: FileType = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
  return { type, uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode & 0o7777n), dev: st.dev, ino: st.ino };
}

const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY;

export const nodePolicyFs: PolicyFs = {
  lstat(path) {
    try {
      return fileInfo(lstatSync(path, { bigint: true }));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw err;
    }
  },

  readFile(path, maxBytes) {
    // Node opens every fd with O_CLOEXEC.
    const fd = openSync(path, OPEN_FLAGS);
    try {
      const info = fileInfo(fstatSync(fd, { bigint: true }));
      if (info.type !== 'file') return { info, data: Buffer.alloc(0) };
      const data = Buffer.alloc(maxBytes + 1);
      let length = 0;
      while (length < data.length) {
        const n = readSync(fd, data, length, data.length - length, null);
        if (n === 0) break;
        length += n;
      }
      return { info, data: data.subarray(0, length) };
    } finally {
      closeSync(fd);
    }
  },

  readDir(path) {
    return readdirSync(path, { encoding: 'buffer' });
  },
};
