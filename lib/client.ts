// Calling a helper from Node: run it with --socketpair, collect the fds and
// the features record it sends, and report its failures with its own words.
//
// The helper sends its record (with the fds attached) and exits, so we wait
// for the exit and then read what is queued without blocking: no polling, no
// thread, and the timeout covers the whole call.

import { spawn } from 'node:child_process';
import { AF_UNIX, MAX_TAP_QUEUES, SOCK_CLOEXEC, SOCK_STREAM, MSG_DONTWAIT } from './constants.ts';
import * as libc from './libc.ts';
import { MAX_RECORD_BYTES, parseHelperRecord, type HelperRecord } from './record.ts';
import { receiveStreamWithFds } from './scm.ts';

/** The fd number the helper sees its end of the socket pair as. */
const CHILD_SOCKET_FD = 3;
const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_STDERR_BYTES = 16 * 1024;

export interface HelperCall {
  /** The helper's argv[0..k]: its path, or a wrapper such as ['ip', 'netns', 'exec', NS, '/usr/libexec/qemu-net-helper-vepa']. */
  command: readonly string[];
  /** The helper's options; --socketpair=3 is appended. */
  args: readonly string[];
  timeoutMs?: number;
  /** The environment for the helper (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Told the helper's pid as soon as it is running (for supervision and tests). */
  onSpawn?: (pid: number) => void;
}

export interface HelperResult {
  record: HelperRecord;
  /** Every field of the record, including ones this library does not interpret. */
  fields: Map<string, string>;
  /** The tap queue fds, in queue order. */
  tapFds: number[];
  /** The vhost-net fds, in queue order (empty when vhost=0). */
  vhostFds: number[];
  /** The helper's stderr (diagnostics, DEBUG traces). */
  stderr: string;
  /** Closes every fd this result holds. The link stays (a guest may still use it): see release(). */
  close(): void;
  /**
   * Closes the fds and deletes the link: runs the same helper command with
   * --release=IFNAME (the caller's own link, or any as root). Rejects with
   * HelperCallError when the helper refuses.
   */
  release(): Promise<void>;
}

/** The helper failed: its exit status, the error it reported, and its stderr. */
export class HelperCallError extends Error {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
  readonly reported: string | undefined;
  constructor(message: string, details: { exitCode: number | null; signal: NodeJS.Signals | null; stderr: string; reported?: string }) {
    super(message);
    this.name = 'HelperCallError';
    this.exitCode = details.exitCode;
    this.signal = details.signal;
    this.stderr = details.stderr;
    this.reported = details.reported;
  }
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with status ${code}`;
}

/** Runs the helper and returns what it handed over. Rejects with HelperCallError; never leaks an fd. */
export async function callHelper(call: HelperCall): Promise<HelperResult> {
  const [mine, theirs] = libc.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
  const argv = [...call.command, ...call.args, `--socketpair=${CHILD_SOCKET_FD}`];
  let exit: { code: number | null; signal: NodeJS.Signals | null; stderr: string };
  try {
    exit = await runToExit(argv, theirs, call.timeoutMs ?? DEFAULT_TIMEOUT_MS, call.env, call.onSpawn);
  } catch (err) {
    libc.closeQuietly(mine, theirs);
    throw err;
  }
  libc.closeQuietly(theirs);
  let result: Omit<HelperResult, 'release'>;
  try {
    result = collect(mine, exit);
  } finally {
    libc.closeQuietly(mine);
  }
  const release = async () => {
    result.close();
    const argv = [...call.command, `--release=${result.record.ifname}`];
    const done = await runToExit(argv, undefined, call.timeoutMs ?? DEFAULT_TIMEOUT_MS, call.env, undefined);
    if (done.code !== 0) {
      const line = done.stderr.split('\n').find((l) => l.trim() !== '') ?? '';
      throw new HelperCallError(`releasing ${result.record.ifname}: helper ${describeExit(done.code, done.signal)}${line ? `: ${line}` : ''}`, { exitCode: done.code, signal: done.signal, stderr: done.stderr });
    }
  };
  return { ...result, release };
}

function collect(sock: number, exit: { code: number | null; signal: NodeJS.Signals | null; stderr: string }): Omit<HelperResult, 'release'> {
  const firstStderrLine = exit.stderr.split('\n').find((l) => l.trim() !== '' && !/^\S+ qemu-net-helper:/.test(l));
  let received;
  try {
    received = receiveStreamWithFds(sock, MAX_RECORD_BYTES, 2 * MAX_TAP_QUEUES, MSG_DONTWAIT);
  } catch (err) {
    const nothing = err instanceof libc.SysError && err.code === 'EAGAIN';
    throw new HelperCallError(
      `helper ${describeExit(exit.code, exit.signal)}${nothing ? ' without sending anything' : ` and its message was unusable: ${(err as Error).message}`}` +
        (firstStderrLine ? `: ${firstStderrLine}` : ''),
      { exitCode: exit.code, signal: exit.signal, stderr: exit.stderr });
  }
  const close = () => libc.closeQuietly(...received.fds);
  try {
    if (received.data.length === 0) {
      throw new HelperCallError(`helper ${describeExit(exit.code, exit.signal)} without sending a record` + (firstStderrLine ? `: ${firstStderrLine}` : ''),
        { exitCode: exit.code, signal: exit.signal, stderr: exit.stderr });
    }
    let decoded;
    try {
      decoded = parseHelperRecord(received.data);
    } catch (err) {
      throw new HelperCallError(`helper ${describeExit(exit.code, exit.signal)} and sent an unusable record: ${(err as Error).message}` + (firstStderrLine ? `: ${firstStderrLine}` : ''),
        { exitCode: exit.code, signal: exit.signal, stderr: exit.stderr });
    }
    if (!decoded.ok) {
      throw new HelperCallError(decoded.error, { exitCode: exit.code, signal: exit.signal, stderr: exit.stderr, reported: decoded.error });
    }
    if (exit.code !== 0) {
      throw new HelperCallError(`helper sent a record but ${describeExit(exit.code, exit.signal)}`, { exitCode: exit.code, signal: exit.signal, stderr: exit.stderr });
    }
    const { record, fields } = decoded;
    if (record.fds.length !== received.fds.length) {
      throw new HelperCallError(`record lists ${record.fds.length} fds but ${received.fds.length} arrived`, { exitCode: exit.code, signal: exit.signal, stderr: exit.stderr });
    }
    const tapFds = received.fds.filter((_, i) => record.fds[i] === 'tap');
    const vhostFds = received.fds.filter((_, i) => record.fds[i] === 'vhost');
    return { record, fields, tapFds, vhostFds, stderr: exit.stderr, close };
  } catch (err) {
    close();
    throw err;
  }
}

function runToExit(argv: string[], childSocket: number | undefined, timeoutMs: number, env: NodeJS.ProcessEnv | undefined, onSpawn: ((pid: number) => void) | undefined):
  Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: childSocket === undefined ? ['ignore', 'ignore', 'pipe'] : ['ignore', 'ignore', 'pipe', childSocket],
      env: env ?? process.env,
    });
    if (child.pid !== undefined) onSpawn?.(child.pid);
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      if (stderr.length < MAX_STDERR_BYTES) stderr += chunk.slice(0, MAX_STDERR_BYTES - stderr.length);
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new HelperCallError(`helper did not finish within ${timeoutMs} ms and was killed: ${argv.join(' ')}`,
        { exitCode: null, signal: 'SIGKILL', stderr }));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new HelperCallError(`cannot run ${argv[0]}: ${err.message}`, { exitCode: null, signal: null, stderr }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}
