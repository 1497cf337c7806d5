// Macvtap modes: the names people and records use, and the kernel's values.

import { MACVLAN_MODE_BRIDGE, MACVLAN_MODE_PASSTHRU, MACVLAN_MODE_PRIVATE, MACVLAN_MODE_VEPA } from './constants.ts';

export const MODE_VALUES = {
  private: MACVLAN_MODE_PRIVATE,
  vepa: MACVLAN_MODE_VEPA,
  bridge: MACVLAN_MODE_BRIDGE,
  passthru: MACVLAN_MODE_PASSTHRU,
} as const;

export type ModeName = keyof typeof MODE_VALUES;

export function modeName(value: number): ModeName | undefined {
  for (const [name, v] of Object.entries(MODE_VALUES)) if (v === value) return name as ModeName;
  return undefined;
}
