// The audit trail: one line per decision to syslog (facility authpriv),
// like doas. A datagram to /dev/log, sent without blocking: a missing or
// stuck syslog daemon never holds a helper up, and a failure to log is not a
// failure of the run (the line also goes to stderr for denials).

import { AF_UNIX, SOCK_CLOEXEC, SOCK_DGRAM, MSG_DONTWAIT, MSG_NOSIGNAL } from './constants.ts';
import * as libc from './libc.ts';

export const SYSLOG_PATH = '/dev/log';
const LOG_AUTHPRIV = 10;
export type Severity = 'warning' | 'notice' | 'info';
const SEVERITY: Record<Severity, number> = { warning: 4, notice: 5, info: 6 };
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * One audit field as `key=value`. A value made only of [A-Za-z0-9_.:,/@+-]
 * is written bare, anything else as a JSON string; values a caller chose
 * (names of devices, networks, pools and links, MACs, error texts) are always
 * quoted. Either way no value can contain a space or an '=' outside quotes,
 * so none can pass for a field of its own. Control characters become '?'.
 */
export function auditField(key: string, value: string, callerChosen = false): string {
  const clean = value.replace(/[\x00-\x1f\x7f]/g, '?');
  const bare = !callerChosen && clean !== '' && /^[A-Za-z0-9_.:,/@+-]*$/.test(clean);
  return `${key}=${bare ? clean : JSON.stringify(clean)}`;
}

/** The RFC 3164 message a syslog daemon expects on /dev/log. Pure. */
export function syslogMessage(tag: string, pid: number, severity: Severity, line: string, now = new Date()): Buffer {
  const pri = LOG_AUTHPRIV * 8 + SEVERITY[severity];
  const two = (n: number) => String(n).padStart(2, '0');
  const stamp = `${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, ' ')} ${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}`;
  const clean = line.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, 1800);
  return Buffer.from(`<${pri}>${stamp} ${tag}[${pid}]: ${clean}`, 'utf8');
}

function sockaddrUn(path: string): Buffer {
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  addr.write(path, 2, 'utf8');
  return addr.subarray(0, 2 + Buffer.byteLength(path) + 1);
}

/** Sends one line to syslog; returns whether it was accepted. Never throws, never blocks. */
export function audit(tag: string, severity: Severity, line: string, path = SYSLOG_PATH): boolean {
  let fd = -1;
  try {
    fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    libc.sendto(fd, syslogMessage(tag, process.pid, severity, line), MSG_DONTWAIT | MSG_NOSIGNAL, sockaddrUn(path));
    return true;
  } catch {
    return false;
  } finally {
    libc.closeQuietly(fd);
  }
}
