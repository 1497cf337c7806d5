// User and group names for the policy, resolved through the C library's NSS
// (so LDAP or systemd users work like local ones).
import * as libc from '../libc.ts';
import type { Accounts } from '../policy/index.ts';

export const nssAccounts: Accounts = {
  uidOf: (name) => libc.uidOfUser(name),
  gidOf: (name) => libc.gidOfGroup(name),
};
