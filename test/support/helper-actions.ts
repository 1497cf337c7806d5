// Running a helper's maintenance actions (--list, --gc, --release) in a test namespace.

import { spawnSync } from 'node:child_process';
import type { Netns } from './netns.ts';
import { VEPA } from './paths.ts';

export function helperAction(ns: Netns, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(ns.exec[0]!, [...ns.exec.slice(1), ...VEPA, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The rows of --list --json. */
export function listHelperLinks(ns: Netns): Array<Record<string, any>> {
  const r = helperAction(ns, '--list', '--json');
  if (r.code !== 0) throw new Error(`--list failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
