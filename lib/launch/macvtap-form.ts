// One of the launcher's own forms among QEMU's arguments, read and checked:
//   -netdev macvtap,id=ID,(dev=IFNAME|network=NAME|pool=NAME|pf=IFNAME)[,mode=MODE]
//           [,queues=N][,vhost=on|off|try][,mac=MAC][,ifname=NAME][,vlan=ID][,allmulti=on|off]
//   -net vepa,...  -net bridge-macvtap,...  -net passthrough,...   (the same keys, id optional)
// Every key is checked here, each error naming the option as written and the
// key, so nothing wrong reaches a helper. Then, once the plan knows the MAC
// (the form's own or its NIC's), helperArgv writes the helper's options.

import { MAX_TAP_QUEUES, MAX_VLAN_ID, MIN_VLAN_ID } from '../constants.ts';
import { UsageError } from '../errors.ts';
import type { HelperProgram } from '../helper/programs.ts';
import { macProblem } from '../mac.ts';
import { callerIfnameProblem, CALLER_IFNAME_PREFIX, ifnameProblem } from '../names.ts';
import { policyNameProblem } from '../policy/syntax.ts';
import {
  defaultHelper, helpersTaking, helperOfMode, helperTakes, kernelModeName, LAUNCH_MODES, launchModesOf, LOWER_KEYS, orList, parseLaunchMode, shorthandOf,
  SHORTHANDS, type LaunchMode, type LowerKey, type Shorthand,
} from './helper-modes.ts';
import { optionText, type Keyval, type QemuOption } from './qemu-options.ts';

export const MACVTAP_KEYS = ['id', 'dev', 'network', 'pool', 'pf', 'mode', 'queues', 'vhost', 'mac', 'ifname', 'vlan', 'allmulti'] as const;
type MacvtapKey = (typeof MACVTAP_KEYS)[number];

/** Keys passed on to the helper as --KEY=VALUE once checked, in the helper's order (after the lower device, mode and MAC). */
const PASSED_KEYS = ['ifname', 'queues', 'vhost', 'vlan', 'allmulti'] as const;
type PassedKey = (typeof PASSED_KEYS)[number];

/** QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. */
const QEMU_ID = /^[A-Za-z][A-Za-z0-9._-]*$/;
const DECIMAL = /^[1-9][0-9]{0,9}$/;

/** One of our forms, every value checked. */
export interface MacvtapForm {
  /** The id= given; undefined for a -net shorthand without one (the plan makes one). */
  readonly id: string | undefined;
  /** -netdev macvtap, or a -net shorthand (which also adds a NIC). */
  readonly form: 'netdev' | 'net';
  readonly shorthand: Shorthand | undefined;
  /** Index of the option word in QEMU's arguments. */
  readonly index: number;
  /** The option and its argument as written, for messages. */
  readonly written: string;
  readonly helper: HelperProgram;
  readonly lower: { readonly key: LowerKey; readonly name: string };
  readonly mode: LaunchMode | undefined;
  /** mac= in lower case. */
  readonly mac: string | undefined;
  readonly queues: number;
  /** The keys passed on to the helper as written (queues= too, when given). */
  readonly passed: Readonly<Partial<Record<PassedKey, string>>>;
}

/** Checks a MAC address the way the helpers do (lib/mac.ts), naming the option and key; returns it in lower case. */
export function checkMac(where: string, key: string, text: string): string {
  const problem = macProblem(text);
  if (problem) throw new UsageError(`${where}: ${key}=${text} ${problem.cause}`, problem.fix);
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

const MODE_CHOICES = orList(LAUNCH_MODES.map((m) => `mode=${m}`));

/** The helper for the form: the shorthand's, mode='s, or the one the lower device allows. */
function chooseHelper(where: string, lower: LowerKey, mode: LaunchMode | undefined, shorthand: Shorthand | undefined): HelperProgram {
  let helper: HelperProgram | undefined;
  if (shorthand !== undefined) {
    const s = SHORTHANDS[shorthand];
    if (mode !== undefined && !s.modes.includes(mode)) {
      throw new UsageError(`${where}: -net ${shorthand} does not make ${mode} macvtaps`,
        `leave mode= out, or use -netdev macvtap,...,mode=${mode} with a -device of your own`);
    }
    helper = s.helper;
  } else if (mode !== undefined) {
    helper = helperOfMode(mode);
  } else {
    helper = defaultHelper(lower);
    if (helper === undefined) throw new UsageError(`${where}: no mode`, `add ${MODE_CHOICES}`);
  }
  if (!helperTakes(helper, lower)) {
    const takers = helpersTaking(lower);
    const launchModes = takers.flatMap(launchModesOf);
    const shorthands = takers.map(shorthandOf).filter((s) => s !== undefined).map((s) => `-net ${s}`);
    throw new UsageError(`${where}: ${lower}= is only for ${orList(launchModes)} macvtaps`,
      `use ${orList(launchModes.map((m) => `mode=${m}`))}${shorthands.length ? ` (or ${orList(shorthands)})` : ''}, or name one device with dev=`);
  }
  return helper;
}

/** Reads one of our forms (`option`, its argument parsed as `kv`). Throws UsageError for anything wrong in it. */
export function readMacvtapForm(option: QemuOption, kv: Keyval, shorthand: Shorthand | undefined): MacvtapForm {
  const form = shorthand === undefined ? 'netdev' : 'net';
  const where = optionText(option);
  const keys = macvtapKeys(where, kv, 'type');
  const lowers = LOWER_KEYS.filter((k) => keys.has(k));
  if (lowers.length === 0) throw new UsageError(`${where}: no lower device`, 'add dev=IFNAME, network=NAME, pool=NAME (a policy pool) or pf=IFNAME');
  if (lowers.length > 1) throw new UsageError(`${where}: ${lowers.join('= and ')}= cannot be combined`, 'name the lower device one way only');
  const lower = { key: lowers[0]!, name: keys.get(lowers[0]!)! };

  let mode: LaunchMode | undefined;
  const modeText = keys.get('mode');
  if (modeText !== undefined) {
    mode = parseLaunchMode(modeText);
    if (mode === undefined) throw new UsageError(`${where}: mode=${modeText} is not a macvtap mode`, `use ${MODE_CHOICES}`);
  }
  const helper = chooseHelper(where, lower.key, mode, shorthand);

  if (lower.key === 'dev' || lower.key === 'pf') {
    const problem = ifnameProblem(lower.name);
    if (problem) throw new UsageError(`${where}: ${lower.key}=${lower.name} ${problem}`, 'give a host network device name (see ip link)');
  } else {
    const problem = policyNameProblem(lower.name);
    if (problem) throw new UsageError(`${where}: ${lower.key}=${lower.name} ${problem}`, `give the name of a ${lower.key} defined in /etc/qemu/net-helper.conf`);
  }

  const macText = keys.get('mac');
  const mac = macText === undefined ? undefined : checkMac(where, 'mac', macText);

  const passed: Partial<Record<PassedKey, string>> = {};
  const ifname = keys.get('ifname');
  if (ifname !== undefined) {
    const problem = callerIfnameProblem(ifname);
    if (problem) throw new UsageError(`${where}: ifname=${ifname} ${problem}`, `give a name of at most 15 characters that starts with ${CALLER_IFNAME_PREFIX}, or a template such as ${CALLER_IFNAME_PREFIX}vm1_%d`);
    passed.ifname = ifname;
  }
  const queues = keys.get('queues');
  if (queues !== undefined) {
    if (!DECIMAL.test(queues) || Number(queues) > MAX_TAP_QUEUES) {
      throw new UsageError(`${where}: queues=${queues} is not a whole number from 1 to ${MAX_TAP_QUEUES}`, 'write it in plain decimal, e.g. queues=2');
    }
    passed.queues = queues;
  }
  const vhost = keys.get('vhost');
  if (vhost !== undefined) {
    if (vhost !== 'on' && vhost !== 'off' && vhost !== 'try') throw new UsageError(`${where}: vhost=${vhost} is not on, off or try`, 'use vhost=on, vhost=off or vhost=try');
    passed.vhost = vhost;
  }
  const vlan = keys.get('vlan');
  if (vlan !== undefined) {
    if (!/^[1-9][0-9]{0,3}$/.test(vlan) || Number(vlan) > MAX_VLAN_ID) throw new UsageError(`${where}: vlan=${vlan} is not a VLAN id from ${MIN_VLAN_ID} to ${MAX_VLAN_ID}`, 'write the 802.1Q id in plain decimal, e.g. vlan=100');
    passed.vlan = vlan;
  }
  const allmulti = keys.get('allmulti');
  if (allmulti !== undefined) {
    if (allmulti !== 'on' && allmulti !== 'off') throw new UsageError(`${where}: allmulti=${allmulti} is not on or off`, 'use allmulti=on or allmulti=off');
    passed.allmulti = allmulti;
  }

  const id = keys.get('id');
  if (id !== undefined && !QEMU_ID.test(id)) {
    throw new UsageError(`${where}: id=${id} is not a valid QEMU id`, "start it with a letter and use only letters, digits, '-', '.' and '_'");
  }
  if (id === undefined && form === 'netdev') throw new UsageError(`${where}: no id`, 'add id=NAME and use it in the NIC: -device virtio-net-pci,netdev=NAME');
  return {
    id, form, shorthand, index: option.index, written: where, helper, lower, mode, mac,
    queues: queues === undefined ? 1 : Number(queues), passed,
  };
}

/** The helper's options for the form, in a fixed order, with the MAC the plan settled on (the caller adds --socketpair). */
export function helperArgv(form: MacvtapForm, mac: string | undefined): string[] {
  const { key, name } = form.lower;
  // pool= names a policy pool: an explicit list cannot be written inside QEMU's comma-separated syntax.
  const args = [key === 'pool' ? `--pool=@${name}` : `--${key}=${name}`];
  if (form.mode !== undefined) args.push(`--mode=${kernelModeName(form.mode)}`);
  if (mac !== undefined) args.push(`--mac=${mac}`);
  for (const k of PASSED_KEYS) {
    const value = form.passed[k];
    if (value !== undefined) args.push(`--${k}=${value}`);
  }
  return args;
}
