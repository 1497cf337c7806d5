// Interface names, validated before they reach the kernel or a policy.
//
// Stricter than the kernel's dev_valid_name(): besides its rules (1..15 bytes,
// not "." or "..", no '/', ':' or white space) we refuse control characters,
// non-ASCII bytes and '%' outside a single "%d" template. qemu-bridge-helper's
// CVE-2019-13164 came from a name longer than IFNAMSIZ slipping past its ACL
// check; here an overlong name is an error wherever it appears.

import { IFNAMSIZ } from './constants.ts';
import { UsageError } from './errors.ts';

export const MAX_IFNAME_BYTES = IFNAMSIZ - 1;

/** Returns why `name` is not a valid interface name, or undefined when it is. */
export function ifnameProblem(name: string, opts: { template?: boolean } = {}): string | undefined {
  if (name.length === 0) return 'is empty';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_IFNAME_BYTES) return `is ${bytes} bytes long; the kernel allows at most ${MAX_IFNAME_BYTES}`;
  if (name === '.' || name === '..') return 'is "." or ".."';
  if (/[^\x21-\x7e]/.test(name)) return 'contains white space, a control character or a non-ASCII character';
  if (/[/:]/.test(name)) return "contains '/' or ':'";
  const percent = (name.match(/%/g) ?? []).length;
  if (percent > 0) {
    if (!opts.template) return "contains '%'";
    if (percent > 1 || !name.includes('%d')) return "is a template with something other than one '%d'";
  }
  return undefined;
}

/** Throws a UsageError naming the option when `name` is not a valid interface name. */
export function checkIfname(option: string, name: string, opts: { template?: boolean } = {}): string {
  const problem = ifnameProblem(name, opts);
  if (problem) {
    throw new UsageError(`--${option}=${JSON.stringify(name)} ${problem}`,
      'give an interface name of at most 15 ASCII characters without spaces, "/", ":" or "%"' +
      (opts.template ? " (one '%d' is allowed, as in macvtap%d)" : ''));
  }
  return name;
}
