// qemu-net-launch: run the helpers for the macvtaps named among QEMU's
// arguments, then become QEMU with their fds.
//
// Order of work: refuse privileges we must not have; parse our options; find
// QEMU (before any helper runs); plan the rewriting (every argument error comes
// out here, before anything is made); run each helper with --socketpair and
// collect its fds and record; rewrite the arguments; then either print and
// release (--dry-run) or execve QEMU. Anything that fails after the first link
// exists releases every link made so far (closing our fds, then running the
// same helper with --release=IFNAME), so a failed launch leaves nothing behind.
//
// The helpers tag each link with the process at the other end of the socket
// pair: this one. execve keeps the pid and the start time, so QEMU is the
// owner, and once it exits the links are stale for --gc.

import { spawnSync } from 'node:child_process';
import { writeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { callHelper, HelperCallError, type HelperResult } from '../client.ts';
import { HelperError, UsageError, oneLine } from '../errors.ts';
import { isPrivilegedRun } from '../privileges.ts';
import { versionLine } from '../version.ts';
import { PRIVILEGED_LAUNCHER } from './early.ts';
import { execWithFds, resolveProgram } from './exec.ts';
import { runAttach, runDetach } from './hotplug.ts';
import { helperCommand, parseLaunchArgs, PROGRAM, shellLine, usage } from './options.ts';
import { planLaunch, type MacvtapRequest } from './plan.ts';
import { renderQemuArgs, type MacvtapResult } from './render.ts';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Bound on one helper run (it normally takes well under a second). */
export const HELPER_TIMEOUT_MS = 30_000;
const INTERRUPTS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface Made {
  request: MacvtapRequest;
  command: string[];
  result: HelperResult;
}

export function write(fd: number, text: string): void {
  try {
    writeSync(fd, text);
  } catch {
    // Nowhere to say it; the exit status still does.
  }
}

export const err = (text: string) => write(2, text.endsWith('\n') ? text : text + '\n');

/** The line a person reads for a failure: "qemu-net-launch: cause; fix". */
export function failure(e: unknown): string {
  return oneLine(PROGRAM, e);
}

/** A helper's failure, in its own words when it reported one. */
function helperFailure(request: MacvtapRequest, command: readonly string[], e: unknown): string {
  const where = request.written;
  if (e instanceof HelperCallError) {
    if (e.reported) return oneLine(PROGRAM, `${where}: ${e.reported}`);
    if (e.exitCode === null && e.signal === null && e.message.startsWith('cannot run')) {
      return oneLine(PROGRAM, new HelperError(`${where}: ${e.message}`, 'install qemu-net-helper, or say where its helpers are with --helper-dir or --helper-command'));
    }
    return oneLine(PROGRAM, new HelperError(`${where}: ${request.helper} failed: ${e.message}`, `run ${shellLine(probeLine(command, request))} to see it fail by hand`));
  }
  return oneLine(PROGRAM, new HelperError(`${where}: ${e instanceof Error ? e.message : String(e)}`, 'report this as a bug'));
}

/** The helper's command line as a person reruns it: --probe does what --socketpair=3 did and prints the record. */
function probeLine(command: readonly string[], request: MacvtapRequest): string[] {
  return [...command, ...request.helperArgs, '--probe'];
}

export function describe(request: MacvtapRequest, r: HelperResult): string {
  const rec = r.record;
  const vhost = rec.vhost ? 'vhost on' : `vhost off${rec.vhostError ? ` (${rec.vhostError})` : ''}`;
  return `# ${request.id}: ${rec.ifname} on ${rec.lower}, mode ${rec.mode}, mac ${rec.mac}, ${rec.queues} queue${rec.queues === 1 ? '' : 's'}, ${vhost}`;
}

/** Deletes one link with `command --release=IFNAME`; returns the failure's one line, or undefined. */
export function releaseLink(command: readonly string[], ifname: string): string | undefined {
  const argv = [...command, `--release=${ifname}`];
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: HELPER_TIMEOUT_MS });
  if (r.status === 0) return undefined;
  const why = r.error?.message ?? (r.stderr.trim().split('\n')[0] || `exit status ${r.status ?? r.signal}`);
  return oneLine(PROGRAM, new HelperError(`could not release ${ifname}: ${why}`, `delete it with: ${shellLine(argv)} (or wait for --gc)`));
}

/** Closes our fds, then deletes each link with its helper's --release. Returns the failures, one line each. */
export function releaseAll(made: readonly Made[]): string[] {
  for (const m of made) m.result.close();
  const problems: string[] = [];
  for (const m of [...made].reverse()) {
    const problem = releaseLink(m.command, m.result.record.ifname);
    if (problem) problems.push(problem);
  }
  return problems;
}

/**
 * Runs the helper for one request (the line that reproduces it goes to `show`)
 * and checks what it handed over. A link it made is added to `made`, also when
 * the check then fails, so releaseAll undoes it. Returns the failure's one line, or undefined.
 */
export async function runRequest(req: MacvtapRequest, helperTemplate: readonly string[], env: NodeJS.ProcessEnv, verbose: boolean,
  show: ((text: string) => void) | undefined, made: Made[]): Promise<string | undefined> {
  const command = helperCommand(helperTemplate, req.helper);
  show?.(shellLine(probeLine(command, req)));
  let result: HelperResult;
  try {
    result = await callHelper({ command, args: req.helperArgs, timeoutMs: HELPER_TIMEOUT_MS, env });
  } catch (e) {
    if (verbose && e instanceof HelperCallError && e.stderr) write(2, e.stderr);
    return helperFailure(req, command, e);
  }
  made.push({ request: req, command, result });
  if (verbose && result.stderr) write(2, result.stderr);
  const rec = result.record;
  if (req.mac !== undefined && rec.mac !== req.mac) return oneLine(PROGRAM, new HelperError(`${req.written}: ${req.helper} made ${rec.ifname} with MAC ${rec.mac}, not ${req.mac}`, 'report this as a bug'));
  if (result.tapFds.length !== req.queues) return oneLine(PROGRAM, new HelperError(`${req.written}: ${req.helper} handed over ${result.tapFds.length} queues, not ${req.queues}`, 'report this as a bug'));
  show?.(describe(req, result));
  return undefined;
}

/** Runs the launcher. Returns an exit status, or does not return at all: the process has become QEMU. */
export async function runLaunch(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (isPrivilegedRun()) {
    err(failure(PRIVILEGED_LAUNCHER));
    return EXIT_FAILURE;
  }
  let request;
  try {
    request = parseLaunchArgs(argv);
  } catch (e) {
    err(failure(e));
    return EXIT_USAGE;
  }
  if (request.action === 'help') {
    write(1, usage());
    return 0;
  }
  if (request.action === 'version') {
    write(1, versionLine(PROGRAM));
    return 0;
  }
  if (request.action === 'attach') return runAttach(request, env);
  if (request.action === 'detach') return runDetach(request, env);
  const { dryRun, verbose, helperTemplate, qemu } = request;
  const [qemuName, ...qemuArgs] = qemu as [string, ...string[]];
  let plan;
  let qemuPath: string;
  try {
    qemuPath = resolveProgram(qemuName, env.PATH);
    plan = planLaunch(qemuArgs);
  } catch (e) {
    err(failure(e));
    return e instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }

  const show = dryRun ? (text: string) => write(1, text + '\n') : verbose ? err : undefined;
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => { interrupted ??= sig; };
  for (const sig of INTERRUPTS) process.on(sig, onSignal);

  const made: Made[] = [];
  const fail = (line: string, status = EXIT_FAILURE): number => {
    err(line);
    for (const problem of releaseAll(made)) err(problem);
    return status;
  };

  if (show && plan.requests.length > 0) show(`# ${PROGRAM} runs each helper with --socketpair=3; the lines below, with --probe, reproduce a run by hand`);
  for (const req of plan.requests) {
    const problem = await runRequest(req, helperTemplate, env, verbose, show, made);
    if (problem) return fail(problem);
    if (interrupted) break;
  }
  if (interrupted) {
    return fail(oneLine(PROGRAM, new HelperError(`interrupted by ${interrupted}`, 'nothing was started; every link made was released')), 128 + osConstants.signals[interrupted]);
  }

  const results: MacvtapResult[] = made.map((m) => ({ mac: m.result.record.mac, tapFds: m.result.tapFds, vhostFds: m.result.vhostFds }));
  let finalArgs: string[];
  try {
    finalArgs = renderQemuArgs(plan, results);
  } catch (e) {
    return fail(oneLine(PROGRAM, new HelperError(`cannot rewrite QEMU's arguments: ${(e as Error).message}`, 'report this as a bug')));
  }
  const keep = made.flatMap((m) => [...m.result.tapFds, ...m.result.vhostFds]);
  for (const r of plan.requests) {
    if (r.form === 'netdev' && !r.nic) {
      err(`${PROGRAM}: note: no NIC uses netdev ${r.id}; one added later must have mac=${results[plan.requests.indexOf(r)]!.mac}`);
    }
  }
  if (show) {
    show(`# QEMU${qemuPath !== qemuName ? ` (${qemuPath})` : ''}${keep.length ? `, inheriting fd${keep.length > 1 ? 's' : ''} ${keep.join(' ')}` : ''}:`);
    show(shellLine([qemuName, ...finalArgs]));
  }
  if (dryRun) {
    const problems = releaseAll(made);
    for (const problem of problems) err(problem);
    if (made.length) show!(`# dry run: released ${made.map((m) => m.result.record.ifname).join(', ')}`);
    return problems.length ? EXIT_FAILURE : 0;
  }
  // Our signal handlers stay to the end: execve resets caught signals to their defaults.
  try {
    execWithFds(qemuPath, [qemuName, ...finalArgs], env, keep);
  } catch (e) {
    return fail(oneLine(PROGRAM, new HelperError(`cannot run ${qemuPath}: ${(e as Error).message}`, 'check that it is QEMU and executable')));
  }
}
