// Which network namespace a helper acts in, as the policy sees it: whether it
// is PID 1's ("host") and which of the names in /run/netns are bound to it.
//
// A namespace is identified by the (st_dev, st_ino) of its nsfs inode:
// stat("/proc/self/ns/net") for ours, stat("/proc/1/ns/net") for PID 1's,
// lstat("/run/netns/NAME") for a named one (ip netns add bind-mounts the nsfs
// inode there; lstat does not follow a symlink, but does see the mount).
// Only root can bind-mount there, and /run/netns and its parents are checked
// to be root's and not writable by others, so a user who makes a namespace of
// their own cannot give it a name the policy trusts. When anything cannot be
// read, the answer is the narrower one: not the host's, no names.

import { statSync } from 'node:fs';
import { PROC_NET_INIT_INO } from '../constants.ts';
import { nodePolicyFs, type PolicyFs } from './fs.ts';
import { checkParents } from './secure.ts';
import { netnsNameProblem } from './syntax.ts';
import type { Policy } from './types.ts';

export interface NsId {
  dev: bigint;
  ino: bigint;
}

export interface NetnsIdentity {
  /** True when the helper's network namespace is PID 1's. */
  isInitial: boolean;
  /** Names in /run/netns (among those the policy mentions) bound to the helper's namespace. */
  names: readonly string[];
  /** Why something could not be established, for messages and debugging. */
  notes: readonly string[];
}

export interface NetnsProbe {
  /** The helper's own namespace: stat("/proc/self/ns/net"). Throws when it cannot be read. */
  self(): NsId;
  /** PID 1's: stat("/proc/1/ns/net"). Throws when it cannot be read. */
  init(): NsId;
  /** The namespace bound at /run/netns/NAME; undefined when there is none. Throws when it cannot be trusted or read. */
  named(name: string): NsId | undefined;
}

export const RUN_NETNS = '/run/netns';

/** Every namespace name that some rule of the policy mentions. */
export function policyNetnsNames(policy: Policy): string[] {
  const names = new Set<string>();
  for (const r of policy.rules) for (const n of r.netns?.names ?? []) names.add(n);
  return [...names];
}

const same = (a: NsId, b: NsId): boolean => a.dev === b.dev && a.ino === b.ino;

function why(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Identifies the helper's namespace, probing only the names the policy mentions. Never throws. */
export function identifyNetns(policy: Policy, probe: NetnsProbe): NetnsIdentity {
  const notes: string[] = [];
  let self: NsId;
  try {
    self = probe.self();
  } catch (err) {
    return { isInitial: false, names: [], notes: [`cannot identify this network namespace: ${why(err)}`] };
  }
  // The initial namespace has a fixed inode on current kernels: no need to
  // look at PID 1's, which a helper with file capabilities may not read.
  let isInitial = self.ino === PROC_NET_INIT_INO;
  if (!isInitial) {
    try {
      isInitial = same(self, probe.init());
    } catch (err) {
      notes.push(`cannot tell whether this is the host's network namespace (that of PID 1): ${why(err)}`);
    }
  }
  const names: string[] = [];
  for (const name of policyNetnsNames(policy)) {
    try {
      const id = probe.named(name);
      if (id && same(id, self)) names.push(name);
    } catch (err) {
      notes.push(`cannot check ${RUN_NETNS}/${name}: ${why(err)}`);
    }
  }
  return { isInitial, names, notes };
}

function nsId(path: string): NsId {
  try {
    const st = statSync(path, { bigint: true });
    return { dev: st.dev, ino: st.ino };
  } catch (err) {
    throw new Error(`${path}: ${(err as NodeJS.ErrnoException).code ?? why(err)}`);
  }
}

/** The probe for a real system (paths configurable for tests). */
export function nodeNetnsProbe(options: { fs?: PolicyFs; proc?: string; runNetns?: string } = {}): NetnsProbe {
  const fs = options.fs ?? nodePolicyFs;
  const proc = options.proc ?? '/proc';
  const run = options.runNetns ?? RUN_NETNS;
  return {
    self: () => nsId(`${proc}/self/ns/net`),
    init: () => nsId(`${proc}/1/ns/net`),
    named(name) {
      const problem = netnsNameProblem(name);
      if (problem) throw new Error(`the name ${JSON.stringify(name)} ${problem}`);
      const path = `${run}/${name}`;
      if (fs.lstat(run) === undefined) return undefined; // no namespace was ever named
      const parents = checkParents(fs, path);
      if (parents.length > 0) throw new Error(parents.map((p) => p.message).join('; '));
      const info = fs.lstat(path);
      if (!info) return undefined;
      if (info.type === 'symlink') throw new Error(`${path} is a symbolic link`);
      return { dev: info.dev, ino: info.ino };
    },
  };
}
