// The helper executables: each is the same main with a different set of modes.

import type { ModeName } from '../modes.ts';

export interface HelperProgram {
  /** The executable's name, printed in front of every message. */
  name: string;
  /** Modes this executable may create; the first is the default. */
  modes: readonly [ModeName, ...ModeName[]];
  summary: string;
}

export const VEPA_HELPER: HelperProgram = {
  name: 'qemu-net-helper-vepa',
  modes: ['vepa', 'private'],
  summary: 'give a QEMU guest a macvtap in VEPA or private mode on a host network device',
};
