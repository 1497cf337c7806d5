// Turning the user and group names written in a policy into ids. Injected:
// production wraps getpwnam_r(3)/getgrnam_r(3) (so NSS sources such as LDAP
// count), tests pass a table.
//
// Names are resolved when deciding, and only for rules that otherwise match
// the request. The caller itself is never looked up by name: it is its real
// uid, real gid and supplementary groups (getuid, getgid, getgroups), which
// the kernel reports and the caller's environment cannot change.

export interface Accounts {
  /** pw_uid of the user called `name`; undefined when there is no such user. Throws when the lookup itself fails. */
  uidOf(name: string): number | undefined;
  /** gr_gid of the group called `name`; undefined when there is no such group. Throws when the lookup itself fails. */
  gidOf(name: string): number | undefined;
}

/** Accounts from fixed tables (tests, and policies that name only numeric ids). */
export function tableAccounts(users: Readonly<Record<string, number>>, groups: Readonly<Record<string, number>>): Accounts {
  const u = new Map(Object.entries(users));
  const g = new Map(Object.entries(groups));
  return { uidOf: (name) => u.get(name), gidOf: (name) => g.get(name) };
}

/** Accounts that know no names: every named user or group in the policy matches no one. */
export const NO_ACCOUNTS: Accounts = tableAccounts({}, {});
