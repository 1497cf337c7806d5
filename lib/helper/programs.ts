// The helper executables: each is the same main with a different set of
// modes and of ways to name the lower device.

import type { ModeName } from '../modes.ts';

/** How a caller names the lower device: one device, an explicit pool, or an SR-IOV PF's VFs. */
export type TargetKind = 'dev' | 'pool' | 'pf';

export interface HelperProgram {
  /** The executable's name, printed in front of every message. */
  name: string;
  /** Modes this executable may create; the first is the default. */
  modes: readonly [ModeName, ...ModeName[]];
  /** Ways this executable accepts to name the lower device. */
  targets: readonly [TargetKind, ...TargetKind[]];
  /** What it does, for --help. */
  summary: string;
  /** The same, short: the man page's NAME line (what whatis and apropos show). */
  title: string;
}

export const VEPA_HELPER: HelperProgram = {
  name: 'qemu-net-helper-vepa',
  modes: ['vepa', 'private'],
  targets: ['dev'],
  summary: 'give a QEMU guest a macvtap in VEPA or private mode on a host network device',
  title: 'give a QEMU guest a macvtap in VEPA or private mode',
};

export const BRIDGE_HELPER: HelperProgram = {
  name: 'qemu-net-helper-bridge',
  modes: ['bridge'],
  targets: ['dev'],
  summary: 'give a QEMU guest a macvtap in bridge mode, so guests on the same device reach each other inside the host',
  title: 'give a QEMU guest a macvtap in bridge mode',
};

export const PASSTHROUGH_HELPER: HelperProgram = {
  name: 'qemu-net-helper-passthrough',
  modes: ['passthru'],
  targets: ['dev', 'pool', 'pf'],
  summary: 'give a QEMU guest a whole device (typically an SR-IOV virtual function) through a passthru macvtap',
  title: 'give a QEMU guest a whole device through a passthru macvtap',
};

export const HELPER_PROGRAMS: readonly HelperProgram[] = [VEPA_HELPER, BRIDGE_HELPER, PASSTHROUGH_HELPER];
