// A stand-in for QEMU as the owner of a helper's link: it creates the
// socket pair (so SO_PEERCRED names it), runs the helper, prints the record
// as JSON, and exits without releasing anything.
//   node owner.ts -- HELPER ARGV...
import { callHelper } from '../../lib/client.ts';

const argv = process.argv.slice(process.argv.indexOf('--') + 1);
const r = await callHelper({ command: argv, args: [], timeoutMs: 30_000 });
process.stdout.write(JSON.stringify({ ifname: r.record.ifname, ifindex: r.record.ifindex, ownerPid: process.pid }) + '\n');
r.close();
