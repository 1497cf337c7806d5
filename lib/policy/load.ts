// Reading the policy: the fixed file, its includes (files, or directories of
// *.conf files), every file and every directory above it checked to be
// root's and not writable by group or others, no symbolic links anywhere.
// Any problem anywhere refuses the whole policy (fail closed).
//
// Bounded: include depth, number of files, bytes per file, bytes in total,
// bytes per line. A file (or directory) reached twice is refused, whether
// through a cycle or not.

import { PolicyError } from './errors.ts';
import { nodePolicyFs, type FileInfo, type PolicyFs } from './fs.ts';
import { assemblePolicy, MAX_LINE_BYTES, parsePolicyText, type Statement } from './parse.ts';
import { checkParents, ownershipProblem, safeLstat, type PathProblem } from './secure.ts';
import { includePathProblem } from './syntax.ts';
import { formatWhere, type Policy, type PolicyProblem, type Where } from './types.ts';

/** The policy every installed helper reads. A build-time constant: no option or variable changes it in a privileged run. */
export const POLICY_PATH = '/etc/qemu/net-helper.conf';

export interface PolicyLimits {
  /** How many include statements may be followed from the top-level file to reach a file. */
  maxDepth: number;
  /** Files read in total, the top-level file included. */
  maxFiles: number;
  maxFileBytes: number;
  maxTotalBytes: number;
  maxLineBytes: number;
}

export const POLICY_LIMITS: Readonly<PolicyLimits> = {
  maxDepth: 8,
  maxFiles: 128,
  maxFileBytes: 1 << 20,
  maxTotalBytes: 4 << 20,
  maxLineBytes: MAX_LINE_BYTES,
};

export interface LoadOptions {
  fs?: PolicyFs;
  limits?: Partial<PolicyLimits>;
  /**
   * 'enforce' (the default, and the only choice for a helper): a file whose
   * owner or mode is wrong, or that sits below such a directory, is not read.
   * 'report': the problem is reported and the file is read anyway, so that a
   * draft (--check-config --config=FILE) gets its grammar checked too. Either
   * way the problem makes the policy unusable.
   */
  ownership?: 'enforce' | 'report';
}

export interface LoadResult {
  /** The policy, when there was no problem at all; undefined otherwise. */
  policy: Policy | undefined;
  problems: PolicyProblem[];
  /** Every file read, in order. */
  files: string[];
}

interface Frame {
  key: string;
  path: string;
}

class Loader {
  readonly fs: PolicyFs;
  readonly limits: PolicyLimits;
  readonly report: boolean;
  readonly problems: PolicyProblem[] = [];
  readonly statements: Statement[] = [];
  readonly files: string[] = [];
  readonly dirCache = new Map<string, PathProblem[]>();
  readonly reported = new Set<string>();
  /** dev:ino of every file and directory reached, with where it was first included from. */
  readonly seen = new Map<string, { path: string; from: Where | undefined }>();
  readonly stack: Frame[] = [];
  fileCount = 0;
  totalBytes = 0;
  tooManyFiles = false;

  constructor(options: LoadOptions) {
    this.fs = options.fs ?? nodePolicyFs;
    this.limits = { ...POLICY_LIMITS, ...options.limits };
    this.report = options.ownership === 'report';
  }

  problem(from: Where | undefined, message: string, fix: string): void {
    this.problems.push({ ...(from ?? {}), message, fix });
  }

  /** Reports path problems (each directory's once); returns false when `path` must not be read. */
  pathProblems(found: readonly PathProblem[], from: Where | undefined): boolean {
    let readable = true;
    for (const p of found) {
      if (!p.ownership || !this.report) readable = false;
      const id = `${p.path}\0${p.message}`;
      if (this.reported.has(id)) continue;
      this.reported.add(id);
      this.problem(from, p.message, p.fix);
    }
    return readable;
  }

  /** Guards against cycles and double inclusion; returns false when `path` must not be read again. */
  enter(path: string, info: FileInfo, from: Where | undefined): boolean {
    const key = `${info.dev}:${info.ino}`;
    const onStack = this.stack.findIndex((f) => f.key === key);
    if (onStack >= 0) {
      const chain = [...this.stack.slice(onStack).map((f) => f.path), path].join(' -> ');
      this.problem(from, `include cycle: ${chain}`, 'remove one of these includes');
      return false;
    }
    const first = this.seen.get(key);
    if (first) {
      const where = first.from ? `from ${formatWhere(first.from)}` : 'as the top-level file';
      const same = first.path === path ? path : `${path} (the same file as ${first.path})`;
      this.problem(from, `${same} is included twice; it was first included ${where}`, 'include each file or directory once');
      return false;
    }
    this.seen.set(key, { path, from });
    return true;
  }

  includePath(path: string, from: Where | undefined, depth: number, inDir: boolean): void {
    if (!this.pathProblems(checkParents(this.fs, path, this.dirCache), from)) return;
    const r = safeLstat(this.fs, path);
    if ('problem' in r) return void this.pathProblems([r.problem], from);
    const info = r.info;
    if (!info) {
      this.problem(from, `${path} does not exist`,
        from ? 'create it, or remove the include' : `create it (see net-helper.conf(5))`);
      return;
    }
    if (info.type === 'symlink') {
      this.problem(from, `${path} is a symbolic link, and the policy's files may not be`, `replace it with the file it points to, or name the real path`);
      return;
    }
    if (info.type === 'dir' && from && !inDir) return this.includeDir(path, info, from, depth);
    if (info.type !== 'file') {
      this.problem(from, `${path} is not a regular file`,
        inDir ? 'an included directory may hold only regular *.conf files (rename it so it does not end in .conf)' : 'name a regular file');
      return;
    }
    this.includeFile(path, info, from, depth);
  }

  includeDir(path: string, info: FileInfo, from: Where, depth: number): void {
    if (!this.pathProblems(ownershipOf(path, info), from)) return;
    if (!this.enter(path, info, from)) return;
    let names: Buffer[];
    try {
      names = this.fs.readDir(path);
    } catch (err) {
      this.problem(from, `cannot list ${path}: ${errorText(err)}`, `check ${path} with ls -ld`);
      return;
    }
    const dot = 0x2e;
    const suffix = Buffer.from('.conf');
    const chosen = names
      .filter((n) => n.length > suffix.length && n[0] !== dot && n.subarray(n.length - suffix.length).equals(suffix))
      .sort(Buffer.compare);
    this.stack.push({ key: `${info.dev}:${info.ino}`, path });
    for (const raw of chosen) {
      const name = utf8Name(raw);
      if (name === undefined || /[\x00-\x1f\x7f]/.test(name)) {
        this.problem(from, `${path} holds a *.conf file whose name is not plain UTF-8 text (${JSON.stringify(raw.toString('latin1'))})`, 'rename it');
        continue;
      }
      this.includePath(`${path}/${name}`, from, depth, true);
    }
    this.stack.pop();
  }

  includeFile(path: string, info: FileInfo, from: Where | undefined, depth: number): void {
    if (!this.pathProblems(ownershipOf(path, info), from)) return;
    if (this.fileCount >= this.limits.maxFiles) {
      if (!this.tooManyFiles) this.problem(from, `more than ${this.limits.maxFiles} policy files are included`, 'merge some of them');
      this.tooManyFiles = true;
      return;
    }
    if (!this.enter(path, info, from)) return;
    this.fileCount++;
    let read: { info: FileInfo; data: Buffer };
    try {
      read = this.fs.readFile(path, this.limits.maxFileBytes);
    } catch (err) {
      const code = errorText(err);
      this.problem(from, code === 'ELOOP' ? `${path} is a symbolic link, and the policy's files may not be` : `cannot read ${path}: ${code}`, `check ${path} with ls -l`);
      return;
    }
    // The path cannot change under us (every directory above it is root's), but check what was opened all the same.
    if (read.info.dev !== info.dev || read.info.ino !== info.ino || read.info.type !== 'file') {
      this.problem(from, `${path} changed while it was being read`, 'read the policy again once nothing is changing it');
      return;
    }
    if (!this.pathProblems(ownershipOf(path, read.info), from)) return;
    if (read.data.length > this.limits.maxFileBytes) {
      this.problem(from, `${path} is larger than ${this.limits.maxFileBytes} bytes`, 'shorten it or split it');
      return;
    }
    this.totalBytes += read.data.length;
    if (this.totalBytes > this.limits.maxTotalBytes) {
      this.problem(from, `the policy files together are larger than ${this.limits.maxTotalBytes} bytes (at ${path})`, 'shorten them');
      return;
    }
    this.files.push(path);
    const parsed = parsePolicyText(read.data, path, this.limits.maxLineBytes);
    this.problems.push(...parsed.problems);
    this.stack.push({ key: `${info.dev}:${info.ino}`, path });
    for (const s of parsed.statements) {
      if (s.kind !== 'include') {
        this.statements.push(s);
      } else if (depth + 1 > this.limits.maxDepth) {
        this.problem(s.where, `includes are nested more than ${this.limits.maxDepth} deep`, 'include the files from fewer levels');
      } else {
        this.includePath(s.path, s.where, depth + 1, false);
      }
    }
    this.stack.pop();
  }
}

function ownershipOf(path: string, info: FileInfo): PathProblem[] {
  const p = ownershipProblem(path, info);
  return p ? [p] : [];
}

function errorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message ?? String(err);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function utf8Name(raw: Buffer): string | undefined {
  try {
    return utf8.decode(raw);
  } catch {
    return undefined;
  }
}

/** Reads the policy and everything it includes, collecting every problem. Never throws for a bad policy. */
export function readPolicy(path: string = POLICY_PATH, options: LoadOptions = {}): LoadResult {
  const loader = new Loader(options);
  const pathProblem = includePathProblem(path);
  if (pathProblem) {
    loader.problem(undefined, `the policy path ${JSON.stringify(path)} ${pathProblem}`, 'give an absolute path without ".", ".." or "//"');
    return { policy: undefined, problems: loader.problems, files: [] };
  }
  loader.includePath(path, undefined, 0, false);
  const assembled = assemblePolicy(loader.statements, loader.files);
  const problems = [...loader.problems, ...assembled.problems];
  return { policy: problems.length === 0 ? assembled.policy : undefined, problems, files: loader.files };
}

/** The policy, or a PolicyError naming the first problem (file:line, cause, fix). */
export function loadPolicy(path: string = POLICY_PATH, options: LoadOptions = {}): Policy {
  const r = readPolicy(path, { ...options, ownership: options.ownership ?? 'enforce' });
  if (!r.policy) throw new PolicyError(r.problems);
  return r.policy;
}
