// The policy language: one statement per line, words separated by spaces or
// tabs, lists joined by commas, a word starting with '#' begins a comment.
// Pure: text in, statements and problems (file:line, cause, fix) out.
//
//   include PATH
//   network NAME dev IFNAME mode MODE
//   pool NAME dev IFNAME[,IFNAME...]
//   pool NAME pf IFNAME
//   allow [SUBJECT] TARGET [mode MODES] [queues N] [vhost] [persistent] [allmulti on|off] [vlan IDS] [netns NS[,NS...]]
//   deny  [SUBJECT] TARGET [mode MODES] [netns NS[,NS...]]
//
//   SUBJECT = user U[,U...] | group G[,G...] | everyone | all
//   TARGET  = all | dev IFNAME[,...] | network NAME[,...] | pool NAME[,...] | IFNAME
//
// "allow br0", "deny all" and "include FILE" read as they do in
// qemu-bridge-helper's bridge.conf. A line with any problem is reported and
// the whole policy is refused by the loader (fail closed).

import type { ModeName } from '../modes.ts';
import {
  includePathProblem, isMode, netnsNameProblem, parseAccountWord, parsePolicyNumber, policyIfnameProblem, policyNameProblem,
  MAX_LINK_LIMIT, MAX_QUEUES, MAX_VLAN_ID, MIN_VLAN_ID, QUALIFIER_WORDS, RESERVED_WORDS, SUBJECT_WORDS, TARGET_WORDS,
} from './syntax.ts';
import type { AccountRef, LimitDef, NetnsSpec, NetworkDef, Policy, PolicyProblem, PoolDef, Rule, Subject, Target, Where } from './types.ts';
import { formatWhere } from './types.ts';

export type Statement =
  | { kind: 'include'; path: string; where: Where }
  | { kind: 'network'; def: NetworkDef }
  | { kind: 'pool'; def: PoolDef }
  | { kind: 'rule'; rule: Rule }
  | { kind: 'limit'; def: LimitDef };

export const MAX_LINE_BYTES = 4096;

export interface ParsedText {
  statements: Statement[];
  problems: PolicyProblem[];
}

class LineError extends Error {
  readonly fix: string;
  constructor(message: string, fix: string) {
    super(message);
    this.fix = fix;
  }
}

function fail(message: string, fix: string): never {
  throw new LineError(message, fix);
}

function q(word: string): string {
  return JSON.stringify(word);
}

const has = (list: readonly string[], w: string | undefined): boolean => w !== undefined && list.includes(w);

/** The words of one line, read left to right. */
class Words {
  readonly words: readonly string[];
  readonly where: Where;
  pos = 0;
  constructor(words: readonly string[], where: Where) {
    this.words = words;
    this.where = where;
  }

  peek(ahead = 0): string | undefined {
    return this.words[this.pos + ahead];
  }

  next(): string | undefined {
    const w = this.words[this.pos];
    if (w !== undefined) this.pos++;
    return w;
  }

  need(what: string, fix: string): string {
    return this.next() ?? fail(`${this.words.slice(0, this.pos).join(' ')} needs ${what}`, fix);
  }

  end(what: string): void {
    const w = this.peek();
    if (w !== undefined) fail(`unexpected ${q(w)} after ${what}`, 'remove it (a comment starts with "#")');
  }
}

/** Splits "a,b,c"; refuses empty items and repeats. */
function splitList(word: string, what: string): string[] {
  const items = word.split(',');
  if (items.some((i) => i === '')) fail(`${q(word)} has an empty item in its list of ${what}`, 'join list items with "," and no spaces, as in eth0,eth1');
  const seen = new Set<string>();
  for (const i of items) {
    if (seen.has(i)) fail(`${q(i)} is listed twice in ${q(word)}`, 'list it once');
    seen.add(i);
  }
  return items;
}

function ifnames(word: string): string[] {
  return splitList(word, 'devices').map((n) => {
    const problem = policyIfnameProblem(n);
    if (problem) fail(`device name ${q(n)} ${problem}`, 'give the interface name as "ip link" shows it (at most 15 bytes)');
    return n;
  });
}

function policyNames(word: string, kind: 'network' | 'pool'): string[] {
  return splitList(word, `${kind}s`).map((n) => {
    const problem = policyNameProblem(n);
    if (problem) fail(`${kind} name ${q(n)} ${problem}`, `use the name of a ${kind} defined with "${kind} NAME ..."`);
    return n;
  });
}

function accountRefs(word: string, kind: 'user' | 'group'): AccountRef[] {
  return splitList(word, `${kind}s`).map((w): AccountRef => {
    const r = parseAccountWord(w);
    if ('problem' in r) fail(`${kind} ${q(w)} ${r.problem}`, `give a ${kind} name or a plain decimal ${kind === 'user' ? 'uid' : 'gid'}`);
    return 'id' in r ? { kind: 'id', id: r.id } : { kind: 'name', name: r.name };
  });
}

function modes(word: string): ModeName[] {
  return splitList(word, 'modes').map((m) => {
    if (!isMode(m)) fail(`unknown mode ${q(m)}`, 'modes are vepa, private, bridge and passthru');
    return m;
  });
}

function parseInclude(w: Words): Statement {
  const path = w.need('a path', 'write include /etc/qemu/net-helper.d or include /etc/qemu/FILE.conf');
  const problem = includePathProblem(path);
  if (problem) fail(`include path ${q(path)} ${problem}`, 'give an absolute path without ".", ".." or "//" (paths are not relative to the including file)');
  w.end('include PATH');
  return { kind: 'include', path, where: w.where };
}

function parseNetwork(w: Words): Statement {
  const usage = 'write network NAME dev IFNAME mode MODE [vlan ID]';
  const name = w.need('a name', usage);
  const nameProblem = policyNameProblem(name);
  if (nameProblem) fail(`network name ${q(name)} ${nameProblem}`, usage);
  let dev: string | undefined;
  let mode: ModeName | undefined;
  let vlan: number | undefined;
  for (let word = w.next(); word !== undefined; word = w.next()) {
    if (word === 'dev') {
      if (dev !== undefined) fail(`network ${name} gives dev twice`, 'a network is one device in one mode');
      const v = w.need('a device name', usage);
      if (v.includes(',')) fail(`network ${name} names more than one device (${q(v)})`, 'a network is one device; use a pool for several');
      dev = ifnames(v)[0];
    } else if (word === 'mode') {
      if (mode !== undefined) fail(`network ${name} gives mode twice`, 'a network is one device in one mode');
      const v = w.need('a mode', usage);
      if (v.includes(',')) fail(`network ${name} names more than one mode (${q(v)})`, 'a network has exactly one mode: define one network per mode');
      mode = modes(v)[0];
    } else if (word === 'vlan') {
      if (vlan !== undefined) fail(`network ${name} gives vlan twice`, 'a network is one VLAN; define one network per VLAN');
      const v = w.need('a VLAN id', usage);
      vlan = parsePolicyNumber(v, MIN_VLAN_ID, MAX_VLAN_ID) ?? fail(`vlan ${q(v)} is not a whole number from ${MIN_VLAN_ID} to ${MAX_VLAN_ID}`, 'write the 802.1Q id in plain decimal, e.g. vlan 100');
    } else {
      fail(`unexpected ${q(word)} in the definition of network ${name}`, usage);
    }
  }
  if (dev === undefined) fail(`network ${name} has no device`, usage);
  if (mode === undefined) fail(`network ${name} has no mode`, usage);
  return { kind: 'network', def: { name, dev, mode, vlan, where: w.where } };
}

function parsePool(w: Words): Statement {
  const usage = 'write pool NAME dev IFNAME,IFNAME,... or pool NAME pf IFNAME';
  const name = w.need('a name', usage);
  const nameProblem = policyNameProblem(name);
  if (nameProblem) fail(`pool name ${q(name)} ${nameProblem}`, usage);
  const kind = w.need('"dev" or "pf"', usage);
  let def: PoolDef;
  if (kind === 'dev') {
    def = { name, members: { kind: 'devs', devs: ifnames(w.need('device names', usage)) }, where: w.where };
    w.end(`pool ${name} dev LIST`);
  } else if (kind === 'pf') {
    const v = w.need('a device name', usage);
    if (v.includes(',')) fail(`pool ${name} names more than one physical function (${q(v)})`, 'define one pool per physical function');
    def = { name, members: { kind: 'pf', pf: ifnames(v)[0]! }, where: w.where };
    w.end(`pool ${name} pf IFNAME`);
  } else {
    fail(`expected "dev" or "pf" after pool ${name}, not ${q(kind)}`, usage);
  }
  return { kind: 'pool', def };
}

const TARGET_FIX = 'name what the rule is about: all, dev IFNAME, network NAME, pool NAME, or just a device name';

function parseSubject(w: Words): Subject {
  const first = w.peek();
  if (first === 'user' || first === 'group') {
    w.next();
    return { kind: first, refs: accountRefs(w.need(`a ${first} name`, `write ${first} NAME[,NAME...]`), first) };
  }
  if (first === 'everyone') {
    w.next();
    return { kind: 'everyone' };
  }
  // "all" is the subject when a target follows ("allow all pool vfs"), the
  // target when nothing or a qualifier does ("allow all", "deny all").
  if (first === 'all' && w.peek(1) !== undefined && !has(QUALIFIER_WORDS, w.peek(1))) {
    w.next();
    return { kind: 'everyone' };
  }
  return { kind: 'everyone' };
}

function parseTarget(w: Words, action: string): Target {
  const word = w.need('a target', TARGET_FIX);
  switch (word) {
    case 'all':
      return { kind: 'all' };
    case 'dev':
      return { kind: 'dev', names: ifnames(w.need('a device name', 'write dev IFNAME[,IFNAME...]')) };
    case 'network':
      return { kind: 'network', names: policyNames(w.need('a network name', 'write network NAME[,NAME...]'), 'network') };
    case 'pool':
      return { kind: 'pool', names: policyNames(w.need('a pool name', 'write pool NAME[,NAME...]'), 'pool') };
  }
  if (has(SUBJECT_WORDS, word)) fail(`a rule has one subject, but ${q(word)} follows another`, 'write one rule per subject; list several users or groups with commas');
  if (RESERVED_WORDS.has(word)) fail(`expected what to ${action}, not ${q(word)}`, TARGET_FIX);
  const problem = policyIfnameProblem(word);
  if (problem) fail(`device name ${q(word)} ${problem}`, 'give the interface name as "ip link" shows it (at most 15 bytes)');
  return { kind: 'dev', names: [word] };
}

function parseRule(w: Words, action: 'allow' | 'deny'): Statement {
  const subject = parseSubject(w);
  const target = parseTarget(w, action);
  let ruleModes: ModeName[] | undefined;
  let queues: number | undefined;
  let vhost = false;
  let persistent = false;
  let allmulti = true;
  let vlans: number[] = [];
  let netns: NetnsSpec | undefined;
  const seen = new Set<string>();
  for (let word = w.next(); word !== undefined; word = w.next()) {
    if (!has(QUALIFIER_WORDS, word)) {
      if (has(SUBJECT_WORDS, word)) fail(`${q(word)} comes too late: the subject goes right after ${action}`, `write ${action} ${word} NAME TARGET ...`);
      if (has(TARGET_WORDS, word)) fail(`a rule has one target, but ${q(word)} starts a second one`, 'write one rule per kind of target; list several names with commas, as in dev eth0,eth1');
      fail(`unexpected ${q(word)} in a rule`, 'a rule continues with mode, queues, vhost, persistent, allmulti, vlan or netns (a comment starts with "#")');
    }
    if (seen.has(word)) fail(`${word} is given twice in one rule`, 'give it once');
    seen.add(word);
    if (word === 'mode') {
      if (target.kind === 'network') fail('a network fixes its mode, so a rule about a network cannot give one', 'drop "mode", or write a rule about the device with dev IFNAME mode MODES');
      ruleModes = modes(w.need('a mode', 'write mode MODE[,MODE...]'));
    } else if (word === 'queues') {
      if (action === 'deny') fail('queues has no meaning in a deny rule', 'limit queues in the allow rules instead');
      const v = w.need('a number', `write queues N, N from 1 to ${MAX_QUEUES}`);
      queues = parsePolicyNumber(v, 1, MAX_QUEUES) ?? fail(`queues ${q(v)} is not a whole number from 1 to ${MAX_QUEUES}`, 'write it in plain decimal, e.g. queues 4');
    } else if (word === 'vhost') {
      if (action === 'deny') fail('vhost has no meaning in a deny rule', 'allow vhost only in the allow rules that should have it');
      vhost = true;
    } else if (word === 'persistent') {
      if (action === 'deny') fail('persistent has no meaning in a deny rule', 'allow persistent links only in the allow rules that should have them');
      persistent = true;
    } else if (word === 'allmulti') {
      if (action === 'deny') fail('allmulti has no meaning in a deny rule', 'turn allmulticast off in the allow rules instead');
      const v = w.need('on or off', 'write allmulti off (links this rule allows get no IFF_ALLMULTI) or allmulti on (the default)');
      if (v !== 'on' && v !== 'off') fail(`allmulti ${q(v)} is neither on nor off`, 'write allmulti off or allmulti on');
      allmulti = v === 'on';
    } else if (word === 'vlan') {
      if (action === 'deny') fail('vlan has no meaning in a deny rule', 'a deny rule covers the device with and without VLANs');
      if (target.kind === 'network') fail('a network fixes its VLAN, so a rule about a network cannot give one', 'drop "vlan", or define the network with vlan ID');
      vlans = vlanIds(w.need('VLAN ids', 'write vlan ID[,ID...] (ranges as 100-199), ids from 1 to 4094'));
    } else {
      const names: string[] = [];
      let host = false;
      for (const n of splitList(w.need('a namespace', 'write netns host or netns NAME[,NAME...] (names from /run/netns)'), 'namespaces')) {
        if (n === 'host') {
          host = true;
          continue;
        }
        const problem = netnsNameProblem(n);
        if (problem) fail(`namespace name ${q(n)} ${problem}`, 'give "host" or the name "ip netns list" shows');
        names.push(n);
      }
      netns = { host, names };
    }
  }
  return {
    kind: 'rule',
    rule: {
      action,
      subject,
      target,
      modes: ruleModes,
      queues: action === 'allow' ? (queues ?? 1) : MAX_QUEUES,
      vhost,
      persistent,
      allmulti,
      vlans,
      netns,
      where: w.where,
    },
  };
}

/** "100,200-210" as the sorted, distinct ids it names. */
function vlanIds(text: string): number[] {
  const ids = new Set<number>();
  for (const part of splitList(text, 'VLAN ids')) {
    const range = /^([0-9]+)-([0-9]+)$/.exec(part);
    const [lo, hi] = range ? [range[1]!, range[2]!] : [part, part];
    const a = parsePolicyNumber(lo, MIN_VLAN_ID, MAX_VLAN_ID);
    const b = parsePolicyNumber(hi, MIN_VLAN_ID, MAX_VLAN_ID);
    if (a === undefined || b === undefined || a > b) fail(`vlan ${q(part)} is not an id or a range of ids from ${MIN_VLAN_ID} to ${MAX_VLAN_ID}`, 'write vlan 100 or vlan 100,200-210');
    for (let id = a; id <= b; id++) ids.add(id);
  }
  return [...ids].sort((x, y) => x - y);
}

function parseLimit(w: Words): Statement {
  const usage = `write limit [user NAME | group NAME | everyone] links N, N from 0 to ${MAX_LINK_LIMIT}`;
  const first = w.peek();
  let subject: Subject = { kind: 'everyone' };
  if (first === 'user' || first === 'group') {
    w.next();
    subject = { kind: first, refs: accountRefs(w.need(`a ${first} name`, usage), first) };
  } else if (first === 'everyone') {
    w.next();
  }
  const word = w.need('"links"', usage);
  if (word !== 'links') fail(`expected "links" in a limit, not ${q(word)}`, usage);
  const v = w.need('a number', usage);
  const links = parsePolicyNumber(v, 0, MAX_LINK_LIMIT) ?? fail(`links ${q(v)} is not a whole number from 0 to ${MAX_LINK_LIMIT}`, usage);
  w.end('limit ... links N');
  return { kind: 'limit', def: { subject, links, where: w.where } };
}

function parseStatement(w: Words): Statement {
  const keyword = w.next()!;
  switch (keyword) {
    case 'include':
      return parseInclude(w);
    case 'network':
      return parseNetwork(w);
    case 'pool':
      return parsePool(w);
    case 'allow':
    case 'deny':
      return parseRule(w, keyword);
    case 'limit':
      return parseLimit(w);
    default:
      return fail(`unknown statement ${q(keyword)}`, 'a line starts with allow, deny, include, network, pool or limit');
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses one file's text. Never throws for bad input: every bad line becomes a problem. */
export function parsePolicyText(data: Buffer | string, file: string, maxLineBytes = MAX_LINE_BYTES): ParsedText {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const statements: Statement[] = [];
  const problems: PolicyProblem[] = [];
  let line = 0;
  for (let start = 0; start < buf.length;) {
    let end = buf.indexOf(0x0a, start);
    if (end < 0) end = buf.length;
    const bytes = buf.subarray(start, end);
    start = end + 1;
    line++;
    const where = { file, line };
    try {
      if (bytes.length > maxLineBytes) fail(`the line is ${bytes.length} bytes long; at most ${maxLineBytes} are allowed`, 'shorten it, or split the rule into several');
      let text: string;
      try {
        text = utf8.decode(bytes);
      } catch {
        fail('the line is not valid UTF-8', 'save the file as UTF-8 (or plain ASCII)');
      }
      const ctl = /[\x00-\x08\x0a-\x1f\x7f]/.exec(text);
      if (ctl) {
        if (ctl[0] === '\r') fail('the line ends in a carriage return (DOS line endings)', "convert the file with dos2unix or sed -i 's/\\r$//'");
        fail(`the line contains the control character 0x${ctl[0].charCodeAt(0).toString(16).padStart(2, '0')}`, 'remove it');
      }
      const words: string[] = [];
      for (const word of text.split(/[ \t]+/)) {
        if (word === '') continue;
        if (word.startsWith('#')) break;
        words.push(word);
      }
      if (words.length > 0) statements.push(parseStatement(new Words(words, where)));
    } catch (err) {
      if (!(err instanceof LineError)) throw err;
      problems.push({ file, line, message: err.message, fix: err.fix });
    }
  }
  return { statements, problems };
}

/**
 * Builds the policy from every file's statements (includes already expanded,
 * in order): duplicate definitions and references to undefined networks or
 * pools are problems. The policy is usable only when `problems` is empty.
 */
export function assemblePolicy(statements: readonly Statement[], files: readonly string[]): { policy: Policy; problems: PolicyProblem[] } {
  const networks = new Map<string, NetworkDef>();
  const pools = new Map<string, PoolDef>();
  const rules: Rule[] = [];
  const limits: LimitDef[] = [];
  const problems: PolicyProblem[] = [];
  for (const s of statements) {
    if (s.kind === 'limit') limits.push(s.def);
    if (s.kind === 'network' || s.kind === 'pool') {
      const map: Map<string, NetworkDef | PoolDef> = s.kind === 'network' ? networks : pools;
      const existing = map.get(s.def.name);
      if (existing) {
        problems.push({ ...s.def.where, message: `${s.kind} ${s.def.name} is already defined at ${formatWhere(existing.where)}`, fix: `give each ${s.kind} a different name` });
      } else {
        map.set(s.def.name, s.def);
      }
    } else if (s.kind === 'rule') {
      rules.push(s.rule);
    }
  }
  for (const r of rules) {
    if (r.target.kind !== 'network' && r.target.kind !== 'pool') continue;
    const kind = r.target.kind;
    const defined: ReadonlyMap<string, unknown> = kind === 'network' ? networks : pools;
    for (const name of r.target.names) {
      if (!defined.has(name)) {
        problems.push({ ...r.where, message: `no ${kind} named ${name} is defined`,
          fix: kind === 'network' ? `define it with "network ${name} dev IFNAME mode MODE"` : `define it with "pool ${name} dev IFNAME,..." or "pool ${name} pf IFNAME"` });
      }
    }
  }
  return { policy: { files: [...files], networks, pools, rules, limits }, problems };
}
