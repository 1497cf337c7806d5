// The privileged test executable: a copy of the pinned node with the helpers'
// file capabilities (packaging/deb.ts HELPER_CAPS), in a fresh root-owned
// directory others may enter (a policy's parents must be root's and not
// writable by others, and users must reach the executable). Running the
// sources under it gives AT_SECURE and the same capabilities as the
// installed single executables. Removed when the test ends.

import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { HELPER_CAPS } from '../../packaging/deb.ts';

export interface CapNode {
  /** The root-owned 0755 directory it lives in (policy files may go there too). */
  dir: string;
  /** node with file capabilities HELPER_CAPS. */
  path: string;
}

/**
 * A copy of the executable `source`, as `name`, mode 0755, in a fresh
 * root-owned 0755 directory under /tmp that other users can enter; removed
 * when the test ends. What a test installs setuid or with capabilities.
 */
export function copyExecutable(t: { teardown(fn: () => void): void }, prefix: string, source: string, name: string): CapNode {
  const dir = mkdtempSync(`/tmp/${prefix}`);
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = `${dir}/${name}`;
  copyFileSync(source, path);
  chmodSync(path, 0o755);
  return { dir, path };
}

export function makeCapNode(t: { teardown(fn: () => void): void }, prefix: string): CapNode {
  const { dir, path } = copyExecutable(t, prefix, process.execPath, 'node');
  const setcap = spawnSync('setcap', [HELPER_CAPS, path], { encoding: 'utf8' });
  if (setcap.status !== 0) throw new Error(`setcap ${HELPER_CAPS} ${path} failed: ${setcap.stderr}`);
  return { dir, path };
}
