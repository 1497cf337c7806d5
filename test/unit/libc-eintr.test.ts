// A system call interrupted by a signal that has a handler fails with EINTR
// (poll(2) is never restarted by the kernel). The helper then failed with
// "poll: EINTR" when a profiler's SIGPROF arrived; lib/libc.ts now repeats
// interrupted calls. Here a child keeps signalling this process while it
// blocks in poll(2) on a socket that never becomes readable.

import { spawn } from 'node:child_process';
import t from 'tap';
import { AF_UNIX, POLLIN, SOCK_CLOEXEC, SOCK_STREAM } from '../../lib/constants.ts';
import * as libc from '../../lib/libc.ts';

t.test('pollOne survives signals and still honours its timeout', async (t) => {
  const [a, b] = libc.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
  t.teardown(() => libc.closeQuietly(a, b));
  let signals = 0;
  const onSignal = () => { signals++; };
  process.on('SIGUSR2', onSignal); // installs a real handler, so the signal interrupts poll
  t.teardown(() => { process.off('SIGUSR2', onSignal); });

  // At most 40 signals, 10 ms apart: some land while the 1.5 s poll blocks.
  const child = spawn('sh', ['-c', 'i=0; while [ $i -lt 40 ]; do kill -USR2 $1 || exit 1; i=$((i+1)); sleep 0.01; done', 'sh', String(process.pid)], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  // Wait until the child is running before blocking (its first signal marks it).
  const started = Date.now();
  while (signals === 0 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 5));
  t.ok(signals > 0, 'the child signals this process');

  const before = signals;
  const t0 = performance.now();
  const revents = libc.pollOne(a, POLLIN, 1500);
  const elapsed = performance.now() - t0;
  await new Promise((r) => setImmediate(r)); // let the handlers of signals that arrived during poll run
  t.equal(revents, 0, 'poll timed out instead of failing with EINTR');
  t.ok(signals > before, `signals arrived while poll blocked (${signals - before})`);
  t.ok(elapsed >= 1400 && elapsed < 5000, `the timeout was kept across restarts (${elapsed.toFixed(0)} ms)`);
  t.equal(await exited, 0, 'the signalling child finished');
});
