// SR-IOV virtual functions of a physical function, as sysfs shows them:
//   /sys/class/net/<pf>/device/virtfn<N>/net/<vf ifname>
// A VF without a net/ directory is not bound to a network driver: skipped.
//
// The sysfs root is a parameter only so tests can point it at a fake tree;
// helpers take it from their entry point, never from argv or the environment.

import { existsSync, readdirSync } from 'node:fs';
import { HelperError } from './errors.ts';
import { ifnameProblem } from './names.ts';

export const SYS_CLASS_NET = '/sys/class/net';

export interface VirtualFunction {
  /** The N of virtfnN. */
  index: number;
  /** Its network interface, or undefined when no network driver is bound. */
  ifname: string | undefined;
}

export function listVirtualFunctions(pf: string, sysClassNet = SYS_CLASS_NET): VirtualFunction[] {
  if (ifnameProblem(pf)) throw new Error(`refusing to build a sysfs path from ${JSON.stringify(pf)}`);
  const base = `${sysClassNet}/${pf}`;
  if (!existsSync(base)) throw new HelperError(`there is no network device named ${pf} in this network namespace`, "check the name with 'ip link'");
  let entries: string[];
  try {
    entries = readdirSync(`${base}/device`);
  } catch {
    throw new HelperError(`${pf} is not a PCI device with SR-IOV virtual functions (no ${base}/device)`, 'give the physical function of an SR-IOV NIC, or use --dev/--pool');
  }
  const vfs: VirtualFunction[] = [];
  for (const entry of entries) {
    const m = /^virtfn(0|[1-9][0-9]{0,4})$/.exec(entry);
    if (!m) continue;
    let names: string[] = [];
    try {
      names = readdirSync(`${base}/device/${entry}/net`);
    } catch {
      // not bound to a network driver
    }
    const ifname = names.length === 1 && !ifnameProblem(names[0]!) ? names[0] : undefined;
    vfs.push({ index: Number(m[1]), ifname });
  }
  if (vfs.length === 0) {
    throw new HelperError(`${pf} has no SR-IOV virtual functions`, `create some with 'echo N > ${base}/device/sriov_numvfs'`);
  }
  return vfs.sort((a, b) => a.index - b.index);
}
