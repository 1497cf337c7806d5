// QEMU's final argv, from the plan (plan.ts) and what each helper handed over:
// each of our forms becomes `-netdev tap,id=ID,fd(s)=...,vhost=on|off[,vhostfd(s)=...]`
// (a -net shorthand also gets its virtio NIC), the NIC that uses a netdev gets
// the macvtap's MAC (and multiqueue), and every other argument stays as it
// was, in order. Pure: no I/O.

import type { NicUse } from './qemu-nics.ts';
import { appendItems, parseKeyval } from './qemu-options.ts';
import type { LaunchPlan, MacvtapRequest } from './plan.ts';

/** What a helper handed over for one request. */
export interface MacvtapResult {
  mac: string;
  tapFds: readonly number[];
  vhostFds: readonly number[];
}

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
function nicAdditions(nic: Omit<NicUse, 'index'>, result: MacvtapResult): Array<[string, string | number | boolean]> {
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
  const nic: Omit<NicUse, 'index'> = { kind: 'device', driver: 'virtio-net-pci', mac: undefined, hasMq: false, hasVectors: false };
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
