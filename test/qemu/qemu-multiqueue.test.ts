// Stock QEMU takes a helper's fds through the client library as
// -netdev tap,fds=a:b,vhost=off: two queues, one guest NIC.

import { spawn } from 'node:child_process';
import t from 'tap';
import { callHelper } from '../../lib/client.ts';
import { addVethPair, createNetns } from '../support/netns.ts';
import { VEPA } from '../support/paths.ts';
import { privilegedSkipReason } from '../support/privileged.ts';
import { PAUSED_MACHINE, QEMU } from '../support/qemu.ts';

const skip = privilegedSkipReason(['ip', QEMU]);
if (skip) t.plan(0, skip);
else {
  t.test('two queues from the helper become a two-queue tap backend', async (t) => {
    const ns = createNetns(t, 'qemumq');
    addVethPair(ns);
    const r = await callHelper({ command: [...ns.exec, ...VEPA], args: ['--dev=v0', '--queues=2', '--vhost=off'], timeoutMs: 15_000 });
    t.teardown(() => r.close());
    t.equal(r.tapFds.length, 2);
    // The fds become QEMU's fds 3 and 4.
    const args = [...PAUSED_MACHINE, '-netdev', 'tap,id=n0,fds=3:4,vhost=off', '-device', `virtio-net-pci,netdev=n0,mq=on,vectors=6,mac=${r.record.mac}`];
    const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(ns.exec[0]!, [...ns.exec.slice(1), QEMU, ...args], { stdio: ['pipe', 'pipe', 'pipe', r.tapFds[0]!, r.tapFds[1]!] });
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
      child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      child.stdin!.end('info network\nquit\n');
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`QEMU hung: ${stderr}`)); }, 60_000);
      child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    });
    t.equal(out.code, 0, `QEMU exits cleanly (${out.stderr.trim()})`);
    t.match(out.stdout, new RegExp(`macaddr=${r.record.mac}`));
    const queues = out.stdout.match(/n0: index=\d+,type=tap,fd=\d/g) ?? [];
    t.equal(queues.length, 2, `two tap queues in 'info network': ${queues.join(' | ')}`);
  });
}
