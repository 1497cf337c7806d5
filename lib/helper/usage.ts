// --help text. Keep in step with docs/ and the man pages.

import { VERSION } from '../version.ts';
import type { HelperProgram } from './programs.ts';

export function usage(program: HelperProgram): string {
  const modes = program.modes.join('|');
  return `Usage: ${program.name} --dev=IFNAME [--mode=${modes}] [--mac=MAC] [--ifname=NAME]
         (--fd=N [--use-vnet] | --socketpair=N | --probe [--json])

${program.name} ${VERSION}: ${program.summary}.
It creates a macvtap on IFNAME, opens a queue of it and hands the queue over.

  --dev=IFNAME      host network device to attach to (alias --arg-dev; QEMU's
                    --br=NAME is used when --dev is absent)
  --mode=MODE       ${modes} (default ${program.modes[0]})
  --mac=MAC         the macvtap's address; the guest NIC must use the same one
                    (default: a random 52:54:00:xx:xx:xx)
  --ifname=NAME     name of the new link, at most 15 bytes; one %d is replaced
                    by a free number (default macvtap%d)
  --fd=N            QEMU's helper protocol: send one tap fd over unix socket N
  --use-vnet        with --fd: enable the virtio-net header (QEMU adds this)
  --socketpair=N    send the tap fd and a features record over unix socket N
                    (see docs/protocol.md)
  --probe           do everything for real, print the record, delete the link
  --json            with --probe: print the record as JSON
  --try-vhost       accepted for compatibility; this version hands over no
                    vhost-net fd (vhost=0 in the record)
  --help, --version

With QEMU:  -netdev tap,id=n0,helper="${program.name} --dev=eth0 --mac=52:54:00:12:34:56"
            -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56
Until the policy file exists, only root may run it. Exit status: 0 success,
1 failure (nothing is left behind), 2 bad command line.
DEBUG=qemu-net-helper:* traces each step on stderr.
`;
}
