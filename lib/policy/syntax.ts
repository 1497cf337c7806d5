// The words of the policy language and how each kind of name is checked.
// Shared by the parser and by callers that take the same names on a command
// line (--network=NAME, --pool=NAME), so a name means the same in both places.

import { MAX_TAP_QUEUES } from '../constants.ts';
import { MODE_VALUES, type ModeName } from '../modes.ts';
import { CALLER_IFNAME_PREFIX, ifnameProblem, isCallerIfnameSpace } from '../names.ts';

export const STATEMENT_WORDS = ['allow', 'deny', 'include', 'network', 'pool', 'limit'] as const;
export const SUBJECT_WORDS = ['user', 'group', 'everyone'] as const;
export const TARGET_WORDS = ['all', 'dev', 'network', 'pool'] as const;
export const QUALIFIER_WORDS = ['mode', 'queues', 'vhost', 'netns', 'persistent', 'allmulti', 'vlan'] as const;

/** Words that cannot be a bare device name after allow/deny (write `dev NAME` for such a device). */
export const RESERVED_WORDS: ReadonlySet<string> = new Set<string>([
  ...STATEMENT_WORDS, ...SUBJECT_WORDS, ...TARGET_WORDS, ...QUALIFIER_WORDS, 'pf', 'host',
]);

/** The most queues a rule may allow: the kernel's limit per macvtap. */
export const MAX_QUEUES = MAX_TAP_QUEUES;
export { MAX_VLAN_ID, MIN_VLAN_ID } from '../constants.ts';
/** The most links a limit statement may grant one user (far more than any host can serve). */
export const MAX_LINK_LIMIT = 100_000;
/** What one user may hold at once when no limit statement covers them. */
export const DEFAULT_LINK_LIMIT = 16;
export const MAX_ACCOUNT_NAME_BYTES = 256;
export const MAX_POLICY_NAME_BYTES = 64;
export const MAX_NETNS_NAME_BYTES = 255;
export const MAX_PATH_BYTES = 4095;
/** uid_t and gid_t are 32 bits; (uid_t)-1 means "no id" to the kernel. */
export const MAX_ACCOUNT_ID = 0xfffffffe;

export const ALL_MODES: readonly ModeName[] = Object.keys(MODE_VALUES) as ModeName[];

export function isMode(word: string): word is ModeName {
  return (ALL_MODES as readonly string[]).includes(word);
}

/** Why `name` cannot be a device name in the policy, or undefined (the rules of lib/names.ts). */
export function policyIfnameProblem(name: string): string | undefined {
  return ifnameProblem(name) ?? reservedPrefixProblem(name);
}

/** Names callers give their links start with CALLER_IFNAME_PREFIX: no policy name may, so none can be mistaken for the other. */
function reservedPrefixProblem(name: string): string | undefined {
  return isCallerIfnameSpace(name) ? `starts with "${CALLER_IFNAME_PREFIX}", which is reserved for the links helpers make (a rule cannot name one)` : undefined;
}

const POLICY_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** Why `name` cannot name a network or pool (here or in --network=/--pool=), or undefined. */
export function policyNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_POLICY_NAME_BYTES) return `is ${bytes} bytes long; at most ${MAX_POLICY_NAME_BYTES} are allowed`;
  if (!POLICY_NAME.test(name)) return 'may contain only letters, digits, "_", "." and "-", and must not start with "." or "-"';
  if (name === 'all') return 'is the reserved word "all"';
  return reservedPrefixProblem(name);
}

const ACCOUNT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/;
const DECIMAL = /^(0|[1-9][0-9]{0,9})$/;

/**
 * A user or group as written: a name, or a plain decimal id when the word is
 * all digits (user and group names made only of digits are refused by
 * useradd and systemd, so the reading is unambiguous).
 */
export function parseAccountWord(word: string): { id: number } | { name: string } | { problem: string } {
  if (/^[0-9]+$/.test(word)) {
    if (!DECIMAL.test(word) || Number(word) > MAX_ACCOUNT_ID) return { problem: `is not a numeric id from 0 to ${MAX_ACCOUNT_ID} in plain decimal` };
    return { id: Number(word) };
  }
  const bytes = Buffer.byteLength(word, 'utf8');
  if (bytes > MAX_ACCOUNT_NAME_BYTES) return { problem: `is ${bytes} bytes long; at most ${MAX_ACCOUNT_NAME_BYTES} are allowed` };
  if (!ACCOUNT_NAME.test(word)) return { problem: 'is not a user or group name (letters, digits, "_", "." and "-", optionally ending in "$")' };
  return { name: word };
}

const NETNS_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:@+-]*$/;

/** Why `name` cannot name a namespace in /run/netns here, or undefined. */
export function netnsNameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_NETNS_NAME_BYTES) return `is ${bytes} bytes long; at most ${MAX_NETNS_NAME_BYTES} are allowed`;
  if (!NETNS_NAME.test(name)) return 'may contain only letters, digits and "_.:@+-", and must not start with "." or "-"';
  return undefined;
}

/** Decimal in [min, max]: no sign, no leading zeros, no 0x, no exponent. */
export function parsePolicyNumber(word: string, min: number, max: number): number | undefined {
  if (!DECIMAL.test(word)) return undefined;
  const n = Number(word);
  return n >= min && n <= max ? n : undefined;
}

/** Why `path` cannot be included, or undefined: it must be absolute and canonical. */
export function includePathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return 'is not an absolute path';
  const bytes = Buffer.byteLength(path, 'utf8');
  if (bytes > MAX_PATH_BYTES) return `is ${bytes} bytes long; at most ${MAX_PATH_BYTES} are allowed`;
  if (path === '/') return 'is the root directory';
  if (path.endsWith('/')) return 'ends in "/"';
  const parts = path.slice(1).split('/');
  if (parts.some((p) => p === '')) return 'contains "//"';
  if (parts.some((p) => p === '.' || p === '..')) return 'contains a "." or ".." component';
  if (parts.some((p) => Buffer.byteLength(p, 'utf8') > 255)) return 'has a component longer than 255 bytes';
  return undefined;
}
