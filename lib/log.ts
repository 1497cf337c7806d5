// Namespaced diagnostics (DEBUG=qemu-net-helper:*), through the `debug`
// package, loaded only when DEBUG is set: `debug` requires `tty`, which
// requires `net` and the stream modules, and compiling those cost a helper
// about 4 ms of every run that prints nothing.
//
// From source (ES modules) the package comes through createRequire; in the
// single executable esbuild bundles the literal require('debug') as a module
// that runs on first call.

import { createRequire } from 'node:module';
import type { Debugger } from 'debug';
import { writeErr } from './output.ts';

type Factory = (namespace: string) => Debugger;
let factory: Factory | null | undefined;

function loadDebug(): Factory | null {
  if (!process.env.DEBUG) return null;
  // In the bundle `require` exists, and esbuild bundles this literal call;
  // from source (an ES module) there is no `require`, so make one.
  const factory = (typeof require === 'function' ? require('debug') : createRequire(import.meta.url)('debug')) as Factory & { log: (...args: unknown[]) => void };
  // debug writes through process.stderr, which queues what a full pipe does
  // not take; helpers end with _exit(2), which would drop that queue. Write
  // synchronously instead (lib/output.ts).
  const { format } = process.getBuiltinModule('node:util');
  factory.log = (...args: unknown[]) => writeErr(format(...args) + '\n');
  return factory;
}

export type Log = (format: string, ...args: unknown[]) => void;

/** A logger for qemu-net-helper:`name`; free when DEBUG is unset. */
export function logger(name: string): Log {
  let debug: Debugger | null | undefined;
  return (format, ...args) => {
    if (debug === undefined) {
      if (factory === undefined) factory = loadDebug();
      debug = factory ? factory(`qemu-net-helper:${name}`) : null;
    }
    if (debug) debug(format, ...args);
  };
}
