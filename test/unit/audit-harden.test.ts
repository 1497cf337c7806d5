// The syslog line, its delivery without blocking, and the DEBUG allow-list.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import t from 'tap';
import { audit, syslogMessage } from '../../lib/audit.ts';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_DGRAM, MSG_DONTWAIT } from '../../lib/constants.ts';
import { safeDebugValue } from '../../lib/harden.ts';
import * as libc from '../../lib/libc.ts';

t.test('the syslog message: authpriv, RFC 3164 header, one clean line', async (t) => {
  const when = new Date(2026, 10, 5, 9, 8, 7);
  t.equal(syslogMessage('qemu-net-helper-vepa', 42, 'notice', 'uid=1000 result=allow', when).toString(),
    '<85>Nov  5 09:08:07 qemu-net-helper-vepa[42]: uid=1000 result=allow');
  t.match(syslogMessage('x', 1, 'warning', 'a\nb\x00c', when).toString(), /^<84>.*: a\?b\?c$/);
  t.equal(syslogMessage('x', 1, 'info', 'y', when).toString().slice(0, 4), '<86>');
});

t.test('audit() delivers one datagram, and never throws or blocks without a listener', async (t) => {
  const dir = mkdtempSync(`${tmpdir()}/qnh-log-`);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = `${dir}/log`;
  const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  t.teardown(() => libc.closeQuietly(fd));
  const addr = Buffer.alloc(2 + path.length + 1);
  addr.writeUInt16LE(AF_UNIX, 0);
  addr.write(path, 2);
  libc.bind(fd, addr);
  t.equal(audit('qemu-net-helper-vepa', 'warning', 'uid=1000 result=deny', path), true);
  const buf = Buffer.alloc(4096);
  const { length } = libc.recvfrom(fd, buf, MSG_DONTWAIT, null);
  t.match(buf.subarray(0, length).toString(), new RegExp(`^<84>\\w{3} [ 0-9]\\d \\d\\d:\\d\\d:\\d\\d qemu-net-helper-vepa\\[${process.pid}\\]: uid=1000 result=deny$`));
  t.equal(audit('x', 'info', 'y', `${dir}/nobody-listens`), false, 'a missing socket is not an error');
});

t.test('DEBUG survives the environment scrub only when it names our namespaces', async (t) => {
  t.equal(safeDebugValue('qemu-net-helper:*'), 'qemu-net-helper:*');
  t.equal(safeDebugValue('qemu-net-helper:netlink,-qemu-net-helper:tap'), 'qemu-net-helper:netlink,-qemu-net-helper:tap');
  t.equal(safeDebugValue('qemu-net-helper'), 'qemu-net-helper');
  t.equal(safeDebugValue(' qemu-net-helper:*\n'), 'qemu-net-helper:*', 'white space is a separator, as for debug itself; the value is rebuilt clean');
  for (const bad of [undefined, '', '*', 'qemu-net-helper:*,express:*', 'qemu-net-helperx', 'qemu-net-helper:*;rm', 'qemu-net-helper:' + 'a'.repeat(300)]) {
    t.equal(safeDebugValue(bad), undefined, JSON.stringify(bad));
  }
});
