// npm run bench [-- RUNS] [--no-write]: spawn-to-fd time and peak RSS of
//   - the installed qemu-net-helper-vepa (the Debian package: npm run deb, dpkg -i),
//   - the runtime floor: bench/floor-send-fd.ts built into a single executable
//     exactly as the helpers are (same Node, prologue, koffi path),
//   - the C anchor: Debian QEMU's /usr/lib/qemu/qemu-bridge-helper on a bridge,
// interleaved (each round runs every program once, in a shuffled order), RUNS rounds (default 60; at least 30 to
// write BENCHMARKS.md: the machine is noisy, and more rounds steady the medians),
// and writes the table, the ratios and the machine to BENCHMARKS.md.
//
// Everything happens in a throwaway network namespace (veth v0/v1 for the
// macvtaps, bridge br0 for the anchor). qemu-bridge-helper reads
// /etc/qemu/bridge.conf even as root; rather than touch /etc, the harness
// runs in a private mount namespace where an overlay adds qemu/bridge.conf
// ("allow br0") to /etc. Needs root.

import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildExecutable } from '../packaging/build.ts';
import { DEFAULT_KOFFI_NATIVE_PATH } from '../lib/koffi-loader.ts';
import type { HarnessInput, HarnessOutput } from './harness.ts';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const HELPER = '/usr/libexec/qemu-net-helper-vepa';
const ANCHOR = '/usr/lib/qemu/qemu-bridge-helper';
const GNU_TIME = '/usr/bin/time';
const MIN_RUNS = 30;
const DEFAULT_RUNS = 60;
const WARMUP = 2;
const HARNESS_TIMEOUT_MS = 30 * 60_000;
/** Targets from issue 4. */
const TARGET_RATIO_FLOOR = 1.25;
const TARGET_RSS_MIB = 64;

/** Where the sections of other benchmarks begin in BENCHMARKS.md. */
const OTHER_SECTIONS = '\n## Ownership at scale';

class BenchError extends Error {}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}

function sh(argv: string[]): string {
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function requireTools(): void {
  if (process.getuid?.() !== 0) throw new BenchError('needs root (namespaces, macvtaps, a private mount namespace); run it as root');
  const missing: [string, string][] = [
    [HELPER, 'install the package: npm run deb && dpkg -i dist/qemu-net-helper_*_amd64.deb'],
    [ANCHOR, 'apt-get install qemu-system-x86 (bash .ci/setup does)'],
    [GNU_TIME, 'apt-get install time (bash .ci/setup does)'],
    [DEFAULT_KOFFI_NATIVE_PATH, 'install the package: npm run deb && dpkg -i dist/qemu-net-helper_*_amd64.deb'],
  ];
  for (const [path, fix] of missing) {
    try {
      accessSync(path, fsConstants.R_OK);
    } catch {
      throw new BenchError(`${path} is missing; ${fix}`);
    }
  }
}

/** Drops a file's pages from the page cache, so that every program starts from the same state. */
function evict(path: string): void {
  // GNU dd: with count=0 and iflag=nocache, posix_fadvise(DONTNEED) on the whole file.
  execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
}

function machine(): Record<string, string> {
  const osRelease = readFileSync('/etc/os-release', 'utf8');
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1] ?? 'unknown';
  const qemu = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'qemu-system-common'], { encoding: 'utf8' }).stdout || 'unknown';
  const helper = spawnSync(HELPER, ['--version'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } }).stdout.split('\n')[0] ?? 'unknown';
  return {
    cpu: `${cpus()[0]?.model ?? 'unknown'} (${cpus().length} cores)`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: sh(['uname', '-r']).trim(),
    os: pretty,
    node: process.version,
    qemu: `qemu-system-common ${qemu}`,
    helper,
  };
}

interface Row { label: string; what: string; ms: ReturnType<typeof stats>; rssMiB: ReturnType<typeof stats>; runs: number[] }

/**
 * The median of a/b taken round by round (both ran in the same round, within
 * a few milliseconds of each other), with its quartiles: less moved by slow
 * drift of the machine than a ratio of two medians.
 */
function pairedRatio(a: Row, b: Row): { median: number; q1: number; q3: number } {
  const r = a.runs.map((x, i) => x / b.runs[i]!).sort((x, y) => x - y);
  const at = (q: number) => r[Math.min(r.length - 1, Math.floor(q * r.length))]!;
  return { median: stats(r).median, q1: at(0.25), q3: at(0.75) };
}

function table(rows: Row[]): string {
  const f = (x: number) => x.toFixed(1);
  const lines = [
    '| program | what | median ms | min ms | max ms | peak RSS MiB (median) | peak RSS MiB (max) |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) lines.push(`| ${r.label} | ${r.what} | ${f(r.ms.median)} | ${f(r.ms.min)} | ${f(r.ms.max)} | ${f(r.rssMiB.median)} | ${f(r.rssMiB.max)} |`);
  return lines.join('\n');
}

function report(rows: Row[], runs: number, m: Record<string, string>, date: string): string {
  const [helper, floor, floorFastExit, nothing, anchor] = rows as [Row, Row, Row, Row, Row];
  const ratioNothing = helper.ms.median / nothing.ms.median;
  const pairedNothing = pairedRatio(helper, nothing);
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const ratioFloor = helper.ms.median / floor.ms.median;
  const ratioFloorFastExit = helper.ms.median / floorFastExit.ms.median;
  const ratioAnchor = helper.ms.median / anchor.ms.median;
  const paired = pairedRatio(helper, floor);
  const pairedFastExit = pairedRatio(helper, floorFastExit);
  const range = (p: { q1: number; q3: number }) => `quartiles ${p.q1.toFixed(2)} to ${p.q3.toFixed(2)}`;
  const verdict = (ok: boolean) => (ok ? 'met' : '**not met**');
  return `# Benchmarks

Written by \`npm run bench\` (bench/spawn-to-fd.ts); do not edit by hand.

## Spawn to fd received

${runs} interleaved rounds (after ${WARMUP} warm-up rounds), ${date}.

${table(rows)}

- helper / floor (median): **${ratioFloor.toFixed(2)}** (target at most ${TARGET_RATIO_FLOOR}: ${verdict(ratioFloor <= TARGET_RATIO_FLOOR)})
- helper / (floor, _exit) (median): **${ratioFloorFastExit.toFixed(2)}** (the same target against a floor that also skips Node's exit: ${verdict(ratioFloorFastExit <= TARGET_RATIO_FLOOR)})
- paired by round, median of the per-round ratios: helper / floor **${paired.median.toFixed(2)}** (${range(paired)}), helper / (floor, _exit) **${pairedFastExit.median.toFixed(2)}** (${range(pairedFastExit)})
- helper / (floor, nothing) (median): **${ratioNothing.toFixed(2)}** (paired by round ${pairedNothing.median.toFixed(2)}, ${range(pairedNothing)}; the goal of ${TARGET_RATIO_FLOOR} against this floor: ${verdict(ratioNothing <= TARGET_RATIO_FLOOR)})
- where the helper's time over the do-nothing floor goes (medians): koffi's load and one sendmsg (floor - nothing) ${ms(floor.ms.median - nothing.ms.median)}; the helper's own work, its larger code cache and its faster exit taken together (helper - floor) ${ms(helper.ms.median - floor.ms.median)}
- helper / anchor (median): **${ratioAnchor.toFixed(2)}**
- helper peak RSS (max): **${helper.rssMiB.max.toFixed(1)} MiB** (target at most ${TARGET_RSS_MIB} MiB: ${verdict(helper.rssMiB.max <= TARGET_RSS_MIB)})

## Machine

${Object.entries(m).map(([k, v]) => `- ${k}: ${v}`).join('\n')}

## Method

- Each program is run as QEMU runs a helper: a unix socket as fd 3 and
  \`--use-vnet --fd=3 --br=br0\` appended, in a clean environment, spawned
  directly by the harness (bench/harness.ts), which runs inside the benchmark's
  network namespace. A run is timed from just before spawn until the child has
  exited and its one byte and one fd have been received: when QEMU could go on.
- The helper makes a vepa macvtap on a veth (\`--dev=v0 --mac=...\`, as QEMU
  would run it; deleted after each run, not timed); the floor sends /dev/null;
  the anchor makes a tap on a Linux bridge (closing the fd removes it).
- The executables carry V8's code cache of every function of their bundle
  (packaging/sea-main.cjs says why); all three Node programs are built the same
  way (packaging/build.ts).
- The helper ends with \`_exit(2)\` once its work is done (Node's own exit
  took it 2-3 ms). The floor runs twice per round: exiting as any Node
  program does, which is the floor the target is defined against, and with
  \`--fast-exit\`, ending the same way as the helper; the second ratio shows
  that the helper's margin is not its faster exit.
- Rounds interleave the programs, so drift of the machine affects all alike,
  in an order shuffled anew each round, so that what one run leaves the
  kernel doing (deleting a link, tearing down a tap) does not always fall on
  the same next program.
  Each program also runs once per round under GNU time (\`/usr/bin/time -f %M\`):
  the peak RSS is \`ru_maxrss\` from \`wait4()\`, the kernel's high-water mark
  of the process's resident set (anonymous and file pages), which cannot miss a
  peak the way sampling \`/proc/PID/status\` can.
- Before the runs, each executable's pages are dropped from the page cache
  (\`dd iflag=nocache count=0\`), then warm-up rounds read them back as any
  start after boot would. This matters: a 100 MiB executable just written in
  one go sits in the page cache as large folios, and faulting its text maps
  whole folios, which adds 15 MiB or more of file-backed RSS that a normally
  read file does not show.
- The floor is the same Node, the same SEA main script and prologue and the
  same koffi load as a helper, plus one \`sendmsg\`; what the helper adds is
  its own work (argument parsing, policy, netlink, opening the queue, syslog).
- Reproduce: \`npm run package && npm run deb -- --zstd && dpkg -i
  dist/qemu-net-helper_*_amd64.deb && npm run bench\` as root (then
  \`dpkg --purge qemu-net-helper\`). The machine is a shared virtual machine:
  runs of the same build differ by several milliseconds, hence medians of
  interleaved rounds and ratios within one run.
`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const write = !args.includes('--no-write');
  const runsArg = args.find((a) => /^\d+$/.test(a));
  const runs = runsArg ? Number(runsArg) : DEFAULT_RUNS;
  if (args.some((a) => a !== '--no-write' && !/^\d+$/.test(a)) || runs < 1 || runs > 1000) {
    throw new BenchError('usage: npm run bench -- [RUNS] [--no-write]; RUNS 1..1000, at least 30 to write BENCHMARKS.md');
  }
  requireTools();
  const work = mkdtempSync(join(tmpdir(), 'qnh-bench-'));
  const ns = `qnh-bench-${process.pid}`;
  let nsMade = false;
  try {
    process.stderr.write('bench: building the floor executable...\n');
    const floor = await buildExecutable(join(REPO, 'bench/floor-send-fd.ts'), { koffiPath: DEFAULT_KOFFI_NATIVE_PATH, outDir: join(work, 'bin') });
    const nothing = await buildExecutable(join(REPO, 'bench/floor-nothing.ts'), { koffiPath: DEFAULT_KOFFI_NATIVE_PATH, outDir: join(work, 'bin') });
    execFileSync('chmod', ['755', work, join(work, 'bin')]);
    const etc = join(work, 'etc');
    mkdirSync(join(etc, 'qemu'), { recursive: true });
    writeFileSync(join(etc, 'qemu/bridge.conf'), 'allow br0\n');
    if (existsSync('/etc/qemu/bridge.conf')) process.stderr.write('bench: note: this machine has /etc/qemu/bridge.conf; the benchmark uses its own, in an overlay\n');

    sh(['ip', 'netns', 'add', ns]);
    nsMade = true;
    const ipn = (...a: string[]) => sh(['ip', '-n', ns, ...a]);
    ipn('link', 'set', 'lo', 'up');
    ipn('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
    ipn('link', 'set', 'v0', 'up');
    ipn('link', 'set', 'v1', 'up');
    ipn('link', 'add', 'br0', 'type', 'bridge');
    ipn('link', 'set', 'br0', 'up');

    for (const exe of [HELPER, floor.path, nothing.path, ANCHOR]) evict(exe);
    const input: HarnessInput = {
      runs,
      warmup: WARMUP,
      programs: [
        // As in the README and the acceptance test: a device and the guest's MAC.
        { label: 'qemu-net-helper-vepa', argv: [HELPER, '--dev=v0', '--mac=52:54:00:be:0c:01', '--ifname=macvtapb{i}'], cleanup: ['ip', 'link', 'del', 'macvtapb{i}'] },
        { label: 'floor', argv: [floor.path] },
        { label: 'floor, _exit', argv: [floor.path, '--fast-exit'] },
        { label: 'floor, nothing', argv: [nothing.path], sendsFd: false },
        { label: 'qemu-bridge-helper', argv: [ANCHOR] },
      ],
    };
    process.stderr.write(`bench: ${runs} rounds...\n`);
    const script = 'mount -t overlay qnh-bench -o "lowerdir=$1:/etc" /etc && shift && exec ip netns exec "$@"';
    const r = spawnSync('unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', etc, ns,
      process.execPath, join(REPO, 'bench/harness.ts'), JSON.stringify(input)], { encoding: 'utf8', timeout: HARNESS_TIMEOUT_MS, maxBuffer: 16 * 2 ** 20 });
    if (r.status !== 0) throw new BenchError(`the harness failed: ${(r.stderr || String(r.error ?? r.signal)).trim()}`);
    const out = JSON.parse(r.stdout) as HarnessOutput;
    const what: Record<string, string> = {
      'qemu-net-helper-vepa': `installed ${HELPER}`,
      floor: 'trivial SEA, same Node + koffi, sends /dev/null, exits as Node does',
      'floor, _exit': 'the same, then _exit(2) as the helper does',
      'floor, nothing': 'a SEA built the same way that does nothing: no koffi, no fd',
      'qemu-bridge-helper': `C anchor, ${ANCHOR}`,
    };
    const rows: Row[] = input.programs.map((p) => ({
      label: p.label,
      what: what[p.label]!,
      ms: stats(out.ms[p.label]!),
      rssMiB: stats(out.rssKiB[p.label]!.map((k) => k / 1024)),
      runs: out.ms[p.label]!,
    }));
    const text = report(rows, runs, machine(), new Date().toISOString());
    process.stdout.write(text.split('## Machine')[0]!.replace(/^# Benchmarks\n\nWritten by .*\n\n/, ''));
    if (write && runs >= MIN_RUNS) {
      // Sections other benchmarks write (bench/ownership-scale.ts) are kept as they are.
      const previous = existsSync(join(REPO, 'BENCHMARKS.md')) ? readFileSync(join(REPO, 'BENCHMARKS.md'), 'utf8') : '';
      const others = previous.indexOf(OTHER_SECTIONS);
      writeFileSync(join(REPO, 'BENCHMARKS.md'), others < 0 ? text : `${text}${previous.slice(others)}`);
      process.stdout.write('bench: wrote BENCHMARKS.md\n');
    } else if (write) {
      process.stdout.write(`bench: fewer than ${MIN_RUNS} rounds: BENCHMARKS.md left as it was\n`);
    }
  } finally {
    if (nsMade) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench: ${err instanceof BenchError ? err.message : (err as Error).stack}\n`);
  process.exitCode = 1;
});
