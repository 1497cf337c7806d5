// A stand-in for QEMU as the owner of a helper's link: it creates the
// socket pair (so SO_PEERCRED names it), runs the helper, prints the record
// as JSON, and exits without releasing anything.
//   node owner.ts -- HELPER ARGV...
// With --hold it prints {"spawned":PID} as soon as the helper runs, then
// {"record":...,"ownerPid":...} (or {"error":...}), keeps the fds until its
// standard input closes, then exits: an owner that lives as long as the test
// wants, running as whatever user the test started it as (test/support/held-link.ts).
import { callHelper, HelperCallError } from '../../lib/client.ts';

const hold = process.argv.includes('--hold');
const argv = process.argv.slice(process.argv.indexOf('--') + 1);
const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
if (!hold) {
  const r = await callHelper({ command: argv, args: [], timeoutMs: 30_000 });
  say({ ifname: r.record.ifname, ifindex: r.record.ifindex, ownerPid: process.pid });
  r.close();
} else {
  try {
    const r = await callHelper({ command: argv, args: [], timeoutMs: 30_000, onSpawn: (pid) => say({ spawned: pid }) });
    say({ record: r.record, ownerPid: process.pid });
    process.stdin.resume();
    process.stdin.on('end', () => { r.close(); process.exit(0); });
  } catch (err) {
    say({ error: err instanceof HelperCallError ? (err.reported ?? err.message) : String(err), exitCode: err instanceof HelperCallError ? err.exitCode : null });
  }
}
