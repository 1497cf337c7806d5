// Privileged tests run as root. On a developer's non-root machine they skip;
// under CI (CI=true) not being root is a failure, never a skip.

import { execFileSync } from 'node:child_process';

export const IS_CI = process.env.CI === 'true';

/** Returns a skip reason when the test cannot run here, throws when it must run but cannot. */
export function privilegedSkipReason(tools: readonly string[] = ['ip']): string | false {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('needs root');
  for (const tool of tools) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      problems.push(`needs ${tool}`);
    }
  }
  if (problems.length === 0) return false;
  if (IS_CI) throw new Error(`privileged test cannot run under CI: ${problems.join(', ')}`);
  return problems.join(', ');
}
