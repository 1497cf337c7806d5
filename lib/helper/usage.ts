// --help text, made from the program's description so that each helper
// lists exactly the options it accepts. The options' texts are in
// option-docs.ts, which the man pages are made from too.

import { VERSION } from '../version.ts';
import { hasPools, onlyPassthru, optionDocs, type HelpLine, type OptionGroup } from './option-docs.ts';
import type { HelperProgram } from './programs.ts';

/** The column the options' texts start in. */
const TEXT_COLUMN = 20;

export function usage(program: HelperProgram): string {
  const modes = program.modes.join('|');
  const target = hasPools(program) ? '(--dev=IFNAME | --network=NAME |\n         --pool=IF1,IF2,... | --pool=@NAME | --pf=IFNAME)' : '(--dev=IFNAME | --network=NAME)';
  const modeLine = program.modes.length > 1 ? `[--mode=${modes}] ` : '';
  const options = (group: OptionGroup) => optionDocs(program).filter((d) => d.group === group).flatMap((d) => d.help(program)).flatMap(helpLines);
  const lines = [
    `Usage: ${program.name} ${target}`,
    `         ${modeLine}[--mac=MAC] [--ifname=NAME]`,
    `         [--queues=N] [--vhost=on|off|try] [--allmulti=on|off]${onlyPassthru(program) ? '' : ' [--vlan=ID]'}`,
    `         (--fd=N [--use-vnet] | --socketpair=N | --probe [--json] | --persistent [--json])`,
    `       ${program.name} --list [--json] | --release=IFNAME | --gc | --check-config [--config=PATH]`,
    '',
    ...wrap(`${program.name} ${VERSION}: ${program.summary}. It creates a macvtap, opens its queue(s) and hands them over.`),
    '',
    ...options('request'),
    '',
    'A macvtap outlives its fds, so each link is tagged with its owner (the process',
    'at the other end of the socket, e.g. QEMU). A link is deleted only when it is',
    'proven unused: its owner has exited and no process holds one of its queues.',
    ...options('links'),
    '',
    'Who may use what is decided by /etc/qemu/net-helper.conf (net-helper.conf(5));',
    'root may do anything. Every decision is logged to syslog (authpriv).',
    ...options('policy'),
    '',
    `With QEMU:  -netdev tap,id=n0,helper="${program.name} --dev=eth0 --mac=52:54:00:12:34:56"`,
    '            -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56',
    'Exit status: 0 success, 1 failure or refusal (nothing is left behind),',
    '2 bad command line.',
    'DEBUG=qemu-net-helper:* traces each step on stderr.',
    '',
  ];
  return lines.join('\n');
}

/** "  --term     text", further lines of text under the first. */
function helpLines({ term, text }: HelpLine): string[] {
  if (text.length === 0) return [`  ${term}`];
  const first = `  ${term}`.padEnd(TEXT_COLUMN - 1) + ' ';
  return text.map((t, i) => (i === 0 ? first : ' '.repeat(TEXT_COLUMN)) + t);
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
