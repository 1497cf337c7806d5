// Which helper program the launcher runs for a macvtap, read from the
// programs themselves (HELPER_PROGRAMS: the modes each makes, the ways each
// takes to name the lower device) rather than from a table of the launcher's
// own, so the launcher cannot offer a mode no helper makes or send a mode to a
// helper that refuses it. Also the -net shorthands: a QEMU -net type for each
// helper.

import { BRIDGE_HELPER, HELPER_PROGRAMS, PASSTHROUGH_HELPER, VEPA_HELPER, type HelperProgram } from '../helper/programs.ts';
import type { ModeName } from '../modes.ts';

/** The launcher's name of a mode: the kernel's, with passthru spelled out (mode=passthru is read too). */
export type LaunchMode = Exclude<ModeName, 'passthru'> | 'passthrough';

export function launchModeName(mode: ModeName): LaunchMode {
  return mode === 'passthru' ? 'passthrough' : mode;
}

/** The kernel's (and the helpers' --mode) name of a mode. */
export function kernelModeName(mode: LaunchMode): ModeName {
  return mode === 'passthrough' ? 'passthru' : mode;
}

/** The helper that makes each mode, in HELPER_PROGRAMS' order. */
const HELPER_OF_MODE: ReadonlyMap<LaunchMode, HelperProgram> = (() => {
  const map = new Map<LaunchMode, HelperProgram>();
  for (const program of HELPER_PROGRAMS) {
    for (const mode of program.modes) {
      const other = map.get(launchModeName(mode));
      if (other) throw new Error(`both ${other.name} and ${program.name} make ${mode} macvtaps: mode= could not choose`);
      map.set(launchModeName(mode), program);
    }
  }
  return map;
})();

/** Every mode= the launcher takes (besides passthru for passthrough). */
export const LAUNCH_MODES: readonly LaunchMode[] = [...HELPER_OF_MODE.keys()];

/** Reads mode=TEXT; undefined when no helper makes that mode. */
export function parseLaunchMode(text: string): LaunchMode | undefined {
  const mode = text === 'passthru' ? 'passthrough' : text;
  return (LAUNCH_MODES as readonly string[]).includes(mode) ? (mode as LaunchMode) : undefined;
}

export function helperOfMode(mode: LaunchMode): HelperProgram {
  return HELPER_OF_MODE.get(mode)!;
}

/** The modes a helper makes, in the launcher's names. */
export function launchModesOf(program: HelperProgram): LaunchMode[] {
  return program.modes.map(launchModeName);
}

function shorthand(helper: HelperProgram): { readonly helper: HelperProgram; readonly modes: readonly LaunchMode[] } {
  return { helper, modes: launchModesOf(helper) };
}

/**
 * The -net types that make a macvtap: one a helper, named after it (but -net
 * bridge is QEMU's own), making that helper's modes.
 */
export const SHORTHANDS = {
  vepa: shorthand(VEPA_HELPER),
  'bridge-macvtap': shorthand(BRIDGE_HELPER),
  passthrough: shorthand(PASSTHROUGH_HELPER),
} as const;
export type Shorthand = keyof typeof SHORTHANDS;

export function isShorthand(type: string): type is Shorthand {
  return Object.hasOwn(SHORTHANDS, type);
}

/** The shorthand that runs `program`. */
export function shorthandOf(program: HelperProgram): Shorthand | undefined {
  return (Object.keys(SHORTHANDS) as Shorthand[]).find((s) => SHORTHANDS[s].helper === program);
}

/** How a -netdev macvtap names its lower device: the helpers' --dev, --network, --pool (a policy pool) or --pf. */
export type LowerKey = 'dev' | 'network' | 'pool' | 'pf';
export const LOWER_KEYS: readonly LowerKey[] = ['dev', 'network', 'pool', 'pf'];

/** Whether the helper takes the lower device named that way (every helper takes a policy network). */
export function helperTakes(program: HelperProgram, key: LowerKey): boolean {
  return key === 'network' || (program.targets as readonly string[]).includes(key);
}

/** The helpers that take the lower device named that way. */
export function helpersTaking(key: LowerKey): HelperProgram[] {
  return HELPER_PROGRAMS.filter((p) => helperTakes(p, key));
}

/**
 * The helper to run when mode= is left out: for a policy network the vepa
 * helper (the network sets the mode; a bridge or passthru network needs
 * mode=), else the one helper that takes the lower device named that way (a
 * pool or a PF: only passthru macvtaps take them); undefined when several do.
 */
export function defaultHelper(key: LowerKey): HelperProgram | undefined {
  if (key === 'network') return VEPA_HELPER;
  const takers = helpersTaking(key);
  return takers.length === 1 ? takers[0] : undefined;
}

/** "a, b or c" */
export function orList(words: readonly string[]): string {
  return words.length <= 1 ? words.join('') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}
