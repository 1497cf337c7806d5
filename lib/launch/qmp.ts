// A small QMP client: JSON lines over a unix stream socket, synchronous, every
// wait bounded. Enough for hotplug (lib/launch/hotplug.ts): the greeting,
// qmp_capabilities, commands with ids (fds attached by SCM_RIGHTS to the same
// sendmsg as the command, as `getfd` wants), and events, which are collected
// while waiting for replies and can be waited for.
//
// QEMU's protocol (docs/interop/qmp-spec): the server greets with {"QMP":...};
// every command {"execute":NAME,"arguments":{...},"id":ID} is answered by
// {"return":...,"id":ID} or {"error":{"class":C,"desc":D},"id":ID}; events
// {"event":NAME,"data":{...},"timestamp":...} may come at any time in between.

import { AF_UNIX, MSG_DONTWAIT, MSG_NOSIGNAL, POLLIN, POLLOUT, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_STREAM } from '../constants.ts';
import * as libc from '../libc.ts';
import { peerCredentials, sendWithFds } from '../scm.ts';

/** One reply line longer than this is a protocol error (QEMU's replies to our commands are small). */
const MAX_LINE_BYTES = 1024 * 1024;
const SUN_PATH_MAX = 107;

/** QEMU answered a command with an error: its class and description. */
export class QmpError extends Error {
  readonly errorClass: string;
  readonly desc: string;
  readonly command: string;
  constructor(command: string, errorClass: string, desc: string) {
    super(`QEMU refused ${command}: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
}

function sockaddrUn(path: string): Buffer {
  const bytes = Buffer.byteLength(path);
  if (bytes === 0 || bytes > SUN_PATH_MAX || path.includes('\0')) throw new Error(`${JSON.stringify(path)} cannot be a unix socket path (1 to ${SUN_PATH_MAX} bytes, no NUL)`);
  const addr = Buffer.alloc(2 + bytes + 1);
  addr.writeUInt16LE(AF_UNIX, 0);
  addr.write(path, 2, 'utf8');
  return addr;
}

const nowMs = () => Number(process.hrtime.bigint() / 1_000_000n);

export class Qmp {
  readonly fd: number;
  /** The QEMU process at the other end (SO_PEERCRED: the process that made the listening socket). */
  readonly peer: { pid: number; uid: number; gid: number };
  /** Events received so far and not yet taken by waitEvent. */
  readonly events: QmpEvent[] = [];
  private buffered = Buffer.alloc(0);
  private nextId = 1;
  private closed = false;

  private constructor(fd: number) {
    this.fd = fd;
    this.peer = peerCredentials(fd);
  }

  /** Connects to QEMU's QMP socket, reads the greeting and leaves capabilities negotiation mode, within `timeoutMs`. */
  static connect(path: string, timeoutMs: number): Qmp {
    const fd = libc.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    let q: Qmp | undefined;
    try {
      libc.connect(fd, sockaddrUn(path));
      q = new Qmp(fd);
      const deadline = nowMs() + timeoutMs;
      const greeting = q.readMessage(deadline, 'the greeting');
      if (!('QMP' in greeting)) throw new Error(`${path} did not greet like QMP: ${JSON.stringify(greeting).slice(0, 200)}`);
      q.execute('qmp_capabilities', {}, { deadline });
      return q;
    } catch (err) {
      if (q) q.close();
      else libc.closeQuietly(fd);
      throw err;
    }
  }

  /**
   * Runs one command and returns what it returned; throws QmpError for QEMU's
   * error reply, Error for a timeout or a broken connection. `fds` travel in
   * the same sendmsg as the command (getfd takes them from there).
   */
  execute(name: string, args: Record<string, unknown> = {}, o: { fds?: readonly number[]; timeoutMs?: number; deadline?: number } = {}): unknown {
    const deadline = o.deadline ?? nowMs() + (o.timeoutMs ?? 10_000);
    const id = `qnh-${this.nextId++}`;
    const line = Buffer.from(JSON.stringify({ execute: name, arguments: args, id }) + '\n', 'utf8');
    this.send(line, o.fds ?? [], deadline, name);
    for (;;) {
      const msg = this.readMessage(deadline, `the reply to ${name}`);
      if ('event' in msg) {
        this.events.push({ event: String(msg.event), data: (msg.data ?? {}) as Record<string, unknown> });
        continue;
      }
      if (msg.id !== id) continue; // a reply to nothing we sent: ignore
      if ('error' in msg) {
        const e = (msg.error ?? {}) as { class?: unknown; desc?: unknown };
        throw new QmpError(name, String(e.class ?? 'GenericError'), String(e.desc ?? 'no description'));
      }
      return msg.return;
    }
  }

  /** Waits until an event `name` for which `match` holds has arrived (earlier ones included) and takes it; undefined at the deadline. */
  waitEvent(name: string, match: (data: Record<string, unknown>) => boolean, timeoutMs: number): QmpEvent | undefined {
    const deadline = nowMs() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex((e) => e.event === name && match(e.data));
      if (i >= 0) return this.events.splice(i, 1)[0];
      let msg: Record<string, unknown>;
      try {
        msg = this.readMessage(deadline, `event ${name}`);
      } catch (err) {
        if (err instanceof QmpTimeout) return undefined;
        throw err;
      }
      if ('event' in msg) this.events.push({ event: String(msg.event), data: (msg.data ?? {}) as Record<string, unknown> });
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.closeQuietly(this.fd);
  }

  private send(data: Buffer, fds: readonly number[], deadline: number, what: string): void {
    // One sendmsg for the whole line when fds go with it (QEMU attaches them to the command being read).
    for (;;) {
      try {
        if (fds.length > 0) sendWithFds(this.fd, data, fds);
        else {
          let off = 0;
          while (off < data.length) {
            off += libc.sendto(this.fd, data.subarray(off), MSG_NOSIGNAL, null);
          }
        }
        return;
      } catch (err) {
        if (!(err instanceof libc.SysError && err.code === 'EAGAIN')) throw new Error(`cannot send ${what} to QEMU: ${(err as Error).message}`);
        const left = deadline - nowMs();
        if (left <= 0) throw new QmpTimeout(`QEMU did not take ${what} in time`);
        libc.pollOne(this.fd, POLLOUT, left);
      }
    }
  }

  /** The next JSON object from QEMU, by `deadline`. */
  private readMessage(deadline: number, what: string): Record<string, unknown> {
    for (;;) {
      const nl = this.buffered.indexOf(0x0a);
      if (nl >= 0) {
        const text = this.buffered.subarray(0, nl).toString('utf8').trim();
        this.buffered = this.buffered.subarray(nl + 1);
        if (text === '') continue;
        let v: unknown;
        try {
          v = JSON.parse(text);
        } catch {
          throw new Error(`QEMU sent a line that is not JSON while we waited for ${what}: ${text.slice(0, 200)}`);
        }
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`QEMU sent ${text.slice(0, 200)} while we waited for ${what}`);
        return v as Record<string, unknown>;
      }
      if (this.buffered.length > MAX_LINE_BYTES) throw new Error(`QEMU sent more than ${MAX_LINE_BYTES} bytes without a newline`);
      const left = deadline - nowMs();
      if (left <= 0) throw new QmpTimeout(`QEMU did not send ${what} in time`);
      const revents = libc.pollOne(this.fd, POLLIN, left);
      if (revents === 0) continue;
      const chunk = Buffer.alloc(65536);
      let n: number;
      try {
        n = libc.recvfrom(this.fd, chunk, MSG_DONTWAIT, null).length;
      } catch (err) {
        if (err instanceof libc.SysError && err.code === 'EAGAIN') continue;
        throw new Error(`lost the connection to QEMU while waiting for ${what}: ${(err as Error).message}`);
      }
      if (n === 0) throw new Error(`QEMU closed the QMP connection while we waited for ${what}`);
      this.buffered = Buffer.concat([this.buffered, chunk.subarray(0, n)]);
    }
  }
}

/** A bounded wait ran out. */
export class QmpTimeout extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QmpTimeout';
  }
}
