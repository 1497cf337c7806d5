'use strict';
// Build step (packaging/build.ts runs it with the pinned node):
//   node code-cache.cjs SOURCE.js SCRIPT_NAME CACHE.bin
// writes V8's code cache for SOURCE.js holding the bytecode of every function,
// not only the top level.
//
// V8 compiles a function when it is first called ("lazy"), and a code cache
// holds only what was compiled when it was made. Compiling with --no-lazy
// compiles everything; but the flag is part of the flag hash a cache is
// checked against, so it is turned back off before the cache is made: the
// cache then matches a node running with default flags (the executables),
// and packaging/sea-main.cjs finds every function already compiled.

const { readFileSync, writeFileSync } = require('node:fs');
const { setFlagsFromString } = require('node:v8');
const { Script } = require('node:vm');

const [sourcePath, scriptName, cachePath] = process.argv.slice(2);
if (!sourcePath || !scriptName || !cachePath) {
  process.stderr.write('usage: node code-cache.cjs SOURCE.js SCRIPT_NAME CACHE.bin\n');
  process.exit(2);
}
const source = readFileSync(sourcePath, 'utf8');
setFlagsFromString('--no-lazy');
const script = new Script(source, { filename: scriptName });
setFlagsFromString('--lazy');
const cache = script.createCachedData();
// Whether V8 accepts it is checked where it counts: the built executable
// reports it in --version, and the build verifies that.
writeFileSync(cachePath, cache);
process.stdout.write(`${cache.length}\n`);
