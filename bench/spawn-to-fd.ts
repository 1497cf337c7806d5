// npm run bench: how long a helper takes from spawn to fd received.
//
// In a throwaway namespace with a veth, runs qemu-net-helper-vepa through
// the client library N times (default 30), interleaved with a floor
// program (same Node, same client, sends /dev/null instead of making a
// macvtap), and reports median/min/max of each and the median ratio.
// Interleaving keeps the machine's drift out of the ratio.

import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { callHelper } from '../lib/client.ts';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const runs = Number(process.argv[2] ?? 30);
if (!Number.isInteger(runs) || runs < 1 || runs > 1000) throw new Error('usage: spawn-to-fd.ts [RUNS 1..1000]');
const ns = `qnh-bench-${process.pid}`;

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]! };
}

async function time(command: string[], args: string[]): Promise<number> {
  const start = performance.now();
  const r = await callHelper({ command, args, timeoutMs: 10_000 });
  const elapsed = performance.now() - start;
  r.close();
  return elapsed;
}

async function main() {
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['-n', ns, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1']);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'v0', 'up']);
    const exec = ['ip', 'netns', 'exec', ns];
    const helper = [...exec, process.execPath, `${REPO}helpers/qemu-net-helper-vepa.ts`];
    const floor = [...exec, process.execPath, `${REPO}bench/floor-send-fd.ts`];
    const helperMs: number[] = [];
    const floorMs: number[] = [];
    await time(helper, ['--dev=v0', '--ifname=warm0']); // warm the page cache
    execFileSync('ip', ['-n', ns, 'link', 'del', 'warm0']);
    for (let i = 0; i < runs; i++) {
      floorMs.push(await time(floor, []));
      helperMs.push(await time(helper, ['--dev=v0', `--ifname=bench${i}`]));
      execFileSync('ip', ['-n', ns, 'link', 'del', `bench${i}`]);
    }
    const h = stats(helperMs);
    const f = stats(floorMs);
    const fmt = (x: number) => x.toFixed(1).padStart(7);
    process.stdout.write(`spawn to fd received, ${runs} interleaved runs each (ms), ${new Date().toISOString()}\n`);
    process.stdout.write(`                          median     min     max\n`);
    process.stdout.write(`qemu-net-helper-vepa     ${fmt(h.median)} ${fmt(h.min)} ${fmt(h.max)}\n`);
    process.stdout.write(`floor (node, send fd)    ${fmt(f.median)} ${fmt(f.min)} ${fmt(f.max)}\n`);
    process.stdout.write(`median ratio helper/floor: ${(h.median / f.median).toFixed(2)}\n`);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

main().catch((err) => {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
