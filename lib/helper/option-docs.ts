// The helpers' options as --help (usage.ts) and the man pages
// (docs/man/qemu-net-helper-*.8, written by packaging/man-pages.ts) describe
// them: one entry an option, in the order both list them, with the short text
// --help prints and the roff the man page says it with. What differs between
// the helpers comes from their description in programs.ts (modes, ways of
// naming the device). Pure: no I/O. After a change here run `npm run man`;
// test/packaging/man-pages.test.ts fails while docs/man is out of date.

import { MAX_TAP_QUEUES } from '../constants.ts';
import type { ModeName } from '../modes.ts';
import type { HelperProgram } from './programs.ts';

/** One line of --help's option list: the option as written, and its text (one string a line). */
export interface HelpLine {
  term: string;
  text: readonly string[];
}

/** One .TP item of the man page's OPTIONS: the tag line and the paragraph, both roff. */
export interface ManItem {
  term: string;
  body: string;
}

/** Where --help lists an option: with the request, with the links' upkeep, or with the policy. */
export type OptionGroup = 'request' | 'links' | 'policy';

export interface OptionDoc {
  /** The names options.ts parses that this entry documents (aliases included). */
  options: readonly string[];
  group: OptionGroup;
  /** Whether `program` has the option (default: every helper). */
  applies?: (program: HelperProgram) => boolean;
  /** Its --help lines; none: --help does not list it. */
  help: (program: HelperProgram) => readonly HelpLine[];
  /** Its man page items. */
  man: (program: HelperProgram) => readonly ManItem[];
}

/** Whether the program names devices by pool and by physical function (passthrough). */
export const hasPools = (program: HelperProgram): boolean => program.targets.includes('pool');
/** Whether every mode of the program is passthru, which gives the guest the device's own MAC and takes no VLAN. */
export const onlyPassthru = (program: HelperProgram): boolean => program.modes.every((m) => m === 'passthru');

/** "vepa or private", "bridge": the program's modes in prose. */
export function modesInWords(modes: readonly ModeName[], font = (m: string) => m): string {
  const words = modes.map(font);
  return words.length === 1 ? words[0]! : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}

const line = (term: string, ...text: string[]): HelpLine => ({ term, text });
const item = (term: string, body: string): ManItem => ({ term, body });
const bold = (m: string) => String.raw`\fB${m}\fR`;

export const OPTION_DOCS: readonly OptionDoc[] = [
  {
    options: ['dev', 'arg-dev'],
    group: 'request',
    help: () => [line('--dev=IFNAME', "host network device to attach to (alias --arg-dev; QEMU's", '--br=NAME is used when --dev is absent)')],
    man: (p) => [item(String.raw`.BI \-\-dev= IFNAME`, onlyPassthru(p)
      ? String.raw`The host network device to attach the macvtap to (alias
.BR \-\-arg\-dev ).
When it is absent, QEMU's
.BI \-\-br= NAME
names a network of the policy or else the device, so that
.B helper=${p.name},br=eth0
works without a shell (and as libvirt's
.BR bridge_helper ).`
      : String.raw`The host network device to attach the macvtap to (alias
.BR \-\-arg\-dev ).
When it is absent, QEMU's
.BI \-\-br= NAME
names a network of the policy or else the device (QEMU and libvirt's
.B bridge_helper
pass it).
Over QEMU's protocol
.RB ( \-\-fd )
a request without
.B \-\-mac
is refused: the protocol never tells the helper the guest's MAC, and a
${modesInWords(p.modes)} macvtap delivers frames only to its own.`)],
  },
  {
    options: ['network'],
    group: 'request',
    help: () => [line('--network=NAME', 'a network defined in the policy: its device and mode')],
    man: () => [item(String.raw`.BI \-\-network= NAME`, String.raw`Use a network defined in
.IR /etc/qemu/net\-helper.conf :
it names the device and the mode, so that the policy can allow a network
without allowing its device in every mode.`)],
  },
  {
    options: ['pool'],
    group: 'request',
    applies: hasPools,
    help: () => [
      line('--pool=IF1,...', 'take the first listed device that has no macvtap on it'),
      line('--pool=@NAME', 'the same, for a pool defined in the policy'),
    ],
    man: () => [
      item(String.raw`.BI \-\-pool= IF1,IF2,...`, 'Take the first listed device that has no macvtap on it.'),
      item(String.raw`.BI \-\-pool=@ NAME`, String.raw`The same, for a pool defined in
.IR /etc/qemu/net\-helper.conf .`),
    ],
  },
  {
    options: ['pf'],
    group: 'request',
    applies: (p) => p.targets.includes('pf'),
    help: () => [line('--pf=IFNAME', 'take the first free SR-IOV virtual function of IFNAME')],
    man: () => [item(String.raw`.BI \-\-pf= IFNAME`, String.raw`Take the first free SR\-IOV virtual function of the physical function
.IR IFNAME .`)],
  },
  {
    options: ['mode'],
    group: 'request',
    help: (p) => [p.modes.length > 1
      ? line('--mode=MODE', `${p.modes.join('|')} (default ${p.modes[0]})`)
      : line(`--mode=${p.modes[0]}`, `the only mode, and the default: the macvtap is made in ${p.modes[0]} mode`)],
    man: (p) => [item(String.raw`.BI \-\-mode= MODE`, p.modes.length > 1
      ? `${bold(p.modes[0])} (the default) or ${modesInWords(p.modes.slice(1), bold)}.`
      : `Only ${bold(p.modes[0])}, the default; accepted so that one command line can name the\nmode for any helper.`)],
  },
  {
    options: ['mac'],
    group: 'request',
    help: (p) => [onlyPassthru(p)
      ? line('--mac=MAC', 'set this MAC on the device (default: keep its own); the', 'device gets its own MAC back when the macvtap is deleted')
      : line('--mac=MAC', "the macvtap's address; the guest NIC must use the same one", '(default: a random 52:54:00:xx:xx:xx)')],
    man: (p) => [item(String.raw`.BI \-\-mac= MAC`, onlyPassthru(p)
      ? `Set this MAC address on the device (default: keep its own). The device gets
its own address back when the macvtap is deleted. The guest NIC must use the
device's address.`
      : `The macvtap's MAC address (default: a random 52:54:00:xx:xx:xx).
The guest NIC must use the same address: macvlan delivers frames by
destination MAC.`)],
  },
  {
    options: ['ifname'],
    group: 'request',
    help: () => [line('--ifname=NAME', 'name of the new link: macvtap followed by at most 8', 'letters, digits, _ . -; one %d is replaced by a free', 'number (default macvtap%d)')],
    man: () => [item(String.raw`.BI \-\-ifname= NAME`, String.raw`The new link's name: at most 15 bytes, starting with
.B macvtap
and followed only by letters, digits,
.BR _ ,
.B .\&
and
.BR \- ;
one
.B %d
is replaced by a free number (default
.BR macvtap%d ).
Names outside that space are refused, so that a link a caller names can never
be taken for a device, network or pool of the policy (which may not use it).`)],
  },
  {
    options: ['queues'],
    group: 'request',
    help: () => [line('--queues=N', `open N queues, 1..${MAX_TAP_QUEUES} (more than 1 cannot go over --fd)`)],
    man: () => [item(String.raw`.BI \-\-queues= N`, String.raw`Open
.I N
tap queues, 1 to ${MAX_TAP_QUEUES}; more than one cannot go with
.BR \-\-fd ,
whose protocol carries one file descriptor (use
.BR \-\-socketpair ).`)],
  },
  {
    options: ['vhost'],
    group: 'request',
    help: () => [line('--vhost=MODE', 'on: hand over one /dev/vhost-net fd per queue or fail;', 'try (default): the same, or go on without and say why;', 'off: none. With --fd or --persistent none (on is refused).')],
    man: () => [item(String.raw`.BI \-\-vhost= MODE`, String.raw`.B on
hands over one /dev/vhost\-net file descriptor per queue or fails;
.B try
(the default) does the same or goes on without, saying why;
.B off
hands over none.
With
.B \-\-fd
(QEMU opens vhost\-net itself when asked) or
.B \-\-persistent
(whoever opens the link's queue opens vhost\-net too) none is handed over, and
.B on
is refused.`)],
  },
  {
    options: ['try-vhost'],
    group: 'request',
    help: () => [line('--try-vhost', 'the same as --vhost=try')],
    man: () => [item(String.raw`.B \-\-try\-vhost`, String.raw`The same as
.BR \-\-vhost=try .`)],
  },
  {
    options: ['allmulti'],
    group: 'request',
    help: () => [line('--allmulti=on|off', 'on (default, unless the policy turns it off): the macvtap', "gets every multicast frame, as a guest's IPv6 needs on a", 'real NIC; off: only broadcast and groups joined on it')],
    man: () => [item(String.raw`.BR \-\-allmulti=on | off`, String.raw`.B on
(the default, unless the policy rule says
.BR "allmulti off" )
sets IFF_ALLMULTI on the macvtap: macvlan then passes it every multicast frame,
which a guest's IPv6 (neighbour discovery for its own addresses) and multicast need
on a real NIC, and the lower device is put in allmulticast mode while the link is up.
.B off
leaves the guest broadcast and the groups joined on the macvtap itself.
The record says which
.RB ( allmulti= ).
The host's own IPv6 is always off on the macvtap
.RB ( disable_ipv6=1 ,
set before it is brought up;
.BR host_ipv6=off " in the record),"
so the host never answers neighbour discovery in the guest's place.`)],
  },
  {
    options: ['vlan'],
    group: 'request',
    help: (p) => [onlyPassthru(p)
      ? line('--vlan=ID', 'refused: a passthru macvtap would take the whole VLAN link', 'from the host (use another helper for a VLAN)')
      : line('--vlan=ID', 'put the macvtap on the 802.1Q VLAN ID (1..4094) of the', "device (made when missing; root's --gc removes it once", 'unused); the policy must allow the id (vlan IDS)')],
    man: (p) => [item(String.raw`.BI \-\-vlan= ID`, onlyPassthru(p)
      ? String.raw`Refused: this helper makes passthru macvtaps only, and a passthru macvtap on
a VLAN would take the whole VLAN link from the host and every other user.
The other helpers put a macvtap on the 802.1Q VLAN
.I ID
of the device; see
.BR qemu\-net\-helper\-vepa (8).`
      : String.raw`Put the macvtap on the 802.1Q VLAN
.I ID
(1 to 4094) of the device instead of the device itself.
An existing VLAN link of that id on the device is used, whoever made it; a missing one
is made
.RB ( qnhvlan N,
in device group 0x52564c4e, with the host's IPv6 off, then up) and deleted once no
macvtap or macvlan is on it, by root's runs only (the gc timer, or root's
.BR \-\-gc ", " \-\-release
and rollbacks).
Passthru on a VLAN is refused.
The policy must allow the id
.RB ( "vlan " \fIIDS\fR
in the rule, or a network defined with
.BR "vlan " \fIID\fR);
a rule without it grants untagged use only.
The record says
.BR vlan= .`)],
  },
  {
    options: ['fd'],
    group: 'request',
    help: (p) => [onlyPassthru(p)
      ? line('--fd=N', "QEMU's helper protocol: send one tap fd over unix socket N")
      : line('--fd=N', "QEMU's helper protocol: send one tap fd over unix socket N", '(needs --mac: the protocol does not carry the guest\'s MAC)')],
    man: () => [item(String.raw`.BI \-\-fd= N`, String.raw`QEMU's helper protocol: send one tap file descriptor, with one zero byte, over
the unix socket
.IR N ,
then exit.`)],
  },
  {
    options: ['use-vnet'],
    group: 'request',
    help: () => [line('--use-vnet', 'with --fd: enable the virtio-net header (QEMU adds this)')],
    man: () => [item(String.raw`.B \-\-use\-vnet`, String.raw`With
.BR \-\-fd :
enable the virtio\-net header on the queue (QEMU adds this option).`)],
  },
  {
    // --help says it under --dev.
    options: ['br'],
    group: 'request',
    help: () => [],
    man: () => [item(String.raw`.BI \-\-br= NAME`, String.raw`Added by QEMU; names the device when
.B \-\-dev
is absent.`)],
  },
  {
    options: ['socketpair'],
    group: 'request',
    help: () => [line('--socketpair=N', 'send the fds and a features record over unix socket N', '(see docs/protocol.md)')],
    man: () => [item(String.raw`.BI \-\-socketpair= N`, String.raw`The record protocol: send the file descriptors and a text record of what was
created over the unix socket
.I N
(one end of a connected socket pair, above file descriptor 2).
/usr/share/doc/qemu\-net\-helper/protocol.md.gz specifies it.`)],
  },
  {
    options: ['probe'],
    group: 'request',
    help: () => [line('--probe', 'do everything for real, print the record, delete the link')],
    man: () => [item(String.raw`.B \-\-probe`, String.raw`Do everything for real, print the record on standard output, and delete the
link: the way to reproduce a run by hand (replace
.BI \-\-fd= N
in its
.B ps
line with
.BR \-\-probe ).`)],
  },
  {
    options: ['persistent'],
    group: 'request',
    help: () => [line('--persistent', 'make a link that is yours until you --release it, with its', '/dev/tapN yours alone, for managers that open it themselves', '(libvirt: docs/libvirt.md); print its record, hand over nothing')],
    man: () => [item(String.raw`.B \-\-persistent`, String.raw`Make a link that belongs to the caller, not to a process: it stays until its
owner (or root) releases it with
.BR \-\-release ,
or its lower device goes away, and counts toward the caller's limit.
Its queue device
.BI /dev/tap N
is given to the caller (owner and group, mode 0600), so that a VM manager
running as the caller can open it itself (libvirt's
.B <interface type='ethernet'>
with
.BR managed='no' ;
see docs/libvirt.md).
Nothing is handed over; the record is printed (with
.B persistent=1
and
.BR device=/dev/tap N ).
The policy must allow it with the
.B persistent
qualifier.`)],
  },
  {
    options: ['json'],
    group: 'request',
    help: () => [line('--json', 'with --probe, --persistent or --list: print JSON')],
    man: () => [item(String.raw`.B \-\-json`, String.raw`With
.BR \-\-probe ,
.B \-\-persistent
or
.BR \-\-list :
print JSON.`)],
  },
  {
    options: ['list'],
    group: 'links',
    help: () => [line('--list', 'the helper links in this network namespace: owner, state, age')],
    man: () => [item(String.raw`.B \-\-list`, String.raw`List the helper\-made links in this network namespace: owner, state, age.`)],
  },
  {
    options: ['release'],
    group: 'links',
    help: () => [line('--release=IFNAME', 'delete one of them (its owner or root)')],
    man: () => [item(String.raw`.BI \-\-release= IFNAME`, 'Delete one of them (its owner or root may).')],
  },
  {
    options: ['gc'],
    group: 'links',
    help: () => [line('--gc', 'delete every unused one the caller may delete')],
    man: () => [item(String.raw`.B \-\-gc`, 'Delete every unused one the caller may delete, saying why for each.')],
  },
  {
    options: ['check-config'],
    group: 'policy',
    help: () => [line('--check-config', 'check the policy file and summarise it (a privileged', 'helper does it for root only)')],
    man: () => [item(String.raw`.B \-\-check\-config`, String.raw`Check the policy file (or
.BR \-\-config 's),
list every problem and summarise what it allows, then exit.
An installed helper does it for root only: the summary shows how the policy is
built.`)],
  },
  {
    options: ['config'],
    group: 'policy',
    help: () => [line('--config=PATH', 'another policy file (refused when installed with privileges)')],
    man: () => [item(String.raw`.BI \-\-config= PATH`, String.raw`Read this policy file instead of
.I /etc/qemu/net\-helper.conf
(an absolute path; refused when the helper runs with privileges).`)],
  },
  {
    options: ['help', 'version'],
    group: 'policy',
    help: () => [line('--help, --version')],
    man: () => [
      item(String.raw`.B \-\-help`, 'Print the options and exit.'),
      item(String.raw`.B \-\-version`, `Print the version and exit; run alone, a second line describes the runtime
(Node version, node options, where koffi's native module is loaded from).`),
    ],
  },
];

/** The entries `program` has, in order. */
export function optionDocs(program: HelperProgram): OptionDoc[] {
  return OPTION_DOCS.filter((d) => d.applies?.(program) ?? true);
}
