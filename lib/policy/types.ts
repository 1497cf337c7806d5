// The policy as parsed: a typed tree with the file and line of everything in
// it. Grammar: docs/man/net-helper.conf.5. Meaning: lib/policy/decide.ts.

import type { ModeName } from '../modes.ts';

/** Where something was written. */
export interface Where {
  file: string;
  line: number;
}

/** A user or group as written in a rule: a name (resolved when deciding) or a numeric id. */
export type AccountRef = { kind: 'name'; name: string } | { kind: 'id'; id: number };

export type Subject =
  | { kind: 'everyone' }
  | { kind: 'user'; refs: readonly AccountRef[] }
  | { kind: 'group'; refs: readonly AccountRef[] };

export type Target =
  | { kind: 'all' }
  | { kind: 'dev'; names: readonly string[] }
  | { kind: 'network'; names: readonly string[] }
  | { kind: 'pool'; names: readonly string[] };

/** Which network namespaces a rule covers: PID 1's (`host`) and/or namespaces named in /run/netns. */
export interface NetnsSpec {
  host: boolean;
  names: readonly string[];
}

export interface Rule {
  action: 'allow' | 'deny';
  subject: Subject;
  target: Target;
  /** Modes as written; undefined when the rule does not say (see effectiveModes in decide.ts). */
  modes: readonly ModeName[] | undefined;
  /** allow: the most queues a request may ask for (default 1). deny: unused (256). */
  queues: number;
  /** allow: whether vhost-net fds may be handed over. deny: unused (false). */
  vhost: boolean;
  /** allow: whether the subject may make persistent links (kept until released, not tied to a process). deny: unused (false). */
  persistent: boolean;
  /** allow: whether the links it grants get IFF_ALLMULTI (default true; `allmulti off` turns it off). deny: unused (true). */
  allmulti: boolean;
  /** allow: the 802.1Q ids the rule allows tagged use of (`vlan IDS`; none by default: an untagged rule grants no VLAN). deny: unused (empty). */
  vlans: readonly number[];
  /** As written; undefined when the rule does not say (allow: host only; deny: every namespace). */
  netns: NetnsSpec | undefined;
  where: Where;
}

/** `network NAME dev IFNAME mode MODE`: a name for one device in one mode. */
export interface NetworkDef {
  name: string;
  dev: string;
  mode: ModeName;
  /** `vlan ID`: the network is the 802.1Q VLAN of that id on the device. */
  vlan: number | undefined;
  where: Where;
}

/** `pool NAME dev IFNAME,...` or `pool NAME pf IFNAME`: a set of devices for the passthrough helper. */
export interface PoolDef {
  name: string;
  members: { kind: 'devs'; devs: readonly string[] } | { kind: 'pf'; pf: string };
  where: Where;
}

/**
 * `limit [user NAMES | group NAMES | everyone] links N`: how many links one
 * user may hold at once, across every helper and device.
 */
export interface LimitDef {
  subject: Subject;
  links: number;
  where: Where;
}

export interface Policy {
  /** Every file read, in the order read (the top-level file first). */
  files: readonly string[];
  networks: ReadonlyMap<string, NetworkDef>;
  pools: ReadonlyMap<string, PoolDef>;
  /** Every allow and deny rule, in file order with includes expanded in place. */
  rules: readonly Rule[];
  /** Every limit statement, in file order. */
  limits: readonly LimitDef[];
}

/** One thing wrong with a policy: where (when known), what, and what to do. */
export interface PolicyProblem {
  file?: string;
  line?: number;
  message: string;
  fix: string;
}

export function formatWhere(w: { file?: string; line?: number }): string {
  if (w.file === undefined) return '';
  return w.line === undefined ? w.file : `${w.file}:${w.line}`;
}

export function formatProblem(p: PolicyProblem): string {
  const where = formatWhere(p);
  return `${where ? where + ': ' : ''}${p.message}`;
}
