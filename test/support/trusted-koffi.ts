// A koffi.node the loader's trust check accepts (lib/koffi-loader.ts): the
// checkout's own copy when the checkout is root's and nobody else can write
// it, else (as root) a copy in a fresh root-owned directory under /run, so
// that where CI clones the repository (under /tmp, say) does not matter.

import { chmodSync, copyFileSync, lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { untrustedReason } from '../../lib/koffi-loader.ts';
import { REPO } from './paths.ts';

export const REPO_KOFFI = join(REPO, 'node_modules/@koromix/koffi-linux-x64/linux_x64/koffi.node');

/** The trusted path, or undefined when there is none (not root, and the checkout is not trusted). */
export function trustedKoffiPath(t: { teardown(fn: () => void): void }): string | undefined {
  if (untrustedReason(REPO_KOFFI, lstatSync) === undefined) return REPO_KOFFI;
  if (process.getuid?.() !== 0) return undefined;
  const dir = mkdtempSync('/run/qnh-koffi-test-');
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  copyFileSync(REPO_KOFFI, join(dir, 'koffi.node'));
  chmodSync(join(dir, 'koffi.node'), 0o644);
  return join(dir, 'koffi.node');
}
