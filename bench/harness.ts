// The measuring half of `npm run bench` (bench/spawn-to-fd.ts starts it
// inside the benchmark's network namespace and a private mount namespace,
// so that each program is spawned directly, with nothing in between).
//
// Input: one JSON argument { runs, warmup, programs: [{ label, argv, cleanup? }] }.
// For each round, every program runs once timed and once under GNU time for
// its peak RSS, in an order shuffled anew each round. Each run gets QEMU's
// helper protocol: a socketpair end as fd 3 and `--use-vnet --fd=3 --br=br0`
// appended, as QEMU appends them. Timed: from just before spawn until the
// child has exited and its one byte and one fd have been received (QEMU reads
// the fd and then waits for the exit; this is when it can go on). Output:
// one JSON object on stdout.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AF_UNIX, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_STREAM } from '../lib/constants.ts';
import * as libc from '../lib/libc.ts';
import { receiveWithFds } from '../lib/scm.ts';

export interface HarnessProgram {
  label: string;
  argv: string[];
  /** argv run after each of its runs, with {i} replaced by the run's number (to delete what it made). */
  cleanup?: string[];
  /** false for a program that answers nothing (the do-nothing floor): timed until it has exited. */
  sendsFd?: boolean;
}
export interface HarnessInput {
  runs: number;
  warmup: number;
  programs: HarnessProgram[];
}
export interface HarnessOutput {
  /** label -> milliseconds of each measured run: one per round, in round order (index i of every label is the same round). */
  ms: Record<string, number[]>;
  /** label -> peak RSS in KiB (ru_maxrss from wait4, via GNU time) of each measured run. */
  rssKiB: Record<string, number[]>;
}

const RUN_TIMEOUT_MS = 10_000;
const QEMU_ARGS = ['--use-vnet', '--fd=3', '--br=br0'];
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

function expand(argv: string[], i: number): string[] {
  return argv.map((a) => a.replaceAll('{i}', String(i)));
}

/** Spawns argv with a socketpair end as fd 3; resolves after exit and the fd's arrival. */
function runOnce(argv: string[], sendsFd = true): Promise<{ ms: number }> {
  const [mine, theirs] = libc.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(argv[0]!, [...argv.slice(1), ...QEMU_ARGS], { stdio: ['ignore', 'ignore', 'pipe', theirs], env: ENV });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 4096) stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    const finish = (err: Error | undefined, ms?: number) => {
      clearTimeout(timer);
      libc.closeQuietly(mine, theirs);
      if (err) reject(err); else resolve({ ms: ms! });
    };
    child.on('error', (err) => finish(err));
    child.on('close', (code, signal) => {
      if (!sendsFd) {
        const ms = performance.now() - start;
        finish(code === 0 ? undefined : new Error(`${argv.join(' ')} exited ${signal ?? code}: ${stderr.trim()}`), ms);
        return;
      }
      let got;
      try {
        got = receiveWithFds(mine, 16, 2, MSG_DONTWAIT);
      } catch (err) {
        finish(new Error(`${argv.join(' ')} ${signal ?? `exited ${code}`} without sending a fd (${(err as Error).message}): ${stderr.trim()}`));
        return;
      }
      const ms = performance.now() - start;
      libc.closeQuietly(...got.fds);
      if (code !== 0 || got.fds.length !== 1 || got.data.length !== 1) {
        finish(new Error(`${argv.join(' ')} exited ${signal ?? code} after sending ${got.data.length} bytes and ${got.fds.length} fds: ${stderr.trim()}`));
      } else {
        finish(undefined, ms);
      }
    });
  });
}

/**
 * The programs in a new random order for each round. A fixed order would let
 * what one run leaves the kernel doing (deleting a link, tearing down a tap)
 * fall on the same next program every time.
 */
function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function cleanup(p: HarnessProgram, i: number): void {
  if (!p.cleanup) return;
  const r = spawnSync(p.cleanup[0]!, expand(p.cleanup, i).slice(1), { encoding: 'utf8', timeout: RUN_TIMEOUT_MS });
  if (r.status !== 0) throw new Error(`cleanup ${expand(p.cleanup, i).join(' ')} failed: ${r.stderr}`);
}

async function main(): Promise<void> {
  const input = JSON.parse(process.argv[2] ?? '') as HarnessInput;
  const out: HarnessOutput = { ms: {}, rssKiB: {} };
  const work = mkdtempSync(join(tmpdir(), 'qnh-bench-rss-'));
  try {
    for (const p of input.programs) { out.ms[p.label] = []; out.rssKiB[p.label] = []; }
    let n = 0;
    for (let round = 0; round < input.warmup + input.runs; round++) {
      for (const p of shuffled(input.programs)) {
        const i = n++;
        const timed = await runOnce(expand(p.argv, i), p.sendsFd);
        cleanup(p, i);
        const j = n++;
        const rssFile = join(work, `rss-${j}`);
        await runOnce(['/usr/bin/time', '-f', '%M', '-o', rssFile, ...expand(p.argv, j)], p.sendsFd);
        cleanup(p, j);
        if (round >= input.warmup) {
          out.ms[p.label]!.push(timed.ms);
          const kib = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
          if (!Number.isInteger(kib) || kib <= 0) throw new Error(`GNU time gave no peak RSS for ${p.label}`);
          out.rssKiB[p.label]!.push(kib);
        }
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(`bench harness: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
