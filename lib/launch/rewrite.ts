// qemu-net-launch's argument rewriting. Pure: QEMU's argv in, a plan (which
// helper to run for which netdev, with which options) out; then the plan and
// the helpers' results in, QEMU's final argv out. No I/O.
//
// Our forms among QEMU's arguments:
//   -netdev macvtap,id=ID,(dev=IFNAME|network=NAME|pool=NAME|pf=IFNAME)[,mode=MODE]
//           [,queues=N][,vhost=on|off|try][,mac=MAC][,ifname=NAME][,vlan=ID][,allmulti=on|off]
//   -net vepa,...  -net bridge-macvtap,...  -net passthrough,...   (the same keys, id optional;
//           also adds a virtio NIC, as -net nic would)
// Each becomes `-netdev tap,id=ID,fd(s)=...,vhost=on|off[,vhostfd(s)=...]`; every other
// argument stays as it was, in order. The NIC that uses the netdev gets the macvtap's MAC.
//
// QEMU's option syntax (QemuOpts, util/qemu-option.c): "key=value" items separated by
// ",", a ",," inside a value is a literal comma, the first item may omit its key (type=
// for -netdev and -net, driver= for -device), and an item without "=" is a flag. We find
// options by walking argv as QEMU does: an option either takes the next word as its
// argument or takes none (QEMU_OPTIONS_WITHOUT_ARGUMENT), so a word such as "-net" inside
// -append's argument is never taken for an option.

import { MAX_TAP_QUEUES, MAX_VLAN_ID, MIN_VLAN_ID } from '../constants.ts';
import { UsageError } from '../errors.ts';
import { BRIDGE_HELPER, PASSTHROUGH_HELPER, VEPA_HELPER } from '../helper/programs.ts';
import { callerIfnameProblem, CALLER_IFNAME_PREFIX, ifnameProblem } from '../names.ts';
import { policyNameProblem } from '../policy/syntax.ts';

/** QEMU 7.2's options that take no argument (qemu-options.hx, every target); all others take one. */
export const QEMU_OPTIONS_WITHOUT_ARGUMENT: ReadonlySet<string> = new Set([
  'h', 'help', 'version', 'mem-prealloc', 'audio-help', 'snapshot', 'usb', 'nographic', 'portrait',
  'full-screen', 'win2k-hack', 'no-fd-bootchk', 'no-acpi', 'no-hpet', 'singlestep', 'preconfig', 'S', 's',
  'enable-kvm', 'xen-attach', 'xen-domid-restrict', 'no-reboot', 'no-shutdown', 'daemonize',
  'only-migratable', 'nodefaults', 'no-user-config', 'async-teardown', 'enable-sync-profile',
  'semihosting', 'old-param',
]);


// ---------------------------------------------------------------------------
// QemuOpts syntax

export interface KeyvalItem {
  key: string;
  /** undefined for a flag item ("key" without "="). */
  value: string | undefined;
}

export interface Keyval {
  items: KeyvalItem[];
  /** The text ends with a separating comma (QEMU ignores it); appending must not add another. */
  endsWithSeparator: boolean;
}

/** Reads a value from `p` up to an unescaped comma; ",," is a literal comma. */
function readValue(text: string, p: number): [string, number] {
  let value = '';
  while (p < text.length) {
    if (text[p] === ',') {
      if (text[p + 1] !== ',') break;
      value += ',';
      p += 2;
      continue;
    }
    value += text[p];
    p++;
  }
  return [value, p];
}

/** Splits QEMU option text as QemuOpts does; `impliedKey` names a first item written without "key=". */
export function parseKeyval(text: string, impliedKey?: string): Keyval {
  const items: KeyvalItem[] = [];
  let endsWithSeparator = false;
  let p = 0;
  let first = true;
  while (p < text.length) {
    const rest = text.slice(p);
    const m = /[=,]/.exec(rest);
    const len = m ? m.index : rest.length;
    if (rest[len] !== '=') {
      if (first && impliedKey !== undefined) {
        const [value, next] = readValue(text, p);
        items.push({ key: impliedKey, value });
        p = next;
      } else {
        items.push({ key: rest.slice(0, len), value: undefined });
        p += len;
      }
    } else {
      const [value, next] = readValue(text, p + len + 1);
      items.push({ key: rest.slice(0, len), value });
      p = next;
    }
    first = false;
    if (p < text.length) {
      p++; // the separating comma
      if (p === text.length) endsWithSeparator = true;
    }
  }
  return { items, endsWithSeparator };
}

/** The value QEMU uses for `key`: the last one given. */
export function keyvalGet(kv: Keyval, key: string): string | undefined {
  for (let i = kv.items.length - 1; i >= 0; i--) {
    const item = kv.items[i]!;
    if (item.key === key) return item.value ?? 'on';
  }
  return undefined;
}

/** A value written into QEMU option text: commas doubled. */
export function escapeKeyvalValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/** Appends key=value items to option text, respecting a trailing separator. */
function appendItems(text: string, kv: Keyval, items: ReadonlyArray<readonly [string, string]>): string {
  if (items.length === 0) return text;
  const added = items.map(([k, v]) => `${k}=${escapeKeyvalValue(v)}`).join(',');
  return text + (text === '' || kv.endsWithSeparator ? '' : ',') + added;
}

// ---------------------------------------------------------------------------
// QEMU's command line

export interface QemuOption {
  /** Index of the option word in the argument list. */
  index: number;
  /** The option's name without its dash(es), e.g. "netdev". */
  name: string;
  /** The option as written ("-netdev" or "--netdev"). */
  spelling: string;
  /** Its argument, for options that take one (undefined when missing at the end). */
  value: string | undefined;
}

/** The options in QEMU's arguments (argv without argv[0]), as QEMU itself reads them. */
export function scanQemuArgs(args: readonly string[]): QemuOption[] {
  const out: QemuOption[] = [];
  for (let i = 0; i < args.length; i++) {
    const word = args[i]!;
    if (!word.startsWith('-')) continue; // a disk image given without an option
    const name = word.startsWith('--') ? word.slice(2) : word.slice(1);
    if (QEMU_OPTIONS_WITHOUT_ARGUMENT.has(name)) {
      out.push({ index: i, name, spelling: word, value: undefined });
    } else {
      out.push({ index: i, name, spelling: word, value: args[i + 1] });
      i++;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Our forms

export type LaunchMode = 'vepa' | 'private' | 'bridge' | 'passthrough';
const LAUNCH_MODES: readonly LaunchMode[] = ['vepa', 'private', 'bridge', 'passthrough'];

/** The -net shorthand types and the helper each one runs. */
export const SHORTHANDS = {
  vepa: { helper: VEPA_HELPER.name, modes: ['vepa', 'private'] },
  'bridge-macvtap': { helper: BRIDGE_HELPER.name, modes: ['bridge'] },
  passthrough: { helper: PASSTHROUGH_HELPER.name, modes: ['passthrough'] },
} as const satisfies Record<string, { helper: string; modes: readonly LaunchMode[] }>;
export type Shorthand = keyof typeof SHORTHANDS;

const HELPER_OF_MODE: Record<LaunchMode, string> = {
  vepa: VEPA_HELPER.name,
  private: VEPA_HELPER.name,
  bridge: BRIDGE_HELPER.name,
  passthrough: PASSTHROUGH_HELPER.name,
};

/** The kernel's (and the helpers') name of each mode. */
const KERNEL_MODE: Record<LaunchMode, string> = { vepa: 'vepa', private: 'private', bridge: 'bridge', passthrough: 'passthru' };

export const MACVTAP_KEYS = ['id', 'dev', 'network', 'pool', 'pf', 'mode', 'queues', 'vhost', 'mac', 'ifname', 'vlan', 'allmulti'] as const;
type MacvtapKey = (typeof MACVTAP_KEYS)[number];
const TARGET_KEYS = ['dev', 'network', 'pool', 'pf'] as const;

/** The NIC that uses one of our netdevs, and what it already says. */
export interface NicUse {
  /** Index of its option word ("-device" or "-net"). */
  index: number;
  kind: 'device' | 'device-json' | 'net-nic';
  driver: string | undefined;
  mac: string | undefined;
  hasMq: boolean;
  hasVectors: boolean;
}

/** One macvtap to make: the helper to run and what becomes of the argument. */
export interface MacvtapRequest {
  /** The netdev id (generated for a -net shorthand without id=). */
  id: string;
  /** -netdev macvtap, or a -net shorthand (which also adds a NIC). */
  form: 'netdev' | 'net';
  /** Index of the option word in QEMU's arguments. */
  index: number;
  /** The option and its argument as written, for messages. */
  written: string;
  /** The helper program's name (qemu-net-helper-vepa, ...). */
  helper: string;
  /** The helper's options, in a fixed order (the caller adds --socketpair). */
  helperArgs: string[];
  queues: number;
  /** The MAC asked for (the netdev's or its NIC's mac=), lower case. */
  mac: string | undefined;
  /** The NIC using a -netdev macvtap; undefined when none does (or for the shorthand, which adds its own). */
  nic: NicUse | undefined;
}

export interface LaunchPlan {
  args: readonly string[];
  requests: MacvtapRequest[];
}

/** What a helper handed over for one request. */
export interface MacvtapResult {
  mac: string;
  tapFds: readonly number[];
  vhostFds: readonly number[];
}

/** QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. */
const QEMU_ID = /^[A-Za-z][A-Za-z0-9._-]*$/;
const DECIMAL = /^[1-9][0-9]{0,9}$/;

function shown(option: QemuOption): string {
  return `${option.spelling} ${option.value ?? ''}`.trim();
}

/** Checks a MAC address the way the helpers do; returns it in lower case. */
export function checkMac(where: string, key: string, text: string): string {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text)) {
    throw new UsageError(`${where}: ${key}=${text} is not a MAC address`, 'write it as six hex pairs such as 52:54:00:12:34:56');
  }
  const first = parseInt(text.slice(0, 2), 16);
  if (first & 1) throw new UsageError(`${where}: ${key}=${text} is a multicast address`, 'use a unicast address such as 52:54:00:12:34:56');
  if (/^(00:){5}00$/.test(text)) throw new UsageError(`${where}: ${key}=${text} is not usable`, 'give a real unicast address');
  return text.toLowerCase();
}

function macvtapKeys(where: string, kv: Keyval, typeKey: string): Map<MacvtapKey, string> {
  const out = new Map<MacvtapKey, string>();
  for (const item of kv.items) {
    if (item.key === typeKey) continue;
    if (item.key === '') throw new UsageError(`${where}: an empty item (stray comma)`, "separate items with one ',' and write a comma inside a value as ',,'");
    if (!(MACVTAP_KEYS as readonly string[]).includes(item.key)) {
      throw new UsageError(`${where}: unknown key ${JSON.stringify(item.key)}`, `the keys are ${MACVTAP_KEYS.join(', ')}`);
    }
    const key = item.key as MacvtapKey;
    if (item.value === undefined) throw new UsageError(`${where}: ${key} needs a value`, `write ${key}=VALUE`);
    if (item.value === '') throw new UsageError(`${where}: ${key}= is empty`, `write ${key}=VALUE`);
    if (out.has(key)) throw new UsageError(`${where}: ${key} is given twice`, 'give each key once');
    out.set(key, item.value);
  }
  return out;
}

/** Reads one of our forms into the helper to run and its options. */
type ParsedForm = Omit<MacvtapRequest, 'id' | 'nic' | 'helperArgs'> & {
  id: string | undefined;
  /** The helper's options before and after the place of --mac (known only once the NIC is found). */
  argsBeforeMac: string[];
  argsAfterMac: string[];
  shorthand?: Shorthand;
};

function macvtapRequest(option: QemuOption, kv: Keyval, form: 'netdev' | 'net', shorthand: Shorthand | undefined): ParsedForm {
  const where = shown(option);
  const keys = macvtapKeys(where, kv, 'type');
  const targets = TARGET_KEYS.filter((k) => keys.has(k));
  if (targets.length === 0) throw new UsageError(`${where}: no lower device`, 'add dev=IFNAME, network=NAME, pool=NAME (a policy pool) or pf=IFNAME');
  if (targets.length > 1) throw new UsageError(`${where}: ${targets.join('= and ')}= cannot be combined`, 'name the lower device one way only');
  const target = targets[0]!;
  const targetValue = keys.get(target)!;

  let mode: LaunchMode | undefined;
  const modeText = keys.get('mode');
  if (modeText !== undefined) {
    const normalised = modeText === 'passthru' ? 'passthrough' : modeText;
    if (!(LAUNCH_MODES as readonly string[]).includes(normalised)) {
      throw new UsageError(`${where}: mode=${modeText} is not a macvtap mode`, 'use mode=vepa, mode=private, mode=bridge or mode=passthrough');
    }
    mode = normalised as LaunchMode;
  }

  let helper: string;
  if (shorthand !== undefined) {
    const s = SHORTHANDS[shorthand];
    if (mode !== undefined && !(s.modes as readonly string[]).includes(mode)) {
      throw new UsageError(`${where}: -net ${shorthand} does not make ${mode} macvtaps`,
        `leave mode= out, or use -netdev macvtap,...,mode=${mode} with a -device of your own`);
    }
    helper = s.helper;
  } else if (mode !== undefined) {
    helper = HELPER_OF_MODE[mode];
  } else if (target === 'network') {
    helper = VEPA_HELPER.name; // the policy network sets the mode; a bridge or passthru network needs mode=
  } else if (target === 'pool' || target === 'pf') {
    helper = PASSTHROUGH_HELPER.name; // only passthru macvtaps take a pool or a PF
  } else {
    throw new UsageError(`${where}: no mode`, 'add mode=vepa, mode=private, mode=bridge or mode=passthrough');
  }
  if ((target === 'pool' || target === 'pf') && helper !== PASSTHROUGH_HELPER.name) {
    throw new UsageError(`${where}: ${target}= is only for passthrough macvtaps`, 'use mode=passthrough (or -net passthrough), or name one device with dev=');
  }

  const args: string[] = [];
  if (target === 'dev' || target === 'pf') {
    const problem = ifnameProblem(targetValue);
    if (problem) throw new UsageError(`${where}: ${target}=${targetValue} ${problem}`, 'give a host network device name (see ip link)');
    args.push(`--${target}=${targetValue}`);
  } else {
    const problem = policyNameProblem(targetValue);
    if (problem) throw new UsageError(`${where}: ${target}=${targetValue} ${problem}`, `give the name of a ${target} defined in /etc/qemu/net-helper.conf`);
    // pool= names a policy pool: an explicit list cannot be written inside QEMU's comma-separated syntax.
    args.push(target === 'pool' ? `--pool=@${targetValue}` : `--network=${targetValue}`);
  }
  if (mode !== undefined) args.push(`--mode=${KERNEL_MODE[mode]}`);
  const argsBeforeMac = args.splice(0);

  let mac: string | undefined;
  const macText = keys.get('mac');
  if (macText !== undefined) mac = checkMac(where, 'mac', macText);

  const ifname = keys.get('ifname');
  if (ifname !== undefined) {
    const problem = callerIfnameProblem(ifname);
    if (problem) throw new UsageError(`${where}: ifname=${ifname} ${problem}`, `give a name of at most 15 characters that starts with ${CALLER_IFNAME_PREFIX}, or a template such as ${CALLER_IFNAME_PREFIX}vm1_%d`);
    args.push(`--ifname=${ifname}`);
  }

  let queues = 1;
  const queuesText = keys.get('queues');
  if (queuesText !== undefined) {
    if (!DECIMAL.test(queuesText) || Number(queuesText) > MAX_TAP_QUEUES) {
      throw new UsageError(`${where}: queues=${queuesText} is not a whole number from 1 to ${MAX_TAP_QUEUES}`, 'write it in plain decimal, e.g. queues=2');
    }
    queues = Number(queuesText);
    args.push(`--queues=${queues}`);
  }

  const vhost = keys.get('vhost');
  if (vhost !== undefined) {
    if (vhost !== 'on' && vhost !== 'off' && vhost !== 'try') throw new UsageError(`${where}: vhost=${vhost} is not on, off or try`, 'use vhost=on, vhost=off or vhost=try');
    args.push(`--vhost=${vhost}`);
  }

  const vlan = keys.get('vlan');
  if (vlan !== undefined) {
    if (!/^[1-9][0-9]{0,3}$/.test(vlan) || Number(vlan) > MAX_VLAN_ID) throw new UsageError(`${where}: vlan=${vlan} is not a VLAN id from ${MIN_VLAN_ID} to ${MAX_VLAN_ID}`, 'write the 802.1Q id in plain decimal, e.g. vlan=100');
    args.push(`--vlan=${vlan}`);
  }
  const allmulti = keys.get('allmulti');
  if (allmulti !== undefined) {
    if (allmulti !== 'on' && allmulti !== 'off') throw new UsageError(`${where}: allmulti=${allmulti} is not on or off`, 'use allmulti=on or allmulti=off');
    args.push(`--allmulti=${allmulti}`);
  }

  const id = keys.get('id');
  if (id !== undefined && !QEMU_ID.test(id)) {
    throw new UsageError(`${where}: id=${id} is not a valid QEMU id`, "start it with a letter and use only letters, digits, '-', '.' and '_'");
  }
  if (id === undefined && form === 'netdev') throw new UsageError(`${where}: no id`, 'add id=NAME and use it in the NIC: -device virtio-net-pci,netdev=NAME');
  return { id, form, index: option.index, written: where, helper, argsBeforeMac, argsAfterMac: args, queues, mac, shorthand };
}

/** Netdev ids the command line already uses (they must not be generated). */
function netdevIds(options: readonly QemuOption[]): Set<string> {
  const ids = new Set<string>();
  for (const o of options) {
    if (o.value === undefined) continue;
    if (o.name === 'netdev' || o.name === 'net' || o.name === 'nic') {
      const json = jsonObject(o.value);
      if (json) {
        if (typeof json.id === 'string') ids.add(json.id);
        continue;
      }
      const kv = parseKeyval(o.value, 'type');
      for (const key of ['id', 'name']) {
        const v = keyvalGet(kv, key);
        if (v !== undefined) ids.add(v);
      }
    }
  }
  return ids;
}

function jsonObject(text: string): Record<string, unknown> | undefined {
  if (!text.trimStart().startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined; // QEMU will say what is wrong with it
  }
}

/** A NIC's reference to a netdev, if the option is a NIC. */
function nicOf(option: QemuOption): (NicUse & { netdev: string }) | undefined {
  if (option.value === undefined) return undefined;
  if (option.name === 'device') {
    const json = jsonObject(option.value);
    if (json) {
      if (typeof json.netdev !== 'string') return undefined;
      return {
        netdev: json.netdev, index: option.index, kind: 'device-json',
        driver: typeof json.driver === 'string' ? json.driver : undefined,
        mac: typeof json.mac === 'string' ? json.mac : undefined,
        hasMq: 'mq' in json, hasVectors: 'vectors' in json,
      };
    }
    const kv = parseKeyval(option.value, 'driver');
    const netdev = keyvalGet(kv, 'netdev');
    if (netdev === undefined) return undefined;
    return {
      netdev, index: option.index, kind: 'device', driver: keyvalGet(kv, 'driver'), mac: keyvalGet(kv, 'mac'),
      hasMq: keyvalGet(kv, 'mq') !== undefined, hasVectors: keyvalGet(kv, 'vectors') !== undefined,
    };
  }
  if (option.name === 'net') {
    const kv = parseKeyval(option.value, 'type');
    if (keyvalGet(kv, 'type') !== 'nic') return undefined;
    const netdev = keyvalGet(kv, 'netdev');
    if (netdev === undefined) return undefined;
    return { netdev, index: option.index, kind: 'net-nic', driver: keyvalGet(kv, 'model'), mac: keyvalGet(kv, 'macaddr'), hasMq: false, hasVectors: keyvalGet(kv, 'vectors') !== undefined };
  }
  return undefined;
}

/** Finds our forms in QEMU's arguments (argv without argv[0]). Throws UsageError for anything wrong in them. */
export function planLaunch(args: readonly string[]): LaunchPlan {
  const options = scanQemuArgs(args);
  const requests: ParsedForm[] = [];
  for (const o of options) {
    if (o.name !== 'netdev' && o.name !== 'net') continue;
    if (o.value === undefined) {
      // QEMU would say so too; we say it before any helper runs.
      throw new UsageError(`${o.spelling} at the end of the command line has no argument`, `give it one, e.g. ${o.spelling} macvtap,id=n0,dev=eth0,mode=vepa`);
    }
    const json = jsonObject(o.value);
    if (json) {
      if (json.type === 'macvtap' || (o.name === 'net' && typeof json.type === 'string' && Object.hasOwn(SHORTHANDS, json.type))) {
        throw new UsageError(`${shown(o)}: the JSON form is not supported for macvtap`, `write ${o.spelling} macvtap,id=ID,dev=IFNAME,mode=MODE`);
      }
      continue;
    }
    const kv = parseKeyval(o.value, 'type');
    const type = keyvalGet(kv, 'type');
    if (o.name === 'netdev' && type === 'macvtap') requests.push(macvtapRequest(o, kv, 'netdev', undefined));
    else if (o.name === 'net' && type !== undefined && Object.hasOwn(SHORTHANDS, type)) {
      requests.push(macvtapRequest(o, kv, 'net', type as Shorthand));
    }
  }
  if (requests.length === 0) return { args, requests: [] };

  const daemonize = options.find((o) => o.name === 'daemonize');
  if (daemonize) {
    throw new UsageError(`${daemonize.spelling} cannot be used with macvtaps from qemu-net-launch: QEMU would fork, the process that owns the links would exit, and --gc would delete them under the running guest`,
      'run QEMU in the foreground (under systemd, tmux or nohup if it must outlive your shell)');
  }

  // Ids: the user's must be unique; generated ones must not collide with any.
  const used = netdevIds(options);
  const ours = new Set<string>();
  for (const r of requests) {
    if (r.id === undefined) continue;
    if (ours.has(r.id)) throw new UsageError(`${r.written}: netdev id ${r.id} is used twice`, 'give each netdev its own id');
    ours.add(r.id);
  }
  const counters = new Map<string, number>();
  const nics = options.map(nicOf).filter((n) => n !== undefined);
  const out: MacvtapRequest[] = [];
  for (const r of requests) {
    let id = r.id;
    if (id === undefined) {
      const base = r.shorthand ?? 'macvtap';
      let n = counters.get(base) ?? 0;
      while (used.has(`${base}${n}`) || ours.has(`${base}${n}`)) n++;
      id = `${base}${n}`;
      counters.set(base, n + 1);
      ours.add(id);
    }
    const users = nics.filter((n) => n.netdev === id);
    let nic: NicUse | undefined;
    let mac = r.mac;
    if (r.form === 'net') {
      if (users.length > 0) {
        throw new UsageError(`${r.written} adds its own NIC, but ${shown(options.find((o) => o.index === users[0]!.index)!)} also uses netdev ${id}`,
          `use -netdev macvtap,id=${id},... with your -device instead`);
      }
    } else {
      if (users.length > 1) throw new UsageError(`${users.length} NICs use netdev ${id}`, 'a netdev serves one NIC: give each NIC its own -netdev');
      const user = users[0];
      if (user) {
        const { netdev: _, ...rest } = user;
        nic = rest;
        if (user.mac !== undefined) {
          const where = shown(options.find((o) => o.index === user.index)!);
          const nicMac = checkMac(where, user.kind === 'net-nic' ? 'macaddr' : 'mac', user.mac);
          if (mac !== undefined && mac !== nicMac) {
            throw new UsageError(`${r.written} asks for mac=${mac} but its NIC (${where}) has ${nicMac}`, 'give the MAC once (the NIC\'s is enough): the guest NIC and the macvtap must have the same one');
          }
          mac = nicMac;
        }
      }
    }
    const helperArgs = [...r.argsBeforeMac, ...(mac !== undefined ? [`--mac=${mac}`] : []), ...r.argsAfterMac];
    out.push({ id, form: r.form, index: r.index, written: r.written, helper: r.helper, helperArgs, queues: r.queues, mac, nic });
  }
  return { args, requests: out };
}

// ---------------------------------------------------------------------------
// The rewritten command line

/** `-netdev tap` text for a helper's fds: fd= or fds=, and vhost as the record says. */
export function tapNetdev(id: string, result: MacvtapResult): string {
  const taps = result.tapFds;
  const vhosts = result.vhostFds;
  if (taps.length === 0) throw new Error('tapNetdev: no tap fds');
  if (vhosts.length !== 0 && vhosts.length !== taps.length) throw new Error(`tapNetdev: ${taps.length} tap fds but ${vhosts.length} vhost fds`);
  const parts = ['tap', `id=${id}`, taps.length === 1 ? `fd=${taps[0]}` : `fds=${taps.join(':')}`];
  if (vhosts.length === 0) parts.push('vhost=off');
  else parts.push('vhost=on', vhosts.length === 1 ? `vhostfd=${vhosts[0]}` : `vhostfds=${vhosts.join(':')}`);
  return parts.join(',');
}

const VIRTIO_NET_PCI = new Set(['virtio-net-pci', 'virtio-net', 'virtio-net-pci-transitional', 'virtio-net-pci-non-transitional']);
const VIRTIO_NET_OTHER = new Set(['virtio-net-device', 'virtio-net-ccw']);

/** MSI-X vectors virtio-net-pci needs for N queue pairs: one per queue, one for config, one for control. */
export function vectorsFor(queues: number): number {
  return 2 * queues + 2;
}

/** Properties to add to a NIC so it matches the macvtap: its MAC, and multiqueue when there are several queues. */
function nicAdditions(nic: { kind: NicUse['kind']; driver: string | undefined; mac: string | undefined; hasMq: boolean; hasVectors: boolean }, result: MacvtapResult): Array<[string, string | number | boolean]> {
  const add: Array<[string, string | number | boolean]> = [];
  if (nic.mac === undefined) add.push([nic.kind === 'net-nic' ? 'macaddr' : 'mac', result.mac]);
  const queues = result.tapFds.length;
  const driver = nic.driver?.toLowerCase();
  if (queues > 1 && driver !== undefined && nic.kind !== 'net-nic') {
    const pci = VIRTIO_NET_PCI.has(driver);
    if (pci || VIRTIO_NET_OTHER.has(driver)) {
      if (!nic.hasMq) add.push(['mq', nic.kind === 'device-json' ? true : 'on']);
      if (pci && !nic.hasVectors) add.push(['vectors', vectorsFor(queues)]);
    }
  }
  return add;
}

function rewriteNic(text: string, nic: NicUse, result: MacvtapResult): string {
  const add = nicAdditions(nic, result);
  if (add.length === 0) return text;
  if (nic.kind === 'device-json') {
    const obj = JSON.parse(text) as Record<string, unknown>;
    for (const [k, v] of add) obj[k] = v;
    return JSON.stringify(obj);
  }
  const kv = parseKeyval(text, nic.kind === 'device' ? 'driver' : 'type');
  return appendItems(text, kv, add.map(([k, v]) => [k, String(v)] as const));
}

/** The -device a -net shorthand adds: a virtio NIC with the macvtap's MAC (and multiqueue). */
export function shorthandDevice(id: string, result: MacvtapResult): string {
  const nic = { kind: 'device' as const, driver: 'virtio-net-pci', mac: undefined, hasMq: false, hasVectors: false };
  return [`virtio-net-pci`, `netdev=${id}`, ...nicAdditions(nic, result).map(([k, v]) => `${k}=${v}`)].join(',');
}

/** QEMU's final arguments (without argv[0]): each of our forms replaced, everything else as written and in order. */
export function renderQemuArgs(plan: LaunchPlan, results: readonly MacvtapResult[]): string[] {
  if (results.length !== plan.requests.length) throw new Error(`renderQemuArgs: ${plan.requests.length} requests but ${results.length} results`);
  const byOption = new Map<number, { request: MacvtapRequest; result: MacvtapResult }>();
  const byNic = new Map<number, { nic: NicUse; result: MacvtapResult }>();
  plan.requests.forEach((request, i) => {
    const result = results[i]!;
    if (request.mac !== undefined && result.mac !== request.mac) throw new Error(`renderQemuArgs: ${request.id} asked for ${request.mac} but got ${result.mac}`);
    byOption.set(request.index, { request, result });
    if (request.nic) byNic.set(request.nic.index, { nic: request.nic, result });
  });
  const out: string[] = [];
  const args = plan.args;
  for (let i = 0; i < args.length; i++) {
    const ours = byOption.get(i);
    const nic = byNic.get(i);
    if (ours) {
      const { request, result } = ours;
      if (request.form === 'netdev') out.push(args[i]!, tapNetdev(request.id, result));
      else out.push('-netdev', tapNetdev(request.id, result), '-device', shorthandDevice(request.id, result));
      i++;
    } else if (nic) {
      out.push(args[i]!, rewriteNic(args[i + 1]!, nic.nic, nic.result));
      i++;
    } else {
      out.push(args[i]!);
    }
  }
  return out;
}
