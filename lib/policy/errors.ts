// The policy cannot be used: one line naming the first problem (file:line,
// cause) and its fix. Every problem is kept for --check-config.

import { HelperError } from '../errors.ts';
import { formatProblem, type PolicyProblem } from './types.ts';

export class PolicyError extends HelperError {
  readonly problems: readonly PolicyProblem[];
  constructor(problems: readonly PolicyProblem[]) {
    const first = problems[0] ?? { message: 'the policy could not be read', fix: 'check it with --check-config' };
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''}; list them with --check-config)` : '';
    super(`policy refused: ${formatProblem(first)}${more}`, `${first.fix}; until then the policy allows no one but root`);
    this.name = 'PolicyError';
    this.problems = problems;
  }
}
