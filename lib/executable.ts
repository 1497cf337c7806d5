// Which program a multi-call executable is: the helpers share one single
// executable, installed under each helper's name as hard links (one file of
// about 100 MiB instead of three). The name comes from /proc/self/exe, the
// path the kernel executed (for a hard link, the link's own name), never from
// argv[0], which the caller writes.
//
// A caller can make the kernel execute only what a path already names: a new
// hard link to a root-owned file is refused to others (fs.protected_hardlinks),
// an unknown name is refused here, and every known name is a program the
// caller could have run by its own path anyway.

import { readlinkSync } from 'node:fs';

/** The file name this process was executed as, or undefined when /proc cannot tell. */
export function executableName(readlink: (path: string) => string = readlinkSync): string | undefined {
  let path: string;
  try {
    path = readlink('/proc/self/exe');
  } catch {
    return undefined;
  }
  // A file replaced (upgraded) after exec reads "/path (deleted)"; the
  // kernel still runs the inode it executed under that name.
  return path.slice(path.lastIndexOf('/') + 1).replace(/ \(deleted\)$/, '');
}

/** The one-line refusal (after "PROGRAM: ") when it was executed under none of `names`. */
export function unknownExecutableMessage(names: readonly string[]): string {
  return `this executable runs as ${names.join(', ')}, and was executed as none of them; run it by one of those names`;
}

/** The program among `names` this executable runs as, or undefined (one name: always that one). */
export function programFromExecutable(names: readonly string[], readlink?: (path: string) => string): string | undefined {
  if (names.length === 1) return names[0];
  const name = executableName(readlink);
  return name !== undefined && names.includes(name) ? name : undefined;
}
