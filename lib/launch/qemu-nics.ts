// What QEMU's command line already says about guest NICs and netdevs: which
// NIC (-device, JSON -device, or legacy -net nic) uses a netdev and what it
// gives itself (MAC, multiqueue), and which netdev ids are taken. The plan
// (plan.ts) reads these to tie each macvtap to its NIC; rendering (render.ts)
// adds to the NIC only what it lacks.

import { jsonObject, keyvalGet, parseKeyval, type QemuOption } from './qemu-options.ts';

/** The NIC that uses one of our netdevs, and what it already says. */
export interface NicUse {
  /** Index of its option word ("-device" or "-net"). */
  readonly index: number;
  readonly kind: 'device' | 'device-json' | 'net-nic';
  readonly driver: string | undefined;
  readonly mac: string | undefined;
  readonly hasMq: boolean;
  readonly hasVectors: boolean;
}

/** Netdev ids the command line already uses (they must not be generated). */
export function netdevIds(options: readonly QemuOption[]): Set<string> {
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

/** A NIC's reference to a netdev, if the option is a NIC. */
export function nicOf(option: QemuOption): (NicUse & { netdev: string }) | undefined {
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
