// qemu-net-launch's plan: from QEMU's argv to the macvtaps to make, one
// frozen request each (the helper, its options, the netdev id, the NIC it
// serves). Every argument error comes out here, before anything is made: a
// form's own keys (macvtap-form.ts), then what concerns the whole command line
// (-daemonize, ids used twice, a NIC's MAC against the netdev's, NICs per
// netdev). Pure: no I/O. render.ts turns the plan and the helpers' results
// into QEMU's final argv.

import { UsageError } from '../errors.ts';
import { isShorthand } from './helper-modes.ts';
import { checkMac, helperArgv, readMacvtapForm, type MacvtapForm } from './macvtap-form.ts';
import { netdevIds, nicOf, type NicUse } from './qemu-nics.ts';
import { jsonObject, keyvalGet, optionText, parseKeyval, scanQemuArgs, type QemuOption } from './qemu-options.ts';

/** One macvtap to make: the helper to run and what becomes of the argument. */
export interface MacvtapRequest {
  /** The netdev id (generated for a -net shorthand without id=). */
  readonly id: string;
  /** -netdev macvtap, or a -net shorthand (which also adds a NIC). */
  readonly form: 'netdev' | 'net';
  /** Index of the option word in QEMU's arguments. */
  readonly index: number;
  /** The option and its argument as written, for messages. */
  readonly written: string;
  /** The helper program's name (qemu-net-helper-vepa, ...). */
  readonly helper: string;
  /** The helper's options, in a fixed order (the caller adds --socketpair). */
  readonly helperArgs: readonly string[];
  readonly queues: number;
  /** The MAC asked for (the netdev's or its NIC's mac=), lower case. */
  readonly mac: string | undefined;
  /** The NIC using a -netdev macvtap; undefined when none does (or for the shorthand, which adds its own). */
  readonly nic: NicUse | undefined;
}

export interface LaunchPlan {
  readonly args: readonly string[];
  readonly requests: readonly MacvtapRequest[];
}

/** Our forms among the options, read and checked one by one. */
function readForms(options: readonly QemuOption[]): MacvtapForm[] {
  const forms: MacvtapForm[] = [];
  for (const o of options) {
    if (o.name !== 'netdev' && o.name !== 'net') continue;
    if (o.value === undefined) {
      // QEMU would say so too; we say it before any helper runs.
      throw new UsageError(`${o.spelling} at the end of the command line has no argument`, `give it one, e.g. ${o.spelling} macvtap,id=n0,dev=eth0,mode=vepa`);
    }
    const json = jsonObject(o.value);
    if (json) {
      if (json.type === 'macvtap' || (o.name === 'net' && typeof json.type === 'string' && isShorthand(json.type))) {
        throw new UsageError(`${optionText(o)}: the JSON form is not supported for macvtap`, `write ${o.spelling} macvtap,id=ID,dev=IFNAME,mode=MODE`);
      }
      continue;
    }
    const kv = parseKeyval(o.value, 'type');
    const type = keyvalGet(kv, 'type');
    if (o.name === 'netdev' && type === 'macvtap') forms.push(readMacvtapForm(o, kv, undefined));
    else if (o.name === 'net' && type !== undefined && isShorthand(type)) forms.push(readMacvtapForm(o, kv, type));
  }
  return forms;
}

/** The netdev id of each form: the user's (each used once), or generated so as to collide with no id on the command line. */
function netdevIdsFor(forms: readonly MacvtapForm[], options: readonly QemuOption[]): string[] {
  const used = netdevIds(options);
  const ours = new Set<string>();
  for (const f of forms) {
    if (f.id === undefined) continue;
    if (ours.has(f.id)) throw new UsageError(`${f.written}: netdev id ${f.id} is used twice`, 'give each netdev its own id');
    ours.add(f.id);
  }
  const counters = new Map<string, number>();
  return forms.map((f) => {
    if (f.id !== undefined) return f.id;
    const base = f.shorthand ?? 'macvtap';
    let n = counters.get(base) ?? 0;
    while (used.has(`${base}${n}`) || ours.has(`${base}${n}`)) n++;
    counters.set(base, n + 1);
    ours.add(`${base}${n}`);
    return `${base}${n}`;
  });
}

/** Finds our forms in QEMU's arguments (argv without argv[0]). Throws UsageError for anything wrong in them. */
export function planLaunch(args: readonly string[]): LaunchPlan {
  const options = scanQemuArgs(args);
  const forms = readForms(options);
  if (forms.length === 0) return Object.freeze({ args, requests: Object.freeze([]) });

  const daemonize = options.find((o) => o.name === 'daemonize');
  if (daemonize) {
    throw new UsageError(`${daemonize.spelling} cannot be used with macvtaps from qemu-net-launch: QEMU would fork, the process that owns the links would exit, and --gc would delete them under the running guest`,
      'run QEMU in the foreground (under systemd, tmux or nohup if it must outlive your shell)');
  }

  const ids = netdevIdsFor(forms, options);
  const nics = options.map(nicOf).filter((n) => n !== undefined);
  const written = (index: number) => optionText(options.find((o) => o.index === index)!);
  const requests = forms.map((f, i): MacvtapRequest => {
    const id = ids[i]!;
    const users = nics.filter((n) => n.netdev === id);
    let nic: NicUse | undefined;
    let mac = f.mac;
    if (f.form === 'net') {
      if (users.length > 0) {
        throw new UsageError(`${f.written} adds its own NIC, but ${written(users[0]!.index)} also uses netdev ${id}`,
          `use -netdev macvtap,id=${id},... with your -device instead`);
      }
    } else {
      if (users.length > 1) throw new UsageError(`${users.length} NICs use netdev ${id}`, 'a netdev serves one NIC: give each NIC its own -netdev');
      const user = users[0];
      if (user) {
        const { netdev: _, ...rest } = user;
        nic = Object.freeze(rest);
        if (user.mac !== undefined) {
          const where = written(user.index);
          const nicMac = checkMac(where, user.kind === 'net-nic' ? 'macaddr' : 'mac', user.mac);
          if (mac !== undefined && mac !== nicMac) {
            throw new UsageError(`${f.written} asks for mac=${mac} but its NIC (${where}) has ${nicMac}`, 'give the MAC once (the NIC\'s is enough): the guest NIC and the macvtap must have the same one');
          }
          mac = nicMac;
        }
      }
    }
    return Object.freeze({
      id, form: f.form, index: f.index, written: f.written, helper: f.helper.name,
      helperArgs: Object.freeze(helperArgv(f, mac)), queues: f.queues, mac, nic,
    });
  });
  return Object.freeze({ args, requests: Object.freeze(requests) });
}
