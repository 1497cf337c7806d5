// npm run bench:ownership [-- RUNS] [--no-write] [--installed]: what other links on the
// device cost a helper run, and what collecting a thousand stale links costs
// (issue 13), in one run, as ratios to the empty case measured in the same run.
//
// Cases, each RUNS runs (default 15) of `--dev=v0 --probe` by an unprivileged
// user (uid 64010) through a file-capability copy of the pinned node and the
// sources (the installed path's privileges, without building the package):
//   empty (measured first and last: the baseline is their mean, so slow
//   drift of the machine shows), 100 and 1000 live helper links on v0, 1000
//   stale ones. The user has a limit (the default 16), so every run lists and
//   judges every helper link on the host twice (before and after its own).
// Then `--gc` as root of 1000 stale links, three times.
// Targets: a run with 1000 links at most 3 x the empty case; --gc of 1000 stale
// under 30 s. Writes the "Ownership at scale" section of BENCHMARKS.md. Needs root.
// --installed: the same against the installed package's single executable
// (/usr/libexec/qemu-net-helper-vepa, file-capability or setuid as installed),
// with the bench's rule written into /etc/qemu/net-helper.conf for the run and
// the file put back afterwards; writes "Ownership at scale (installed)".

import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { encodeOwnerTag, markGroup } from '../lib/owner.ts';
import { ownPidNamespace, processStartTime } from '../lib/proc.ts';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const SECTION = '\n## Ownership at scale';
const INSTALLED_SECTION = '\n## Ownership at scale (installed)';
const INSTALLED_HELPER = '/usr/libexec/qemu-net-helper-vepa';
const SYSTEM_POLICY = '/etc/qemu/net-helper.conf';
const USER = 64_010;
const DEFAULT_RUNS = 15;
const TARGET_RATIO = 3;
const TARGET_GC_S = 30;
const RUN_TIMEOUT_MS = 60_000;

class BenchError extends Error {}

function sh(argv: string[], input?: string): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', input, timeout: 120_000, maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) throw new BenchError(`${argv.join(' ')}: ${(r.stderr || String(r.error ?? r.signal)).trim()}`);
  return r.stdout;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function timed(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const ms = performance.now() - start;
      if (code === 0) resolve(ms);
      else reject(new BenchError(`${argv.slice(-4).join(' ')} failed (${signal ?? code}): ${stderr.trim()}`));
    });
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const write = !args.includes('--no-write');
  const installed = args.includes('--installed');
  const runsArg = args.find((a) => /^\d+$/.test(a));
  const runs = runsArg ? Number(runsArg) : DEFAULT_RUNS;
  if (args.some((a) => a !== '--no-write' && a !== '--installed' && !/^\d+$/.test(a)) || runs < 3 || runs > 200) throw new BenchError('usage: npm run bench:ownership -- [RUNS 3..200] [--no-write] [--installed]');
  if (installed && !existsSync(INSTALLED_HELPER)) throw new BenchError(`--installed: ${INSTALLED_HELPER} is not there; install the package first (npm run package && npm run deb -- --zstd && dpkg -i dist/*.deb)`);
  if (process.getuid?.() !== 0) throw new BenchError('needs root (namespaces, macvtaps, setcap); run it as root');
  const work = mkdtempSync(join(tmpdir(), 'qnh-bench-own-'));
  chmodSync(work, 0o755);
  const ns = `qnh-bench-own-${process.pid}`;
  let nsMade = false;
  // The live links' owner: a process that stays alive for the whole run.
  const owner = spawn('sleep', ['3600'], { stdio: 'ignore' });
  const policyBefore = installed && existsSync(SYSTEM_POLICY) ? readFileSync(SYSTEM_POLICY) : undefined;
  try {
    const capNode = join(work, 'node');
    copyFileSync(process.execPath, capNode);
    chmodSync(capNode, 0o755);
    sh(['setcap', 'cap_chown,cap_dac_override,cap_net_admin=ep', capNode]);
    sh(['ip', 'netns', 'add', ns]);
    nsMade = true;
    const policy = join(work, 'policy.conf');
    writeFileSync(policy, `allow user ${USER} dev v0 netns ${ns}\n`, { mode: 0o644 });
    if (installed) writeFileSync(SYSTEM_POLICY, `${policyBefore ?? ''}\n# bench/ownership-scale.ts, removed after the run\nallow user ${USER} dev v0 netns ${ns}\n`);
    const ipn = (...a: string[]) => sh(['ip', '-n', ns, ...a]);
    ipn('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
    ipn('link', 'set', 'v0', 'up');

    const ownerStart = processStartTime(owner.pid!);
    if (!ownerStart) throw new BenchError('the owner process did not start');
    const now = Math.floor(Date.now() / 1000);
    /** ip -batch lines for n helper-made links on v0, tagged with a live owner or a dead one (pid 1 with a start time it never had). */
    const makeLinks = (n: number, live: boolean, prefix: string) => {
      const tag = encodeOwnerTag({ helper: 'qemu-net-helper-vepa', uid: 0, pid: live ? owner.pid! : 1, start: live ? ownerStart : '1', created: now - 3600, pidns: ownPidNamespace() });
      const lines = Array.from({ length: n }, (_, i) => `link add link v0 name ${prefix}${i} group ${markGroup(live ? owner.pid! : 1)} type macvtap mode vepa\nlink set ${prefix}${i} alias "${tag}"`);
      sh(['ip', '-n', ns, '-batch', '-'], lines.join('\n') + '\n');
    };
    const clear = () => {
      // Our test links are all in the helpers' group space; delete them by their names' prefix, one batch.
      const names = sh(['ip', '-n', ns, '-o', 'link', 'show', 'type', 'macvtap']).split('\n').map((l) => /^\d+: ([^@:]+)/.exec(l)?.[1]).filter((x): x is string => !!x);
      if (names.length) sh(['ip', '-n', ns, '-batch', '-'], names.map((n) => `link del ${n}`).join('\n') + '\n');
    };
    const helperRun = ['ip', 'netns', 'exec', ns, 'setpriv', `--reuid=${USER}`, `--regid=${USER}`, '--clear-groups', 'env', '-i', 'PATH=/usr/bin:/bin',
      ...(installed ? [INSTALLED_HELPER] : [capNode, join(REPO, 'test/support/helper-with-seams.ts'), 'qemu-net-helper-vepa', `--seam-policy=${policy}`, '--']), '--dev=v0', '--probe'];
    const gcRun = ['ip', 'netns', 'exec', ns, 'env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...(installed ? [INSTALLED_HELPER] : [process.execPath, join(REPO, 'helpers/qemu-net-helper-vepa.ts')]), '--gc'];
    const measure = async (label: string): Promise<number[]> => {
      process.stderr.write(`bench: ${label}: ${runs} runs\n`);
      await timed(helperRun); // warm-up
      const ms: number[] = [];
      for (let i = 0; i < runs; i++) ms.push(await timed(helperRun));
      return ms;
    };

    const results: Array<[string, number[]]> = [];
    results.push(['empty (first)', await measure('empty')]);
    makeLinks(100, true, 'la');
    results.push(['100 live links', await measure('100 live')]);
    makeLinks(900, true, 'lb');
    results.push(['1000 live links', await measure('1000 live')]);
    clear();
    makeLinks(1000, false, 'sa');
    results.push(['1000 stale links', await measure('1000 stale')]);
    clear();
    results.push(['empty (last)', await measure('empty again')]);

    const gcS: number[] = [];
    for (let i = 0; i < 3; i++) {
      makeLinks(1000, false, `g${i}x`);
      const start = performance.now();
      sh(gcRun);
      gcS.push((performance.now() - start) / 1000);
      const left = sh(['ip', '-n', ns, '-o', 'link', 'show', 'type', 'macvtap']).trim();
      if (left) throw new BenchError(`--gc left links behind: ${left.split('\n').length}`);
    }

    const base = (median(results[0]![1]) + median(results[4]![1])) / 2;
    const f = (x: number) => x.toFixed(1);
    const rows = results.map(([label, ms]) => `| ${label} | ${f(median(ms))} | ${f(Math.min(...ms))} | ${f(Math.max(...ms))} | ${(median(ms) / base).toFixed(2)} |`);
    const worst = Math.max(...results.map(([, ms]) => median(ms) / base));
    const gcMedian = median(gcS);
    const heading = installed ? INSTALLED_SECTION : SECTION;
    const section = `${heading}

Written by \`npm run bench:ownership${installed ? ' -- --installed' : ''}\` (bench/ownership-scale.ts); ${runs} runs per case, ${new Date().toISOString()}, kernel ${sh(['uname', '-r']).trim()}.

A helper run (\`--dev=v0 --probe\`, by an unprivileged user with the default limit, so it lists and judges every helper link twice) with other helper links on the device:

| case | median ms | min ms | max ms | / empty |
|---|---:|---:|---:|---:|
${rows.join('\n')}

- worst case / empty (baseline: mean of the two empty medians, ${f(base)} ms): **${worst.toFixed(2)}** (target at most ${TARGET_RATIO}: ${worst <= TARGET_RATIO ? 'met' : '**not met**'})
- \`--gc\` (root) of 1000 stale links: median **${gcMedian.toFixed(2)} s** (runs ${gcS.map((s) => s.toFixed(2)).join(', ')}; target under ${TARGET_GC_S} s: ${gcMedian < TARGET_GC_S ? 'met' : '**not met**'})
- Method: the links are made with \`ip -batch\`, tagged as helper links (live: owned by a running process; stale: by one that is gone) and not held by any process. ${installed ? `The helper is the installed single executable (${INSTALLED_HELPER}), so the baseline is the product's own start.` : 'The helper runs from the sources under a file-capability copy of the pinned node (not the installed single executable), so absolute times include Node compiling the sources; the ratios are what the links add (`-- --installed` measures the package).'} A request's own collection takes only what stands in its way (none of these, for a vepa request), within a budget; \`--gc\` deletes what it collects in one RTM_DELLINK of a device group. Reproduce: \`npm run bench:ownership${installed ? ' -- --installed' : ''}\` as root${installed ? ', with the package installed' : ''}.
`;
    process.stdout.write(section);
    if (write) {
      const path = join(REPO, 'BENCHMARKS.md');
      const previous = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
      // Replace this section (up to the next one), or append it.
      const at = previous.indexOf(`${heading}\n`);
      const next = at < 0 ? -1 : previous.indexOf('\n## ', at + heading.length);
      const rest = next < 0 ? '' : previous.slice(next);
      writeFileSync(path, (at < 0 ? previous.replace(/\n*$/, '\n') : previous.slice(0, at)) + section + rest);
      process.stdout.write('bench: wrote the section to BENCHMARKS.md\n');
    }
  } finally {
    if (installed) {
      if (policyBefore !== undefined) writeFileSync(SYSTEM_POLICY, policyBefore);
      else rmSync(SYSTEM_POLICY, { force: true });
    }
    owner.kill('SIGKILL');
    if (nsMade) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench: ${err instanceof BenchError ? err.message : (err as Error).stack}\n`);
  process.exitCode = 1;
});
