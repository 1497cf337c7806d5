// Opens one queue of a macvtap with lib/tap.ts and prints what happened as
// JSON (or the one-line error). Run inside a namespace (ip netns exec) by the collision tests.
//   node open-queue.ts IFNAME IFINDEX
import { openTapQueue, readQueueInfo } from '../../lib/tap.ts';
import * as libc from '../../lib/libc.ts';

const [name, index] = process.argv.slice(2);
try {
  const q = openTapQueue({ name: name!, index: Number(index) }, { vnetHdr: true });
  const info = readQueueInfo(q.fd);
  const st = libc.fstat(q.fd);
  process.stdout.write(JSON.stringify({ queueOf: info.name, rdev: st.rdev.toString() }) + '\n');
  libc.close(q.fd);
} catch (err) {
  process.stdout.write(JSON.stringify({ error: (err as Error).message }) + '\n');
}
