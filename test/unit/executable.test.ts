// lib/executable.ts: which program the shared helper executable runs as.

import t from 'tap';
import { executableName, programFromExecutable } from '../../lib/executable.ts';

const NAMES = ['qemu-net-helper-vepa', 'qemu-net-helper-bridge', 'qemu-net-helper-passthrough'];
const exe = (path: string) => (p: string) => {
  if (p !== '/proc/self/exe') throw new Error(`read ${p}`);
  return path;
};
const noProc = () => {
  throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
};

t.test('the name the kernel executed chooses the program', async (t) => {
  t.equal(programFromExecutable(NAMES, exe('/usr/libexec/qemu-net-helper-bridge')), 'qemu-net-helper-bridge');
  t.equal(programFromExecutable(NAMES, exe('/usr/libexec/qemu-net-helper-passthrough')), 'qemu-net-helper-passthrough');
  t.equal(programFromExecutable(NAMES, exe('/home/u/qemu-net-helper-vepa')), 'qemu-net-helper-vepa', 'the directory does not matter');
  t.equal(programFromExecutable(NAMES, exe('/usr/libexec/qemu-net-helper-bridge (deleted)')), 'qemu-net-helper-bridge', 'replaced by an upgrade after exec: still the name it ran as');
});

t.test('anything else is no program', async (t) => {
  t.equal(programFromExecutable(NAMES, exe('/usr/bin/node')), undefined);
  t.equal(programFromExecutable(NAMES, exe('/tmp/qemu-net-helper-other')), undefined);
  t.equal(programFromExecutable(NAMES, noProc), undefined, 'no /proc: no guess from argv[0]');
  t.equal(executableName(noProc), undefined);
});

t.test('a single-program executable is always that program', async (t) => {
  t.equal(programFromExecutable(['qemu-net-launch'], noProc), 'qemu-net-launch');
  t.equal(programFromExecutable(['qemu-net-launch'], exe('/x/renamed')), 'qemu-net-launch');
});
