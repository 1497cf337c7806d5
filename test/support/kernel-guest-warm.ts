// Run by the kernel guest's /init (test/support/kernel-guest-init.sh) before the
// tests, with NODE_COMPILE_CACHE set: fills Node's compile cache with the
// helpers' and the launcher's modules, TypeScript already stripped and compiled.
// Under TCG, stripping (Node's WebAssembly stripper) and compiling is most of a
// helper's start. The helpers end with _exit(2), so they never write the cache
// themselves: they only read what this process wrote.
//
// The entry points (helpers/*.ts, test/support/helper-with-seams.ts) are compiled
// from their real files, but their imports of the main module and of
// lib/early.ts (which would answer this process's own argv) resolve to a stub
// here, so that evaluating them runs nothing. Nothing else changes: a cache
// entry is used only for the same file with the same contents.

import { flushCompileCache, getCompileCacheDir, registerHooks } from 'node:module';
import { KERNEL_GUEST_NODE_FLAGS } from './paths.ts';

const repo = new URL('../../', import.meta.url);
const LIBS = ['lib/helper/main.ts', 'lib/launch/main.ts', 'lib/client.ts', 'lib/index.ts', 'lib/early.ts', 'lib/helper/early.ts', 'lib/launch/early.ts'];
const ENTRIES = [
  'helpers/qemu-net-helper-vepa.ts', 'helpers/qemu-net-helper-bridge.ts', 'helpers/qemu-net-helper-passthrough.ts',
  'helpers/qemu-net-launch.ts', 'test/support/helper-with-seams.ts',
].map((f) => new URL(f, repo).href);
const STUB = `data:text/javascript,${encodeURIComponent('export const runHelperAndExit = () => {}; export const STEPS = []; export const runLaunch = async () => 0; export const answerEarly = () => {}; export const startFullRun = () => {};')}`;

if (!getCompileCacheDir()) throw new Error('kernel-guest-warm.ts: NODE_COMPILE_CACHE is not set; nothing to warm');
// V8 takes a cache only from a process with the same flags: the helpers' (paths.ts).
const missing = KERNEL_GUEST_NODE_FLAGS.filter((f) => !process.execArgv.includes(f));
if (missing.length) throw new Error(`kernel-guest-warm.ts: run it with ${missing.join(' ')}, as the helpers run, or V8 rejects what it writes`);
const started = performance.now();
let failed = 0;
for (const lib of LIBS) {
  try {
    await import(new URL(lib, repo).href);
  } catch (err) {
    failed++;
    process.stderr.write(`kernel-guest-warm: ${lib}: ${(err as Error).message}\n`);
  }
}
registerHooks({
  resolve(specifier, context, nextResolve) {
    const r = nextResolve(specifier, context);
    if (context.parentURL && ENTRIES.includes(context.parentURL) && /\/lib\/((helper|launch)\/main|early)\.ts$/.test(r.url)) return { url: STUB, shortCircuit: true };
    return r;
  },
});
for (const entry of ENTRIES) {
  try {
    await import(entry);
  } catch {
    // helper-with-seams.ts refuses this process's arguments after it was compiled: enough.
  }
}
flushCompileCache();
process.stdout.write(`compile cache ${getCompileCacheDir()} warmed in ${Math.round(performance.now() - started)} ms${failed ? ` (${failed} failed)` : ''}\n`);
