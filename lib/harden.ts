// The first module every helper evaluates (each entry point imports it
// first; ES modules are evaluated in import order). It uses only Node
// built-ins, so it runs before koffi, `debug` (which reads DEBUG when it
// loads) or anything else of ours:
//  - stop V8 coverage, which NODE_V8_COVERAGE would have it write, as root,
//    where the caller says, at exit;
//  - umask 077, so nothing we create is readable or writable by others;
//  - chdir to /, so a working directory the caller controls (or deleted) plays no part;
//  - replace the environment with a fixed PATH and, only when it names this
//    project's debug namespaces, DEBUG (plus DEBUG_COLORS=no, our own). Node has already read what it reads at
//    start-up (and ignores NODE_OPTIONS under AT_SECURE); this keeps the rest
//    of the caller's environment away from every library we load.
// What needs the C library (ignoring SIGUSR1, fds 0-2, PR_SET_NO_NEW_PRIVS)
// follows in lib/privileges.ts.

export const SAFE_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** DEBUG is kept only when every pattern in it is one of ours, e.g. "qemu-net-helper:*" or "qemu-net-helper:netlink,-qemu-net-helper:tap". */
export function safeDebugValue(value: string | undefined): string | undefined {
  if (value === undefined || value.length > 256) return undefined;
  const patterns = value.split(/[\s,]+/).filter(Boolean);
  if (patterns.length === 0) return undefined;
  return patterns.every((p) => /^-?qemu-net-helper(:[a-z*-]{1,32})?$/.test(p)) ? patterns.join(',') : undefined;
}

/**
 * Stops V8 coverage if Node started it. Node starts it when NODE_V8_COVERAGE
 * is set (no other trigger reaches an installed helper: NODE_OPTIONS is
 * ignored and the SEA takes no options), so node:v8 is loaded only then: it
 * pulls in node:stream, 3 ms of every start-up otherwise.
 */
export function stopCoverageIfStarted(): void {
  if (process.env.NODE_V8_COVERAGE !== undefined) process.getBuiltinModule('node:v8').stopCoverage();
}

export function hardenEarly(): void {
  stopCoverageIfStarted();
  process.umask(0o077);
  process.chdir('/');
  const debug = safeDebugValue(process.env.DEBUG);
  for (const key of Object.keys(process.env)) delete process.env[key];
  process.env.PATH = SAFE_PATH;
  if (debug) process.env.DEBUG = debug;
  // Tell `debug` not to colour: otherwise each namespace it creates asks
  // whether stderr is a terminal, which sets up process.stderr (3 ms a run).
  process.env.DEBUG_COLORS = 'no';
}

hardenEarly();
