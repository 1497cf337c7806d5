// Owners that are not QEMU, as real hosts have them (test/kernel/ownership-hosts.test.ts):
//   node fd-holders.ts manager -- HELPER ARGV...  runs the helper, passes the tap fd to a child
//        (as libvirt passes it to QEMU), closes its own copy and stays alive until its stdin closes.
//   node fd-holders.ts forker -- HELPER ARGV...   runs the helper, forks a child that keeps the
//        tap fd (as a wrapper around QEMU may), and exits at once.
// Both print {"record":...,"ownerPid":N,"childPid":M}; the child lives until it is killed (at most 120 s).
import { spawn } from 'node:child_process';
import { callHelper } from '../../lib/client.ts';

const mode = process.argv[2];
const argv = process.argv.slice(process.argv.indexOf('--') + 1);
const r = await callHelper({ command: argv, args: [], timeoutMs: 30_000 });
const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120_000)'], {
  stdio: ['ignore', 'ignore', 'inherit', r.tapFds[0]!],
  detached: mode === 'forker',
});
r.close();
process.stdout.write(JSON.stringify({ record: r.record, ownerPid: process.pid, childPid: child.pid }) + '\n');
if (mode === 'forker') {
  child.unref();
  process.exit(0);
}
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
