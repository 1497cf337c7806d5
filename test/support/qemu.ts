// Running Debian's qemu-system-x86_64 in a test namespace with an HMP
// monitor on stdin/stdout, bounded in time.

import { spawn } from 'node:child_process';
import type { Netns } from './netns.ts';

export const QEMU = 'qemu-system-x86_64';

/** Base arguments for a QEMU that starts paused, with no devices of its own, under TCG. */
export const PAUSED_MACHINE = ['-accel', 'tcg', '-machine', 'pc', '-nodefaults', '-display', 'none', '-serial', 'none', '-S', '-monitor', 'stdio'];

export interface MonitorRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs QEMU in `ns` with `args`, types `commands` into its monitor, and waits for it to exit. */
export function runQemuMonitor(ns: Netns, args: string[], commands: string[], timeoutMs = 60_000): Promise<MonitorRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(ns.exec[0]!, [...ns.exec.slice(1), QEMU, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.stdin.on('error', () => { /* QEMU may exit before reading its monitor input */ });
    child.stdin.end(commands.map((c) => c + '\n').join(''));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`QEMU did not exit within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
