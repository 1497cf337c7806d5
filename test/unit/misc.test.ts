// Small pure pieces: MAC addresses, interface names, error lines, version.

import { readFileSync } from 'node:fs';
import t from 'tap';
import { makedev } from '../../lib/constants.ts';
import { HelperError, oneLine, UsageError } from '../../lib/errors.ts';
import { formatMac, generateMac, macProblem, parseMac } from '../../lib/mac.ts';
import { callerIfnameProblem, ifnameProblem, isCallerIfnameSpace } from '../../lib/names.ts';
import { auditField } from '../../lib/audit.ts';
import { VERSION } from '../../lib/version.ts';
import * as libc from '../../lib/libc.ts';

t.test('MAC addresses', async (t) => {
  t.equal(formatMac(parseMac('52:54:00:AB:cd:0F')), '52:54:00:ab:cd:0f');
  t.equal(formatMac(generateMac(() => Buffer.from([1, 2, 3]))), '52:54:00:01:02:03');
  const a = formatMac(generateMac(libc.randomBytes));
  t.not(a, formatMac(generateMac(libc.randomBytes)), 'random');
  t.match(a, /^52:54:00(:[0-9a-f]{2}){3}$/);
  for (const bad of ['52:54:00:12:34', '52-54-00-12-34-56', '5254.0012.3456', '52:54:00:12:34:5g', 'ff:ff:ff:ff:ff:ff', '01:00:00:00:00:00']) {
    t.throws(() => parseMac(bad), UsageError, bad);
  }
  const line = (text: string) => {
    try {
      parseMac(text);
    } catch (e) {
      return oneLine('qemu-net-helper-vepa', e);
    }
    return 'no error';
  };
  t.equal(line('52:54:00:12:34'), 'qemu-net-helper-vepa: --mac="52:54:00:12:34" is not a MAC address; write it as six hex pairs such as 52:54:00:12:34:56');
  t.equal(line('53:54:00:12:34:56'), 'qemu-net-helper-vepa: --mac=53:54:00:12:34:56 is a multicast address; use a unicast address (the lowest bit of the first byte clear), such as 52:54:00:12:34:56');
  t.equal(line('00:00:00:00:00:00'), 'qemu-net-helper-vepa: --mac=00:00:00:00:00:00 is not usable; give a real unicast address');
  t.equal(macProblem('52:54:00:AB:cd:0F'), undefined, 'macProblem: a usable address');
  t.match(macProblem('x'), { cause: 'is not a MAC address' });
});

t.test('interface names (CVE-2019-13164: nothing longer than 15 bytes)', async (t) => {
  t.equal(ifnameProblem('eth0'), undefined);
  t.equal(ifnameProblem('abcdefghijklmno'), undefined, '15 bytes is fine');
  t.match(ifnameProblem('abcdefghijklmnop'), /16 bytes/);
  t.match(ifnameProblem('ééééééééé'), /18 bytes|non-ASCII/, 'counted in bytes, not characters');
  t.equal(ifnameProblem('vm%d', { template: true }), undefined);
  t.match(ifnameProblem('vm%d'), /'%'/);
  for (const bad of ['', '.', '..', 'a/b', 'a:b', 'a b', 'a\tb', 'a\x7f', 'a\u00a0b', '-x', '--help']) t.ok(ifnameProblem(bad), JSON.stringify(bad));
});

t.test('names callers choose start with macvtap; the policy cannot use that space', async (t) => {
  t.equal(callerIfnameProblem('macvtap%d'), undefined);
  t.equal(callerIfnameProblem('macvtap-vm1'), undefined);
  for (const bad of ['eth1', 'lo0', 'mvt0', '-x', 'macvtap uid=0', 'macvtap=0', 'macvtap%d%d', 'Macvtap0', 'macvtap0123456789']) t.ok(callerIfnameProblem(bad), JSON.stringify(bad));
  t.ok(isCallerIfnameSpace('macvtap0'));
  t.notOk(isCallerIfnameSpace('eth0'));
});

t.test('audit fields: bare when plain, quoted when chosen by the caller or odd', async (t) => {
  t.equal(auditField('uid', '1000'), 'uid=1000');
  t.equal(auditField('ifname', 'macvtap3', true), 'ifname="macvtap3"');
  t.equal(auditField('error', 'a b=c'), 'error="a b=c"');
  t.equal(auditField('x', 'uid=0'), 'x="uid=0"', 'an = makes a value quoted');
  t.equal(auditField('x', 'a"b\nc', true), 'x="a\\"b?c"', 'quotes escaped, control characters replaced');
  t.equal(auditField('x', ''), 'x=""');
});

t.test('errors are one line: program, cause, fix', async (t) => {
  t.equal(oneLine('prog', new HelperError('cause', 'fix')), 'prog: cause; fix');
  t.equal(oneLine('prog', new Error('multi\nline\r\n')), 'prog: multi line ');
  t.equal(oneLine('prog', new Error('ctl\x01')), 'prog: ctl?');
});

t.test('makedev matches glibc for small and large numbers', async (t) => {
  t.equal(makedev(243, 1), 0xf301n);
  t.equal(makedev(10, 200), (10n << 8n) | 200n);
  t.equal(makedev(0x1000, 0x100), (0x1000n << 32n) | (0x100n << 12n));
});

t.test('the compiled-in version is package.json\'s', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  t.equal(VERSION, pkg.version);
});
