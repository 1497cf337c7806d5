// --help text, made from the program's description so that each helper
// lists exactly the options it accepts. Keep in step with docs/ and the man pages.

import { VERSION } from '../version.ts';
import type { HelperProgram } from './programs.ts';

export function usage(program: HelperProgram): string {
  const modes = program.modes.join('|');
  const pools = program.targets.includes('pool');
  const target = pools ? '(--dev=IFNAME | --network=NAME |\n         --pool=IF1,IF2,... | --pool=@NAME | --pf=IFNAME)' : '(--dev=IFNAME | --network=NAME)';
  const modeLine = program.modes.length > 1 ? ` [--mode=${modes}]` : '';
  const lines = [
    `Usage: ${program.name} ${target}`,
    `         ${modeLine ? modeLine.trim() + ' ' : ''}[--mac=MAC] [--ifname=NAME]`,
    `         [--queues=N] [--vhost=on|off|try]`,
    `         (--fd=N [--use-vnet] | --socketpair=N | --probe [--json] | --persistent [--json])`,
    `       ${program.name} --list [--json] | --release=IFNAME | --gc | --check-config [--config=PATH]`,
    '',
    ...wrap(`${program.name} ${VERSION}: ${program.summary}. It creates a macvtap, opens its queue(s) and hands them over.`),
    '',
    '  --dev=IFNAME      host network device to attach to (alias --arg-dev; QEMU\'s',
    '                    --br=NAME is used when --dev is absent)',
    '  --network=NAME    a network defined in the policy: its device and mode',
  ];
  if (pools) {
    lines.push(
      '  --pool=IF1,...    take the first listed device that has no macvtap on it',
      '  --pool=@NAME      the same, for a pool defined in the policy',
      '  --pf=IFNAME       take the first free SR-IOV virtual function of IFNAME',
    );
  }
  if (program.modes.length > 1) lines.push(`  --mode=MODE       ${modes} (default ${program.modes[0]})`);
  else lines.push(`  --mode=${program.modes[0]}${' '.repeat(Math.max(1, 11 - program.modes[0].length))}the only mode, and the default: the macvtap is made in ${program.modes[0]} mode`);
  lines.push(
    program.modes[0] === 'passthru'
      ? '  --mac=MAC         set this MAC on the device (default: keep its own); the\n                    device gets its own MAC back when the macvtap is deleted'
      : '  --mac=MAC         the macvtap\'s address; the guest NIC must use the same one\n                    (default: a random 52:54:00:xx:xx:xx)',
    '  --ifname=NAME     name of the new link: macvtap followed by at most 8',
    '                    letters, digits, _ . -; one %d is replaced by a free',
    '                    number (default macvtap%d)',
    '  --queues=N        open N queues, 1..256 (more than 1 needs --socketpair)',
    '  --vhost=MODE      on: hand over one /dev/vhost-net fd per queue or fail;',
    '                    try (default): the same, or go on without and say why;',
    '                    off: none. Ignored with --fd (QEMU opens vhost itself).',
    '  --try-vhost       the same as --vhost=try',
    '  --allmulti=on|off on (default, unless the policy turns it off): the macvtap',
    '                    gets every multicast frame, as a guest\'s IPv6 needs on a',
    '                    real NIC; off: only broadcast and groups joined on it',
    '  --vlan=ID         put the macvtap on the 802.1Q VLAN ID (1..4094) of the',
    '                    device (made when missing; root\'s --gc removes it once',
    '                    unused); the policy must allow the id (vlan IDS)',
    '  --fd=N            QEMU\'s helper protocol: send one tap fd over unix socket N',
    '  --use-vnet        with --fd: enable the virtio-net header (QEMU adds this)',
    '  --socketpair=N    send the fds and a features record over unix socket N',
    '                    (see docs/protocol.md)',
    '  --probe           do everything for real, print the record, delete the link',
    '  --persistent      make a link that is yours until you --release it, with its',
    '                    /dev/tapN yours alone, for managers that open it themselves',
    '                    (libvirt: docs/libvirt.md); print its record, hand over nothing',
    '  --json            with --probe, --persistent or --list: print JSON',
    '',
    'A macvtap outlives its fds, so each link is tagged with its owner (the process',
    'at the other end of the socket, e.g. QEMU). A link is deleted only when it is',
    'proven unused: its owner has exited and no process holds one of its queues.',
    '  --list            the helper links in this network namespace: owner, state, age',
    '  --release=IFNAME  delete one of them (its owner or root)',
    '  --gc              delete every unused one the caller may delete',
    '',
    'Who may use what is decided by /etc/qemu/net-helper.conf (net-helper.conf(5));',
    'root may do anything. Every decision is logged to syslog (authpriv).',
    '  --check-config    check the policy file and summarise it',
    '  --config=PATH     another policy file (refused when installed with privileges)',
    '  --help, --version',
    '',
    `With QEMU:  -netdev tap,id=n0,helper="${program.name} --dev=eth0 --mac=52:54:00:12:34:56"`,
    '            -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56',
    'Exit status: 0 success, 1 failure or refusal (nothing is left behind),',
    '2 bad command line.',
    'DEBUG=qemu-net-helper:* traces each step on stderr.',
    '',
  );
  return lines.join('\n');
}

/** Word-wraps text at 78 columns. */
function wrap(text: string, width = 78): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}
