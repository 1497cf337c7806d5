// The libc calls the project needs, bound through koffi, and nothing else.
//
// Every wrapper throws SysError on failure, carrying errno, its symbolic
// name and the call, so that callers never see -1 or have to read errno
// themselves (koffi.errno() is only meaningful right after the failing call,
// which is why it is read here and nowhere else).
//
// Pointers to Node Buffers are taken with koffi.address(): the backing store
// of a Buffer does not move while the Buffer is referenced, and every caller
// below keeps its Buffers referenced for the duration of the call.

import { constants as osConstants } from 'node:os';
import {
  ERANGE, FD_CLOEXEC, F_GETFD, F_SETFD, LINUX_CAPABILITY_VERSION_3, SIG_DFL, SIG_ERR, SIG_IGN,
} from './constants.ts';
import koffi from './koffi-loader.ts';

/** The C library, loaded once; lib/launch/libc-exec.ts binds the launcher's extra calls from it. */
export const libc = koffi.load('libc.so.6');

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}
const EINTR = osConstants.errno.EINTR;

/** A failed system call: `call` failed with `errno` (`code` is its name, e.g. ENOENT). */
export class SysError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly call: string;
  constructor(call: string, errno: number, detail?: string) {
    const code = errnoNames.get(errno) ?? `errno ${errno}`;
    super(`${call}${detail ? ` ${detail}` : ''}: ${code} (${describeErrno(errno)})`);
    this.name = 'SysError';
    this.errno = errno;
    this.code = code;
    this.call = call;
  }
}

const strerror = libc.func('const char *strerror(int errnum)');

/** The C library's text for an errno value ("No such device"). */
export function describeErrno(errno: number): string {
  return String(strerror(errno));
}

/** The symbolic name of an errno value, such as "EEXIST". */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** A C call's result, or a SysError with errno when it is negative. */
export function check(call: string, result: number | bigint, detail?: string): number {
  if (Number(result) < 0) throw new SysError(call, koffi.errno(), detail);
  return Number(result);
}

/**
 * How often a call interrupted by a signal (EINTR) is repeated. A signal
 * with a handler interrupts a blocking call even with SA_RESTART (poll is
 * never restarted); Node installs such handlers (the profiler's SIGPROF, for
 * one). Bounded, so that a signal storm ends in an error, not a hang.
 */
const EINTR_RETRIES = 100;

/** check() for a call that may be interrupted: repeats it on EINTR. Never for close(2). */
function checkRestarting(call: string, invoke: () => number | bigint, detail?: string): number {
  for (let attempt = 0; ; attempt++) {
    const result = invoke();
    if (Number(result) >= 0) return Number(result);
    const errno = koffi.errno();
    if (errno !== EINTR || attempt >= EINTR_RETRIES) throw new SysError(call, errno, detail);
  }
}

const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  socketpair: libc.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)'),
  bind: libc.func('int bind(int fd, void *addr, uint32_t len)'),
  listen: libc.func('int listen(int fd, int backlog)'),
  connect: libc.func('int connect(int fd, void *addr, uint32_t len)'),
  getsockname: libc.func('int getsockname(int fd, void *addr, _Inout_ uint32_t *len)'),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, void *value, _Inout_ uint32_t *len)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, void *value, uint32_t len)'),
  sendto: libc.func('intptr_t sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t addrlen)'),
  recvfrom: libc.func('intptr_t recvfrom(int fd, void *buf, size_t len, int flags, void *addr, _Inout_ uint32_t *addrlen)'),
  sendmsg: libc.func('intptr_t sendmsg(int fd, void *msg, int flags)'),
  recvmsg: libc.func('intptr_t recvmsg(int fd, void *msg, int flags)'),
  open: libc.func('int open(const char *path, int flags, ...)'),
  close: libc.func('int close(int fd)'),
  ioctl: libc.func('int ioctl(int fd, unsigned long request, ...)'),
  poll: libc.func('int poll(void *fds, uint64_t nfds, int timeout)'),
  fcntl: libc.func('int fcntl(int fd, int cmd, ...)'),
  fstat: libc.func('int fstat(int fd, void *statbuf)'),
  fchown: libc.func('int fchown(int fd, uint32_t owner, uint32_t group)'),
  getuid: libc.func('uint32_t getuid()'),
  geteuid: libc.func('uint32_t geteuid()'),
  getgid: libc.func('uint32_t getgid()'),
  getegid: libc.func('uint32_t getegid()'),
  getgroups: libc.func('int getgroups(int size, void *list)'),
  setgroups: libc.func('int setgroups(size_t size, void *list)'),
  setresuid: libc.func('int setresuid(uint32_t ruid, uint32_t euid, uint32_t suid)'),
  setresgid: libc.func('int setresgid(uint32_t rgid, uint32_t egid, uint32_t sgid)'),
  getresuid: libc.func('int getresuid(_Out_ uint32_t *ruid, _Out_ uint32_t *euid, _Out_ uint32_t *suid)'),
  getresgid: libc.func('int getresgid(_Out_ uint32_t *rgid, _Out_ uint32_t *egid, _Out_ uint32_t *sgid)'),
  getauxval: libc.func('unsigned long getauxval(unsigned long type)'),
  prctl: libc.func('int prctl(int option, ...)'),
  signal: libc.func('intptr_t signal(int signum, intptr_t handler)'),
  getpwnam_r: libc.func('int getpwnam_r(const char *name, void *pwd, void *buf, size_t buflen, _Out_ void **result)'),
  getgrnam_r: libc.func('int getgrnam_r(const char *name, void *grp, void *buf, size_t buflen, _Out_ void **result)'),
  capset: libc.func('int capset(void *hdrp, void *datap)'),
  getrandom: libc.func('intptr_t getrandom(void *buf, size_t buflen, unsigned int flags)'),
  getpwuid_r: libc.func('int getpwuid_r(uint32_t uid, void *pwd, void *buf, size_t buflen, _Out_ void **result)'),
};

export function socket(domain: number, type: number, protocol: number): number {
  return check('socket', c.socket(domain, type, protocol));
}

/** Returns both ends of a new socket pair. */
export function socketpair(domain: number, type: number, protocol = 0): [number, number] {
  const sv = [-1, -1];
  check('socketpair', c.socketpair(domain, type, protocol, sv));
  return [sv[0]!, sv[1]!];
}

export function bind(fd: number, addr: Buffer): void {
  check('bind', c.bind(fd, addr, addr.length));
}

export function connect(fd: number, addr: Buffer): void {
  checkRestarting('connect', () => c.connect(fd, addr, addr.length));
}

export function listen(fd: number, backlog: number): void {
  check('listen', c.listen(fd, backlog));
}

/** Fills `addr` with the socket's address; returns its length. */
export function getsockname(fd: number, addr: Buffer): number {
  const len = [addr.length];
  check('getsockname', c.getsockname(fd, addr, len));
  return len[0]!;
}

/** Reads a socket option into a buffer of `size` bytes; returns the bytes the kernel wrote. */
export function getsockopt(fd: number, level: number, name: number, size: number): Buffer {
  const value = Buffer.alloc(size);
  const len = [size];
  check('getsockopt', c.getsockopt(fd, level, name, value, len));
  return value.subarray(0, len[0]!);
}

export function getsockoptInt(fd: number, level: number, name: number): number {
  return getsockopt(fd, level, name, 4).readInt32LE(0);
}

export function setsockopt(fd: number, level: number, name: number, value: Buffer): void {
  check('setsockopt', c.setsockopt(fd, level, name, value, value.length));
}

export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  const buf = Buffer.alloc(4);
  buf.writeInt32LE(value, 0);
  setsockopt(fd, level, name, buf);
}

export function sendto(fd: number, data: Buffer, flags: number, addr: Buffer | null): number {
  return checkRestarting('sendto', () => c.sendto(fd, data, data.length, flags, addr, addr ? addr.length : 0));
}

/** Receives into `buf`; returns the datagram's length (which exceeds buf.length when MSG_TRUNC is passed and it was cut). */
export function recvfrom(fd: number, buf: Buffer, flags: number, addr: Buffer | null): { length: number; addrLength: number } {
  const addrLength = [addr ? addr.length : 0];
  const length = checkRestarting('recvfrom', () => c.recvfrom(fd, buf, buf.length, flags, addr, addr ? addrLength : null));
  return { length, addrLength: addrLength[0]! };
}

// struct msghdr and struct iovec on x86_64, laid out by hand so that the
// pointers in them are the addresses of Buffers we own (koffi struct
// objects hand pointers back as BigInts that no longer point anywhere once
// the call returns; a msghdr is rebuilt for every recvmsg).
const MSGHDR_SIZE = 56;
const IOVEC_SIZE = 16;

function buildMsghdr(iov: Buffer, data: Buffer, control: Buffer | null): Buffer {
  iov.writeBigUInt64LE(koffi.address(data), 0);
  iov.writeBigUInt64LE(BigInt(data.length), 8);
  const msg = Buffer.alloc(MSGHDR_SIZE);
  msg.writeBigUInt64LE(0n, 0); // msg_name
  msg.writeUInt32LE(0, 8); // msg_namelen
  msg.writeBigUInt64LE(koffi.address(iov), 16); // msg_iov
  msg.writeBigUInt64LE(1n, 24); // msg_iovlen
  msg.writeBigUInt64LE(control && control.length > 0 ? koffi.address(control) : 0n, 32);
  msg.writeBigUInt64LE(BigInt(control ? control.length : 0), 40); // msg_controllen
  msg.writeInt32LE(0, 48); // msg_flags
  return msg;
}

export function sendmsg(fd: number, data: Buffer, control: Buffer | null, flags: number): number {
  const iov = Buffer.alloc(IOVEC_SIZE);
  const msg = buildMsghdr(iov, data, control);
  const n = checkRestarting('sendmsg', () => c.sendmsg(fd, msg, flags));
  keepAlive(iov, data, control);
  return n;
}

/** Receives one message; returns its data length, the control bytes the kernel wrote and msg_flags. */
export function recvmsg(fd: number, data: Buffer, control: Buffer, flags: number): { length: number; controlLength: number; msgFlags: number } {
  const iov = Buffer.alloc(IOVEC_SIZE);
  const msg = buildMsghdr(iov, data, control);
  const length = checkRestarting('recvmsg', () => c.recvmsg(fd, msg, flags));
  keepAlive(iov, data, control);
  return { length, controlLength: Number(msg.readBigUInt64LE(40)), msgFlags: msg.readInt32LE(48) };
}

// The Buffers referenced by raw addresses must stay reachable until the call
// returns; using them after the call guarantees that to the optimiser.
function keepAlive(...buffers: (Buffer | null)[]): void {
  for (const b of buffers) if (b) void b.length;
}

/** open(2). Never pass O_CREAT for device nodes: see lib/tap.ts. */
export function open(path: string, flags: number, mode = 0): number {
  return checkRestarting('open', () => c.open(path, flags, 'uint32_t', mode), path);
}

export function close(fd: number): void {
  check('close', c.close(fd));
}

/** Closes fds, ignoring errors: for cleanup paths that must not throw. */
export function closeQuietly(...fds: (number | undefined)[]): void {
  for (const fd of fds) {
    if (fd !== undefined && fd >= 0) c.close(fd);
  }
}

/** ioctl(2) whose argument is a pointer to `arg`. */
export function ioctlPtr(fd: number, request: number, arg: Buffer, name: string): number {
  return check(`ioctl(${name})`, c.ioctl(fd, request, 'void *', arg));
}

/** ioctl(2) whose argument is an integer passed by value. */
export function ioctlInt(fd: number, request: number, arg: number, name: string): number {
  return check(`ioctl(${name})`, c.ioctl(fd, request, 'unsigned long', arg));
}

/** poll(2) on one fd; returns the revents (0 on timeout). A negative timeout waits for ever. */
export function pollOne(fd: number, events: number, timeoutMs: number): number {
  const pfd = Buffer.alloc(8); // struct pollfd { int fd; short events; short revents; }
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(events, 4);
  // Restarted after a signal with what is left of the timeout, not all of it.
  // process.hrtime, not performance.now(): the global `performance` loads
  // node:perf_hooks on first use, which costs a helper 1.5 ms at start-up.
  const nowMs = () => Number(process.hrtime.bigint() / 1_000_000n);
  const deadline = nowMs() + timeoutMs;
  const remaining = () => (timeoutMs < 0 ? -1 : Math.max(0, deadline - nowMs()));
  const n = checkRestarting('poll', () => c.poll(pfd, 1, remaining()));
  return n === 0 ? 0 : pfd.readInt16LE(6);
}

export function fcntl(fd: number, cmd: number, arg = 0): number {
  return check('fcntl', c.fcntl(fd, cmd, 'int', arg));
}

/** The fields of struct stat this project looks at. */
export interface Stat {
  dev: bigint;
  ino: bigint;
  mode: number;
  uid: number;
  gid: number;
  rdev: bigint;
  size: bigint;
}

const STAT_SIZE = 144; // struct stat on x86_64

/** fchown(2): gives the open file to another owner (needs CAP_CHOWN for anyone but root). */
export function fchown(fd: number, uid: number, gid: number): void {
  check('fchown', c.fchown(fd, uid, gid));
}

export function fstat(fd: number): Stat {
  const buf = Buffer.alloc(STAT_SIZE);
  check('fstat', c.fstat(fd, buf));
  return {
    dev: buf.readBigUInt64LE(0),
    ino: buf.readBigUInt64LE(8),
    mode: buf.readUInt32LE(24),
    uid: buf.readUInt32LE(28),
    gid: buf.readUInt32LE(32),
    rdev: buf.readBigUInt64LE(40),
    size: buf.readBigInt64LE(48),
  };
}

export function getuid(): number {
  return c.getuid();
}

export function geteuid(): number {
  return c.geteuid();
}

export function getgid(): number {
  return c.getgid();
}

export function getegid(): number {
  return c.getegid();
}

/** getgroups(2): the caller's supplementary groups, as the kernel has them (not Node's process.getgroups(), which adds the effective gid). */
export function getgroups(): number[] {
  const n = check('getgroups', c.getgroups(0, null));
  const buf = Buffer.alloc(4 * Math.max(1, n));
  const got = check('getgroups', c.getgroups(n, buf));
  return Array.from({ length: got }, (_, i) => buf.readUInt32LE(4 * i));
}

/** glibc setgroups: applies to every thread of the process. */
export function setgroups(groups: readonly number[]): void {
  const buf = Buffer.alloc(4 * Math.max(1, groups.length));
  groups.forEach((g, i) => buf.writeUInt32LE(g, 4 * i));
  check('setgroups', c.setgroups(groups.length, buf));
}

export function setresuid(r: number, e: number, s: number): void {
  check('setresuid', c.setresuid(r, e, s));
}

export function setresgid(r: number, e: number, s: number): void {
  check('setresgid', c.setresgid(r, e, s));
}

export function getresuid(): [number, number, number] {
  const r = [0], e = [0], s = [0];
  check('getresuid', c.getresuid(r, e, s));
  return [r[0]!, e[0]!, s[0]!];
}

export function getresgid(): [number, number, number] {
  const r = [0], e = [0], s = [0];
  check('getresgid', c.getresgid(r, e, s));
  return [r[0]!, e[0]!, s[0]!];
}

export function getauxval(type: number): number {
  return Number(c.getauxval(type));
}

/** prctl(2) with integer arguments. Note: many options act on the calling thread only. */
export function prctl(option: number, a2 = 0, a3 = 0, a4 = 0, a5 = 0): number {
  return check('prctl', c.prctl(option, 'unsigned long', a2, 'unsigned long', a3, 'unsigned long', a4, 'unsigned long', a5));
}


/** Sets a signal's disposition to "ignore" (process-wide). */
export function ignoreSignal(signum: number): void {
  if (Number(c.signal(signum, SIG_IGN)) === SIG_ERR) throw new SysError('signal', koffi.errno());
}

const NSS_BUFFER = 16 * 1024;
const NSS_BUFFER_MAX = 1024 * 1024;

/** Runs a getXXnam_r-style lookup, growing the buffer on ERANGE; returns the struct or undefined when there is no such entry. */
function nssLookup(call: string, size: number, fn: (out: Buffer, buf: Buffer, result: unknown[]) => number): { out: Buffer; buf: Buffer } | undefined {
  for (let len = NSS_BUFFER; len <= NSS_BUFFER_MAX; len *= 4) {
    const out = Buffer.alloc(size);
    const buf = Buffer.alloc(len);
    const result: unknown[] = [null];
    const rc = fn(out, buf, result);
    if (rc === ERANGE) continue;
    if (rc !== 0) throw new SysError(call, rc);
    return result[0] ? { out, buf } : undefined;
  }
  throw new SysError(call, ERANGE);
}

/** The uid of a user name through NSS, undefined when there is no such user. struct passwd: pw_uid at offset 16. */
export function uidOfUser(name: string): number | undefined {
  return nssLookup('getpwnam_r', 48, (out, buf, res) => c.getpwnam_r(name, out, buf, buf.length, res))?.out.readUInt32LE(16);
}

/** The gid of a group name through NSS, undefined when there is no such group. struct group: gr_gid at offset 16. */
export function gidOfGroup(name: string): number | undefined {
  return nssLookup('getgrnam_r', 32, (out, buf, res) => c.getgrnam_r(name, out, buf, buf.length, res))?.out.readUInt32LE(16);
}

/** The user name of a uid through NSS, undefined when there is none. struct passwd: pw_name at offset 0. */
export function userNameOf(uid: number): string | undefined {
  const pw = nssLookup('getpwuid_r', 48, (out, buf, res) => c.getpwuid_r(uid, out, buf, buf.length, res));
  if (!pw) return undefined;
  // pw_name points into the buffer we gave glibc: read it from there.
  const offset = Number(pw.out.readBigUInt64LE(0) - koffi.address(pw.buf));
  if (offset < 0 || offset >= pw.buf.length) return undefined;
  const end = pw.buf.indexOf(0, offset);
  return pw.buf.toString('utf8', offset, end < 0 ? pw.buf.length : end);
}


/** capset(2) on the calling thread only: the kernel's capability sets are per thread. */
export const capsetBinding = {
  /** Sets the calling thread's effective and permitted sets (capability bit masks); inheritable becomes empty. */
  setCallingThread(effective: bigint, permitted: bigint): void {
    const hdr = Buffer.alloc(8);
    hdr.writeUInt32LE(LINUX_CAPABILITY_VERSION_3, 0); // version; pid 0 = calling thread
    const data = Buffer.alloc(24); // two struct __user_cap_data_struct { effective, permitted, inheritable }
    for (const [word, offset] of [[0n, 0], [32n, 12]] as const) {
      data.writeUInt32LE(Number((effective >> word) & 0xffffffffn), offset);
      data.writeUInt32LE(Number((permitted >> word) & 0xffffffffn), offset + 4);
    }
    check('capset', c.capset(hdr, data));
  },
  clearCallingThread(): void {
    capsetBinding.setCallingThread(0n, 0n);
  },
};

// ---------------------------------------------------------------------------
// Ending the process.

const exitCall = libc.func('void _exit(int status)');

/**
 * _exit(2): ends the process now, without Node's own exit (exit handlers,
 * heap and platform teardown, joining its worker threads). Only for a
 * program whose output is all written synchronously (lib/output.ts, which
 * the DEBUG trace uses too: process.stderr may queue what a full pipe does not take).
 */
export function exitImmediately(status: number): never {
  exitCall(status);
  throw new Error('_exit returned'); // unreachable
}

/** Sets or clears FD_CLOEXEC on one fd. */
export function setCloexec(fd: number, on: boolean): void {
  const flags = check('fcntl(F_GETFD)', c.fcntl(fd, F_GETFD, 'int', 0), `fd ${fd}`);
  const wanted = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
  if (wanted !== flags) check('fcntl(F_SETFD)', c.fcntl(fd, F_SETFD, 'int', wanted), `fd ${fd}`);
}

/** Whether `fd` is open. */
export function isOpenFd(fd: number): boolean {
  return Number(c.fcntl(fd, F_GETFD, 'int', 0)) >= 0;
}

/** Restores a signal's default disposition (an ignored signal stays ignored across execve). */
export function setSignalDefault(signum: number): void {
  if (Number(c.signal(signum, SIG_DFL)) === SIG_ERR) throw new SysError('signal', koffi.errno());
}

/** n random bytes from getrandom(2) (blocks only before the kernel's pool is first seeded). */
export function randomBytes(n: number): Buffer {
  const buf = Buffer.alloc(n);
  const got = check('getrandom', c.getrandom(buf, n, 0));
  if (got !== n) throw new Error(`getrandom returned ${got} of ${n} bytes`);
  return buf;
}
