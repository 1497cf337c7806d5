// The policy file /etc/qemu/net-helper.conf: who may make which macvtaps.
// Grammar and meaning: docs/man/net-helper.conf.5; design notes: docs/policy.md.

export type { Accounts } from './accounts.ts';
export { NO_ACCOUNTS, tableAccounts } from './accounts.ts';
export { checkConfig, formatCheckReport, type CheckOptions, type CheckReport } from './check.ts';
export {
  auditLine, decide, defaultModes, denialError, describeLimit, describeRequest, linkLimit, resolveNetwork, resolvePool,
  type Caller, type LinkLimit, type Decision, type DeviceNames, type PolicyRequest, type Via, type VhostRequest,
} from './decide.ts';
export { PolicyError } from './errors.ts';
export { nodePolicyFs, type FileInfo, type FileType, type PolicyFs } from './fs.ts';
export { loadPolicy, readPolicy, POLICY_LIMITS, POLICY_PATH, type LoadOptions, type LoadResult, type PolicyLimits } from './load.ts';
export { identifyNetns, nodeNetnsProbe, policyNetnsNames, RUN_NETNS, type NetnsIdentity, type NetnsProbe, type NsId } from './netns.ts';
export { assemblePolicy, parsePolicyText, type Statement } from './parse.ts';
export { netnsNameProblem, policyNameProblem } from './syntax.ts';
export { DEFAULT_LINK_LIMIT } from './syntax.ts';
export type { AccountRef, LimitDef, NetnsSpec, NetworkDef, Policy, PolicyProblem, PoolDef, Rule, Subject, Target, Where } from './types.ts';
