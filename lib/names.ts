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

/**
 * Every name a caller chooses for a new link (--ifname) starts with this, and
 * no device, network or pool in the policy may: a caller can therefore never
 * make a link that a rule, or another caller's request, takes for a device
 * the policy decided on (a link named "eth1" while eth1 is absent would
 * catch the next request for eth1). The default template is macvtap%d.
 */
export const CALLER_IFNAME_PREFIX = 'macvtap';
const CALLER_IFNAME = /^macvtap[A-Za-z0-9_.-]*(%d[A-Za-z0-9_.-]*)?$/;

/** Why `name` cannot be a name a caller chooses for a new link, or undefined. */
export function callerIfnameProblem(name: string): string | undefined {
  const problem = ifnameProblem(name, { template: true });
  if (problem) return problem;
  if (!CALLER_IFNAME.test(name)) {
    return `does not start with "${CALLER_IFNAME_PREFIX}" followed only by letters, digits, "_", "." , "-" and at most one "%d"`;
  }
  return undefined;
}

/** Whether a policy may not use `name` for a device, network or pool: it is in the callers' reserved space. */
export function isCallerIfnameSpace(name: string): boolean {
  return name.startsWith(CALLER_IFNAME_PREFIX);
}

/** Returns why `name` is not a valid interface name, or undefined when it is. */
export function ifnameProblem(name: string, opts: { template?: boolean } = {}): string | undefined {
  if (name.length === 0) return 'is empty';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_IFNAME_BYTES) return `is ${bytes} bytes long; the kernel allows at most ${MAX_IFNAME_BYTES}`;
  if (name === '.' || name === '..') return 'is "." or ".."';
  if (name.startsWith('-')) return "starts with '-' (it would read as an option to ip and other tools)";
  if (/[^\x21-\x7e]/.test(name)) return 'contains white space, a control character or a non-ASCII character';
  if (/[/:]/.test(name)) return "contains '/' or ':'";
  const percent = (name.match(/%/g) ?? []).length;
  if (percent > 0) {
    if (!opts.template) return "contains '%'";
    if (percent > 1 || !name.includes('%d')) return "is a template with something other than one '%d'";
  }
  return undefined;
}

/** Throws a UsageError naming the option when `name` is not a name a caller may give a new link. */
export function checkCallerIfname(option: string, name: string): string {
  const problem = callerIfnameProblem(name);
  if (problem) {
    throw new UsageError(`--${option}=${JSON.stringify(name)} ${problem}`,
      `name the link ${CALLER_IFNAME_PREFIX}SOMETHING (at most 15 characters), or leave --${option} out to get ${CALLER_IFNAME_PREFIX}N`);
  }
  return name;
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
