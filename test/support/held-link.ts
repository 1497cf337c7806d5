// A link held by an owner process of the test's choosing (test/support/owner.ts
// --hold), typically run as an unprivileged user: the helper's reply socket
// then really is that user's, as it is when their QEMU calls the helper.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { HelperRecord } from '../../lib/record.ts';
import { REPO } from './paths.ts';

export interface HeldLink {
  record: HelperRecord;
  ownerPid: number;
  helperPid: number;
  /** Ends the owner (closing its fds) and waits for it to exit. */
  release(): Promise<void>;
}

export class HeldLinkError extends Error {
  readonly exitCode: number | null;
  constructor(message: string, exitCode: number | null) {
    super(message);
    this.exitCode = exitCode;
  }
}

/**
 * Runs `prefix` + node owner.ts --hold -- `helper`, e.g. prefix = [ip netns exec NS setpriv --reuid=U ...].
 * Resolves once the record arrived; rejects with the helper's reported error.
 */
export function holdLink(prefix: readonly string[], helper: readonly string[], opts: { timeoutMs?: number; onSpawn?: (pid: number) => void } = {}): Promise<HeldLink> {
  const argv = [...prefix, process.execPath, `${REPO}test/support/owner.ts`, '--hold', '--', ...helper];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`no record from the owner within ${timeoutMs} ms`)); }, timeoutMs);
    let helperPid = 0;
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const m = JSON.parse(line);
      if (m.spawned) {
        helperPid = m.spawned;
        opts.onSpawn?.(helperPid);
      } else if (m.record) {
        clearTimeout(timer);
        resolve({ record: m.record, ownerPid: m.ownerPid, helperPid, release: async () => { child.stdin!.end(); await exited; } });
      } else if (m.error !== undefined) {
        clearTimeout(timer);
        child.stdin!.end();
        reject(new HeldLinkError(m.error, m.exitCode));
      }
    });
    child.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`the owner exited (${signal ?? code}) before a record arrived`)); });
  });
}
