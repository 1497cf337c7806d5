// Seeing frames on the wire: tcpdump in the test's namespace, started and
// confirmed listening before the frame is sent, bounded in time.

import { spawn } from 'node:child_process';
import type { Netns } from './netns.ts';

/** Runs tcpdump for one frame matching `filter` on `iface`, calls `send` once it listens, returns the printed line. */
export function captureOneFrame(ns: Netns, iface: string, filter: string, send: () => void, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(ns.exec[0]!, [...ns.exec.slice(1), 'tcpdump', '-i', iface, '-c', '1', '-nn', '-e', '-l', '-U', filter],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no frame matching "${filter}" on ${iface} within ${timeoutMs} ms (tcpdump: ${stderr.trim()})`));
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (!sent && stderr.includes('listening on')) {
        sent = true;
        try {
          send();
        } catch (err) {
          clearTimeout(timer);
          child.kill('SIGKILL');
          reject(err);
        }
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0 && stdout.trim()) resolve(stdout.trim());
      else reject(new Error(`tcpdump exited ${code}: ${stderr.trim()}`));
    });
  });
}

/** An Ethernet frame with an experimental EtherType (0x88b5), padded to the 60-byte minimum. */
export function testFrame(src: string, dst: string, text: string): Buffer {
  const mac = (s: string) => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
  const frame = Buffer.concat([mac(dst), mac(src), Buffer.from([0x88, 0xb5]), Buffer.from(text)]);
  return frame.length >= 60 ? frame : Buffer.concat([frame, Buffer.alloc(60 - frame.length)]);
}
