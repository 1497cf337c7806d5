// Runs one lib/netlink/link.ts operation in the current network namespace
// and prints the result as JSON; the kernel tests run it under `ip netns exec`
// so that library code never touches the test runner's own namespace.
//   node link-ops.ts add-macvtap LOWER NAME MODE MAC ECHO(0|1)
//   node link-ops.ts get NAME
import { addMacvtap, getLinkByName } from '../../lib/netlink/link.ts';
import { withNetlink } from '../../lib/netlink/socket.ts';
import { parseMac } from '../../lib/mac.ts';
import { MODE_VALUES, type ModeName } from '../../lib/modes.ts';

const [op, ...a] = process.argv.slice(2);
const result = withNetlink((nl) => {
  if (op === 'add-macvtap') {
    const lower = getLinkByName(nl, a[0]!);
    if (!lower) throw new Error(`no ${a[0]}`);
    return addMacvtap(nl, { lowerIndex: lower.index, name: a[1]!, mode: MODE_VALUES[a[2] as ModeName], mac: parseMac(a[3]!), up: true, echo: a[4] === '1' });
  }
  if (op === 'get') return getLinkByName(nl, a[0]!) ?? null;
  throw new Error(`unknown op ${op}`);
});
process.stdout.write(JSON.stringify(result) + '\n');
