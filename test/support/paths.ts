// Where the programs under test are, and how to run them from a test.

import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Only in the second-kernel job (test/support/kernel-guest.ts, which sets QNH_KERNEL_GUEST):
 * Node's compile cache for the helpers too, which keeps their TypeScript stripped and
 * compiled (under TCG that is most of a helper's start). Anywhere else a helper sees PATH only.
 */
const GUEST_ENV = process.env.QNH_KERNEL_GUEST && process.env.NODE_COMPILE_CACHE ? [`NODE_COMPILE_CACHE=${process.env.NODE_COMPILE_CACHE}`] : [];

/**
 * argv prefix that runs a helper from source with the pinned Node, in a
 * clean environment. Clean because the test runner puts NODE_OPTIONS
 * (--import of its own instrumentation) into every child's environment: a
 * helper must be tested as QEMU runs it, not inside tap's machinery.
 */
export function helperCommand(name: string): string[] {
  return ['env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...GUEST_ENV, process.execPath, `${REPO}helpers/${name}.ts`];
}

export const VEPA = helperCommand('qemu-net-helper-vepa');
export const BRIDGE = helperCommand('qemu-net-helper-bridge');
export const PASSTHROUGH = helperCommand('qemu-net-helper-passthrough');

/** argv prefix that runs helper `program` with test seams (see helper-with-seams.ts); the helper's own args follow. */
export function seamedHelper(program: string, seams: string[]): string[] {
  return ['env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...GUEST_ENV, process.execPath, `${REPO}test/support/helper-with-seams.ts`, program, ...seams, '--'];
}
