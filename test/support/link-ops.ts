// Runs one lib/netlink/link.ts operation in the current network namespace
// and prints the result as JSON; the kernel tests run it under `ip netns exec`
// so that library code never touches the test runner's own namespace.
//   node link-ops.ts add-macvtap LOWER NAME MODE MAC INDEX GROUP
//   node link-ops.ts get NAME
//   node link-ops.ts list [KIND]
//   node link-ops.ts dump-flags KIND   (the nlmsg_flags of each raw dump reply)
import { NLM_F_DUMP, RTM_GETLINK, RTM_NEWLINK } from '../../lib/constants.ts';
import { addMacvtap, getLinkByName, linkDumpRequest, listLinks } from '../../lib/netlink/link.ts';
import { withNetlink } from '../../lib/netlink/socket.ts';
import { parseMac } from '../../lib/mac.ts';
import { MODE_VALUES, type ModeName } from '../../lib/modes.ts';

const [op, ...a] = process.argv.slice(2);
const result = withNetlink((nl) => {
  if (op === 'add-macvtap') {
    const lower = getLinkByName(nl, a[0]!);
    if (!lower) throw new Error(`no ${a[0]}`);
    return addMacvtap(nl, { lowerIndex: lower.index, name: a[1]!, mode: MODE_VALUES[a[2] as ModeName], mac: parseMac(a[3]!), up: true, index: Number(a[4]), group: Number(a[5]) });
  }
  if (op === 'get') return getLinkByName(nl, a[0]!) ?? null;
  if (op === 'list') return listLinks(nl, a[0]);
  if (op === 'dump-flags') {
    return nl.request(RTM_GETLINK, NLM_F_DUMP, linkDumpRequest(a[0]), 'dump').filter((m) => m.type === RTM_NEWLINK).map((m) => m.flags);
  }
  throw new Error(`unknown op ${op}`);
});
process.stdout.write(JSON.stringify(result) + '\n');
