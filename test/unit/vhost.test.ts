// openVhostQueues through injected openers: success, fallback, failure,
// and no fd left open on any failure.

import { closeSync, fstatSync, openSync } from 'node:fs';
import t from 'tap';
import * as libc from '../../lib/libc.ts';
import { openVhostQueues, VhostUnavailableError, type VhostOpener } from '../../lib/vhost.ts';

function opener(failAt: number | undefined, opened: number[]): VhostOpener {
  return {
    open: () => {
      if (opened.length === failAt) throw new libc.SysError('open', 2, '/dev/vhost-net');
      const fd = openSync('/dev/null', 'r');
      opened.push(fd);
      return fd;
    },
    features: () => 0x1234n,
  };
}

function isOpen(fd: number): boolean {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
}

t.test('success: one fd per queue, features read', async (t) => {
  const opened: number[] = [];
  const r = openVhostQueues(3, 'on', opener(undefined, opened));
  t.ok(r.enabled);
  if (r.enabled) {
    t.same(r.fds, opened);
    t.equal(r.features, 0x1234n);
  }
  opened.forEach((fd) => closeSync(fd));
});

t.test('try: a failure part-way closes what was opened and says why', async (t) => {
  const opened: number[] = [];
  const r = openVhostQueues(4, 'try', opener(2, opened));
  t.same(r, { enabled: false, fds: [], reason: 'cannot open /dev/vhost-net: ENOENT (No such file or directory)' });
  t.equal(opened.length, 2);
  t.ok(opened.every((fd) => !isOpen(fd)), 'the two opened fds were closed');
});

t.test('on: a failure throws, with nothing left open', async (t) => {
  const opened: number[] = [];
  t.throws(() => openVhostQueues(2, 'on', opener(1, opened)), VhostUnavailableError);
  t.ok(opened.every((fd) => !isOpen(fd)));
});

t.test('off opens nothing', async (t) => {
  const opened: number[] = [];
  t.same(openVhostQueues(2, 'off', opener(undefined, opened)), { enabled: false, fds: [], reason: undefined });
  t.equal(opened.length, 0);
});
