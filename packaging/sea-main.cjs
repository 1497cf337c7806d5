'use strict';
// The main script of every single executable (packaging/build.ts). It only
// compiles the program and runs it; the program's own first code is the
// prologue in packaging/sea-entry.cjs.
//
// Why not let Node's SEA run the bundle directly: its code cache ("useCodeCache")
// is made without running anything, so it holds the bundle's top level only,
// and every function the program calls is then compiled on its first call
// (about 230 of them for a helper, the largest part of what a helper adds to
// Node's start-up). packaging/code-cache.cjs makes a cache of every function
// at build time; both the bundle and that cache are assets of the SEA blob,
// read-only parts of the executable, never files at run time.
//
// V8 checks the cache against the source and its own version and flags; a
// cache it rejects costs speed, not correctness (the source is compiled as
// usual). `--version` reports which happened, and the build checks it.

const { getAsset } = require('node:sea');
const { Script } = require('node:vm');

const source = getAsset('program.js', 'utf8');
let cachedData;
try {
  cachedData = Buffer.from(getAsset('program.cache'));
} catch {
  cachedData = undefined; // built without a code cache
}
const script = new Script(source, { filename: QNH_SCRIPT_NAME, cachedData });
const codeCache = cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'accepted';
script.runInThisContext()(exports, require, module, __filename, __dirname, codeCache);
