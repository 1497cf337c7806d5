// Where the programs under test are, and how to run them from a test.

import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** argv prefix that runs a helper from source with the pinned Node. */
export function helperCommand(name: string): string[] {
  return [process.execPath, `${REPO}helpers/${name}.ts`];
}

export const VEPA = helperCommand('qemu-net-helper-vepa');
