// The cleanup of a libvirt session test (test/libvirt/session.ts), run in a
// process of its own so that it also happens when the test process is
// killed (tap's timeout sends SIGALRM, then SIGKILL a second later):
//
//   node session-guard.ts STATE.json      (detached; stdin a pipe from the test)
//
// The test writes STATE.json (atomically, as it acquires each thing) and
// keeps the write end of the guard's stdin. When that end closes (the test
// closed it in its teardown, or the test process is gone) the guard reads
// the state and removes, in this order: every process of the user (SIGKILL
// by pid; their daemons and QEMU hold the queues, the namespace and HOME),
// every macvtap left in the host namespace (and waits for its /dev/tapN),
// the namespaces, the user, the directory, and STATE.json itself. Each step
// is bounded; what it could not remove is printed on stdout, one line each,
// and makes the exit status 1.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';

export interface GuardState {
  /** Root-owned temporary directory (HOME is inside). */
  dir?: string;
  /** The test user's name. */
  user?: string;
  /** Namespace whose macvtaps are deleted explicitly before it goes. */
  hostNs?: string;
  namespaces: string[];
}

interface Proc {
  pid: number;
  zombie: boolean;
}

/** Processes whose real uid is `uid`, from /proc. */
export function processesOfUid(uid: number): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      const real = /^Uid:\s*(\d+)/m.exec(status)?.[1];
      if (Number(real) !== uid) continue;
      out.push({ pid: Number(name), zombie: /^State:\s*Z/m.test(status) });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Bounded synchronous wait for `cond`. */
export function waitSync(cond: () => boolean, timeoutMs: number, stepMs = 50): boolean {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (cond()) return true;
    if (Date.now() >= end) return false;
    Atomics.wait(sleeper, 0, 0, stepMs);
  }
}

function uidOf(user: string): number | undefined {
  const r = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : undefined;
}

function nsExists(ns: string): boolean {
  return spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').some((l) => l.split(' ')[0] === ns);
}

/** Removes everything `state` names; returns what could not be removed. */
export function cleanup(state: GuardState): string[] {
  const problems: string[] = [];
  const uid = state.user ? uidOf(state.user) : undefined;

  if (uid !== undefined) {
    for (let round = 0; round < 3; round++) {
      const live = processesOfUid(uid).filter((p) => !p.zombie);
      if (live.length === 0) break;
      for (const p of live) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      waitSync(() => processesOfUid(uid).every((p) => p.zombie), 5_000);
    }
    const left = processesOfUid(uid).filter((p) => !p.zombie);
    if (left.length > 0) problems.push(`processes of ${state.user} survived SIGKILL: ${left.map((p) => p.pid).join(' ')}`);
  }

  if (state.hostNs && nsExists(state.hostNs)) {
    const nodes: string[] = [];
    const r = spawnSync('ip', ['-n', state.hostNs, '-d', '-j', 'link', 'show'], { encoding: 'utf8' });
    const links = r.status === 0 ? (JSON.parse(r.stdout) as Array<{ ifname: string; ifindex: number; linkinfo?: { info_kind?: string } }>) : [];
    for (const l of links.filter((l) => l.linkinfo?.info_kind === 'macvtap')) {
      nodes.push(`/dev/tap${l.ifindex}`);
      const del = spawnSync('ip', ['-n', state.hostNs, 'link', 'del', l.ifname], { encoding: 'utf8' });
      if (del.status !== 0) problems.push(`ip link del ${l.ifname}: ${del.stderr.trim()}`);
    }
    if (!waitSync(() => nodes.every((n) => !existsSync(n)), 5_000)) problems.push(`device nodes still present: ${nodes.filter((n) => existsSync(n)).join(' ')}`);
  }

  for (const ns of [...state.namespaces].reverse()) {
    if (!nsExists(ns)) continue;
    const r = spawnSync('ip', ['netns', 'del', ns], { encoding: 'utf8' });
    if (r.status !== 0) problems.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
  }

  if (uid !== undefined && state.user) {
    // userdel refuses while a process of the user is listed; PID 1 reaps the daemons' zombies in its own time.
    let last = '';
    const ok = waitSync(() => {
      const r = spawnSync('userdel', [state.user!], { encoding: 'utf8' });
      last = r.stderr.trim();
      return r.status === 0 || uidOf(state.user!) === undefined;
    }, 10_000, 200);
    if (!ok) problems.push(`userdel ${state.user}: ${last}`);
  }

  if (state.dir) {
    try {
      rmSync(state.dir, { recursive: true, force: true });
    } catch (e) {
      problems.push(`rm -rf ${state.dir}: ${(e as Error).message}`);
    }
  }
  return problems;
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const stateFile = process.argv[2];
  if (!stateFile) {
    console.error('usage: session-guard.ts STATE.json');
    process.exit(2);
  }
  // The test may be gone when the report is written: a closed pipe is no reason to stop.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  process.stdin.resume();
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => {
    let state: GuardState = { namespaces: [] };
    try {
      state = JSON.parse(readFileSync(stateFile, 'utf8')) as GuardState;
    } catch {
      /* nothing acquired yet */
    }
    const problems = cleanup(state);
    rmSync(stateFile, { force: true });
    for (const p of problems) process.stdout.write(`${p}\n`);
    process.exitCode = problems.length > 0 ? 1 : 0;
  });
}
