// Where the programs under test are, and how to run them from a test.

import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Only in the second-kernel job (test/support/kernel-guest.ts, which sets QNH_KERNEL_GUEST):
 * Node's compile cache for the helpers too, which keeps their TypeScript stripped and
 * compiled (under TCG that is most of a helper's start). Anywhere else a helper sees PATH only.
 */
export const GUEST_ENV: readonly string[] = process.env.QNH_KERNEL_GUEST && process.env.NODE_COMPILE_CACHE ? [`NODE_COMPILE_CACHE=${process.env.NODE_COMPILE_CACHE}`] : [];


/**
 * Node options for every helper run from source in the second-kernel job: V8's
 * WebAssembly baseline compiler only, no tier-up. Measured there (TCG, 2 vCPUs):
 * user runs through the file-capability node died of SIGSEGV/SIGTRAP 5 times in 49
 * without it and 0 in 49 with it (docs/testing.md). Anywhere else: none.
 */
export const KERNEL_GUEST_NODE_FLAGS: readonly string[] = ['--liftoff-only'];
export const GUEST_NODE_FLAGS: readonly string[] = process.env.QNH_KERNEL_GUEST ? KERNEL_GUEST_NODE_FLAGS : [];

/** What spawnSync gives back, as far as the retry below looks at it. */
interface SpawnResult { status: number | null; signal: NodeJS.Signals | null }

/**
 * Runs `run`, and in the second-kernel job only runs it once more if Node died of SIGSEGV
 * or SIGTRAP, saying so through `note`. Measured there (TCG, 2 vCPUs): a few uncached runs
 * from source in a hundred die so, whoever runs them and through whichever node. V8 finds
 * itself in WebAssembly code it has already freed, most likely Node's TypeScript stripper.
 * Every run through the file-capability node strips, since AT_SECURE makes Node ignore
 * NODE_COMPILE_CACHE. None died with 1 vCPU, and none on this machine (docs/testing.md).
 * Anywhere else a crash is a failure like any other.
 */
export function retryGuestCrash<R extends SpawnResult>(run: () => R, note: (s: string) => void): R {
  const first = run();
  if (!process.env.QNH_KERNEL_GUEST || (first.signal !== 'SIGSEGV' && first.signal !== 'SIGTRAP')) return first;
  note(`the helper died of ${first.signal} under TCG (a known, unexplained crash of Node there); ran it again`);
  return run();
}

/**
 * argv prefix that runs a helper from source with the pinned Node, in a
 * clean environment. Clean because the test runner puts NODE_OPTIONS
 * (--import of its own instrumentation) into every child's environment: a
 * helper must be tested as QEMU runs it, not inside tap's machinery.
 */
export function helperCommand(name: string): string[] {
  return ['env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...GUEST_ENV, process.execPath, ...GUEST_NODE_FLAGS, `${REPO}helpers/${name}.ts`];
}

export const VEPA = helperCommand('qemu-net-helper-vepa');
export const BRIDGE = helperCommand('qemu-net-helper-bridge');
export const PASSTHROUGH = helperCommand('qemu-net-helper-passthrough');

/** argv prefix that runs helper `program` with test seams (see helper-with-seams.ts); the helper's own args follow. */
export function seamedHelper(program: string, seams: string[]): string[] {
  return ['env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...GUEST_ENV, process.execPath, ...GUEST_NODE_FLAGS, `${REPO}test/support/helper-with-seams.ts`, program, ...seams, '--'];
}
