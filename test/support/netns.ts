// Throwaway network namespaces for tests: unique names, veth pairs, and
// removal in t.teardown, so nothing survives a test, passed or failed.
// Deleting a namespace deletes every link in it.

import { execFileSync, spawnSync } from 'node:child_process';

let counter = 0;

/** Runs `ip` with arguments; throws with its stderr on failure. */
export function ip(...args: string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

export interface Netns {
  name: string;
  /** argv prefix that runs a command inside the namespace. */
  exec: string[];
  /** `ip -n NAME ...` */
  ip(...args: string[]): string;
  /** Names of the links in the namespace whose kind is macvtap. */
  macvtaps(): string[];
  /** JSON view of one link (`ip -d -j link show`), undefined if absent. */
  link(name: string): Record<string, any> | undefined;
  destroy(): void;
}

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

/** Creates a namespace removed at the end of test `t`. */
export function createNetns(t: Teardown, label = 'ns'): Netns {
  const name = `qnh-${label}-${process.pid}-${++counter}`;
  ip('netns', 'add', name);
  let destroyed = false;
  const ns: Netns = {
    name,
    exec: ['ip', 'netns', 'exec', name],
    ip: (...args) => ip('-n', name, ...args),
    macvtaps: () => {
      const links = JSON.parse(ip('-n', name, '-d', '-j', 'link', 'show')) as Array<Record<string, any>>;
      return links.filter((l) => l.linkinfo?.info_kind === 'macvtap').map((l) => l.ifname as string);
    },
    link: (linkName) => {
      const r = spawnSync('ip', ['-n', name, '-d', '-j', 'link', 'show', 'dev', linkName], { encoding: 'utf8' });
      if (r.status !== 0) return undefined;
      return (JSON.parse(r.stdout) as Array<Record<string, any>>)[0];
    },
    destroy: () => {
      if (destroyed) return;
      destroyed = true;
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    },
  };
  t.teardown(() => ns.destroy());
  ns.ip('link', 'set', 'lo', 'up');
  return ns;
}

/** A veth pair inside `ns`, both ends up: `lower` carries macvtaps, `peer` sees their frames. */
export function addVethPair(ns: Netns, lower = 'v0', peer = 'v1'): { lower: string; peer: string } {
  ns.ip('link', 'add', lower, 'type', 'veth', 'peer', 'name', peer);
  ns.ip('link', 'set', lower, 'up');
  ns.ip('link', 'set', peer, 'up');
  return { lower, peer };
}

/**
 * The end-to-end layout: namespace "host" has veth v0 (the macvtaps' lower
 * device), its peer v1 sits in namespace "peer" with `peerIp` (CIDR), both up.
 */
export function hostAndPeer(t: Teardown, label: string, peerIp: string): { host: Netns; peer: Netns } {
  const host = createNetns(t, `${label}host`);
  const peer = createNetns(t, `${label}peer`);
  host.ip('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1', 'netns', peer.name);
  host.ip('link', 'set', 'v0', 'up');
  peer.ip('addr', 'add', peerIp, 'dev', 'v1');
  peer.ip('link', 'set', 'v1', 'up');
  return { host, peer };
}
