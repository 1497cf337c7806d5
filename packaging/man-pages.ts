// npm run man: writes the helpers' man pages, docs/man/qemu-net-helper-*.8,
// from the options' texts in lib/helper/option-docs.ts (which --help prints
// too) and each helper's description in lib/helper/programs.ts. The pages
// stay committed, so that people and packagers can read them; the packages
// install them from docs/man (datedManPage gives them their date), and
// test/packaging/man-pages.test.ts fails while one differs from what this writes.
//
// Usage: node packaging/man-pages.ts [--check]
//   --check  write nothing; exit 1 naming each page that is out of date

import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModeName } from '../lib/modes.ts';
import { hasPools, modesInWords, onlyPassthru, optionDocs } from '../lib/helper/option-docs.ts';
import { HELPER_PROGRAMS, type HelperProgram } from '../lib/helper/programs.ts';
import { REPO } from './build.ts';
import { HELPER_CAPS, LIBEXEC } from './deb.ts';

/** What each mode does, for DESCRIPTION (roff): the helpers' modes come from programs.ts. */
const MODE_MEANING: Record<ModeName, string> = {
  vepa: String.raw`In vepa mode every frame the guest sends leaves through the device, even one
for another macvtap on the same device (an adjacent switch with reflective
relay sends it back)`,
  private: 'in private mode macvtaps on the same device never reach\neach other',
  bridge: 'guests on macvtaps of the same device\nreach each other inside the host, without a Linux bridge',
  passthru: String.raw`which gives the guest a whole lower device: typically an SR\-IOV
virtual function.
Only one macvtap can sit on a device that has a passthru one`,
};

/** roff for a literal word: every hyphen a \-. */
const lit = (text: string) => text.replace(/-/g, '\\-');

function synopsis(p: HelperProgram): string {
  const modes = p.modes.length > 1 ? String.raw`.RB [ \-\-mode=${p.modes.join('|')} ]` + '\n' : '';
  // The passthru helper refuses --vlan (OPTIONS says why): not offered here.
  const vlan = onlyPassthru(p) ? '' : String.raw`.RB [ \-\-vlan=\c
.IR ID ]
`;
  const pools = hasPools(p) ? String.raw`.BR \-\-pool=\c
.IR IF1,IF2,... " | " \c
.BR \-\-pool=@\c
.IR NAME " | " \c
.BR \-\-pf=\c
.IR IFNAME " | " \c
` : '';
  return String.raw`.B ${p.name}
.RB ( \-\-dev=\c
.IR IFNAME " | " \c
${pools}.BR \-\-network=\c
.IR NAME )
${modes}.RB [ \-\-mac=\c
.IR MAC ]
.RB [ \-\-ifname=\c
.IR NAME ]
.RB [ \-\-queues=\c
.IR N ]
.RB [ \-\-vhost=on|off|try ]
.RB [ \-\-allmulti=on|off ]
${vlan}.RB ( \-\-fd=\c
.I N
.RB [ \-\-use\-vnet ]
|
.BI \-\-socketpair= N
|
.B \-\-probe
.RB [ \-\-json ]
|
.B \-\-persistent
.RB [ \-\-json ])
.br
.B ${p.name}
.RB ( \-\-list " [" \-\-json ]
|
.BI \-\-release= IFNAME
|
.BR \-\-gc )
.br
.B ${p.name}
.B \-\-check\-config
.RB [ \-\-config=\c
.IR PATH ]`;
}

function description(p: HelperProgram): string {
  const modes = p.modes.map((m, i) => `.B ${m}\nmode${i === 0 && p.modes.length > 1 ? ' (the default)' : ''}`).join(' or\n');
  const meanings = p.modes.map((m) => MODE_MEANING[m]).join('; ');
  let first: string;
  if (onlyPassthru(p)) {
    first = `${modes}, ${meanings}.\nThe device is named directly${hasPools(p) ? ', chosen from a pool, or taken from the free\nvirtual functions of a physical function' : ''}.`;
  } else if (p.modes.length > 1) {
    first = `${modes} on a host network device.\n${meanings}.`;
  } else {
    first = `${modes} on a host network device, so that ${meanings}.\nAs with every macvtap, the host itself cannot reach its guests through the\ndevice the macvtap sits on.`;
  }
  const hostReach = onlyPassthru(p) ? '' : String.raw`
.PP
The host itself cannot reach its guests through such a macvtap: frames from the
lower device's own network stack never loop back into its macvlans. Give the
host a macvlan of its own in bridge mode on the same device and move the
host's address to it
.RB ( "ip link add mac0 link eth0 type macvlan mode bridge" ).
Wireless lower devices are refused: the access point drops frames from MAC
addresses that have not associated with it.`;
  return String.raw`.B ${p.name}
creates a macvtap link in
${first}
.PP
The helper checks the request, creates the macvtap, opens its tap queue(s) and
hands the file descriptor(s) to the process that ran it over a unix socket
(SCM_RIGHTS), then exits. QEMU never needs to run as root. Whatever fails after
the link exists deletes the link again: a failed run leaves nothing behind.
.PP
A macvtap outlives its file descriptors, so each link is tagged with its owner:
the process at the other end of the socket (QEMU, a launcher), which must be
the caller's own. A link is deleted only when it is proven unused: its owner
has exited (or, for root, whoever the owner is) and no process holds one of its
queues. An owner the helper cannot see (another user's process under hidepid,
a process in another PID namespace) is unknown, never gone. A run collects only
what stands in its way;
.B \-\-gc
collects every unused link the caller may delete, and says why for each.${hostReach}`;
}

function options(p: HelperProgram): string {
  return optionDocs(p).flatMap((d) => d.man(p)).map((i) => `.TP\n${i.term}\n${i.body}`).join('\n');
}

/** The capabilities the packages give, from deb.ts's HELPER_CAPS, in roff. */
function capabilities(): string {
  const caps = HELPER_CAPS.replace(/=.*/, '').split(',').map((c) => c.toUpperCase());
  if (caps.length === 1) return `.B ${caps[0]}\n`;
  return caps.slice(0, -2).map((c) => `.BR ${c} ,\n`).join('') + `.B ${caps.at(-2)}\nand\n.B ${caps.at(-1)}\n`;
}

/** A helper's man page, as docs/man holds it (no date: the packages add it). */
export function manPage(p: HelperProgram): string {
  const path = `${LIBEXEC}/${p.name}`;
  return String.raw`.\" Man page for ${p.name}, written by packaging/man-pages.ts
.\" (npm run man) from lib/helper/option-docs.ts and lib/helper/programs.ts.
.\" Edit those, not this file.
.TH ${lit(p.name.toUpperCase())} 8 "" "qemu\-net\-helper" "System Administration"
.\" No hyphenation: groff must never break an option name at a line end.
.hy 0
.SH NAME
${p.name} \- ${p.title}
.SH SYNOPSIS
${synopsis(p)}
.SH DESCRIPTION
${description(p)}
.SH OPTIONS
${options(p)}
.SH EXAMPLES
With stock QEMU (the guest NIC's MAC must equal the ${onlyPassthru(p) ? "device's, which\n.B \\-\\-mac\nsets" : "macvtap's"}):
.PP
.nf
.RS
qemu\-system\-x86_64 ... \e
  \-netdev tap,id=n0,helper="${path} \-\-dev=eth0 \-\-mac=52:54:00:12:34:56" \e
  \-device virtio\-net\-pci,netdev=n0,mac=52:54:00:12:34:56
.RE
.fi
.PP
By hand, tracing every step:
.PP
.nf
.RS
DEBUG='qemu\-net\-helper:*' ${path} \-\-dev=eth0 \-\-probe
.RE
.fi
.SH EXIT STATUS
.TP
.B 0
Success: the file descriptors were sent (or, with
.BR \-\-probe ,
printed and cleaned up).
.TP
.B 1
Failure or refusal: one line on standard error says why and what to do; nothing
is left behind.
.TP
.B 2
Bad command line: nothing was attempted.
.SH ENVIRONMENT
.TP
.B DEBUG
.B DEBUG=qemu\-net\-helper:*
traces each step on standard error.
.PP
The installed helper runs with file capabilities (or setuid root), so Node
ignores
.B NODE_OPTIONS
and is built to accept no other node options.
.SH FILES
.TP
.I /etc/qemu/net\-helper.conf
Who may use the helpers; as installed, no one but root. See
.BR net\-helper.conf (5).
.TP
.I /usr/lib/qemu\-net\-helper/koffi.node
The native part of the FFI library the helper calls the C library through.
It is loaded only if it and every directory above it are owned by root and not
writable by group or others.
.SH SECURITY
The package gives the helper the capabilities
${capabilities()}as file capabilities, or makes it setuid root where file capabilities cannot be
set; an administrator's
.BR dpkg\-statoverride (1)
is honoured. The three helpers are one file under three names (hard links),
so an override for one applies to all.
/usr/share/doc/qemu\-net\-helper/security.md.gz says why each is needed.
.SH SEE ALSO
${HELPER_PROGRAMS.filter((o) => o !== p).map((o) => `.BR ${lit(o.name)} (8),\n`).join('')}.BR net\-helper.conf (5),
.BR qemu\-system\-x86_64 (1),
.BR ip\-link (8)
`;
}

export const manPagePath = (p: HelperProgram): string => join(REPO, 'docs/man', `${p.name}.8`);

function main(argv: readonly string[]): number {
  const check = argv.includes('--check');
  const unknown = argv.filter((a) => a !== '--check');
  if (unknown.length) {
    process.stderr.write(`man: unknown argument ${unknown[0]}; usage: node packaging/man-pages.ts [--check]\n`);
    return 2;
  }
  let stale = 0;
  for (const p of HELPER_PROGRAMS) {
    const file = manPagePath(p);
    const text = manPage(p);
    let old: string | undefined;
    try { old = readFileSync(file, 'utf8'); } catch { old = undefined; }
    if (old === text) continue;
    stale++;
    if (check) process.stderr.write(`man: docs/man/${p.name}.8 is out of date; run npm run man\n`);
    else {
      writeFileSync(file, text);
      process.stdout.write(`man: wrote docs/man/${p.name}.8\n`);
    }
  }
  return check && stale ? 1 : 0;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
