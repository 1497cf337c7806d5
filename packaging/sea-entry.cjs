'use strict';
// The first code of the program in a single executable (packaging/build.ts
// bundles it with one program: QNH_PROGRAMS, QNH_REFUSE_PRIVILEGES, QNH_KOFFI_* are replaced at build
// time, and require('qnh:program') is that program's entry file). Before it,
// packaging/sea-main.cjs has only compiled the bundle; QNH_CODE_CACHE is a
// parameter it passes: whether V8 accepted the code cache.
//
// The installed helpers run with file capabilities or setuid root, so the
// kernel sets AT_SECURE: Node then ignores NODE_OPTIONS (and the SEA config
// says "execArgvExtension": "none" anyway), but its bootstrap still acts on
// some variables before any of our code runs. This prologue undoes what it
// can, before any module of the program is evaluated:
// - NODE_V8_COVERAGE: coverage collection started; stopping it here means
//   nothing is written at exit (a root-owned file where the caller says).
// - NODE_CHANNEL_FD: an IPC channel on a caller-chosen fd; closed here.
// SIGUSR1 (which would open the inspector) is handled by the SEA config's
// "execArgv": ["--disable-sigusr1"]; we refuse to run without it.

// Only when the variable is set: node:v8 costs 3 ms to load (lib/harden.ts,
// stopCoverageIfStarted, says why that is enough).
if (process.env.NODE_V8_COVERAGE !== undefined) require('node:v8').stopCoverage();

const { isSea } = require('node:sea');
const { oneLine } = require('../lib/errors.ts');
const { programFromExecutable, unknownExecutableMessage } = require('../lib/executable.ts');
// Synchronous writes: a closed stdout is an error at the call, not a crash later.
const { writeErr, writeOut } = require('../lib/output.ts');
const { versionLine } = require('../lib/version.ts');
const { dropSetuidRoot } = require('../lib/early.ts');
const { PRIVILEGED_REFUSAL, startedPrivileged } = require('../lib/secure-exec.ts');

// QNH_PROGRAMS: the names this executable answers to. The helpers share one
// executable, installed under each name as a hard link; which one runs is
// the name the kernel executed (lib/executable.ts), never argv[0].
const PROGRAM = programFromExecutable(QNH_PROGRAMS);

function refuse(program, cause, fix) {
  writeErr(`${program}: ${cause}; ${fix}\n`);
  process.exitCode = 1;
}

if (!isSea() || !process.execArgv.includes('--disable-sigusr1')) {
  refuse(PROGRAM ?? QNH_PROGRAMS[0], 'this executable was not built with its protective Node options', 'rebuild it with npm run package');
} else if (QNH_REFUSE_PRIVILEGES && startedPrivileged()) {
  // A program that must never hold privileges (the launcher: it runs QEMU)
  // refuses before it answers anything, --version included.
  refuse(PROGRAM ?? QNH_PROGRAMS[0], PRIVILEGED_REFUSAL.cause, PRIVILEGED_REFUSAL.fix);
} else if (PROGRAM === undefined) {
  writeErr(`qemu-net-helper: ${unknownExecutableMessage(QNH_PROGRAMS)}\n`);
  process.exitCode = 1;
} else {
  if (process.channel) process.disconnect();
  const argv = process.argv.slice(2);
  if (argv.length === 1 && argv[0] === '--version') {
    // Answered here, before the program's modules load koffi, so that the
    // build can verify an executable before koffi.node is installed. The
    // first line is exactly what the program itself prints for --version.
    // Setuid root is dropped for good first, as for every answer given
    // before the program confines itself (lib/early.ts).
    try {
      dropSetuidRoot();
      writeOut(versionLine(PROGRAM));
      writeOut(`runtime: Node ${process.version} single executable; node options: ${process.execArgv.join(' ')}; koffi ${QNH_KOFFI_VERSION} from ${QNH_KOFFI_NATIVE_PATH}; code cache ${QNH_CODE_CACHE}\n`);
    } catch (err) {
      writeErr(oneLine(PROGRAM, err) + '\n');
      process.exitCode = 1;
    }
  } else {
    try {
      require('qnh:program');
    } catch (err) {
      // Only a failure while the program's modules load gets here (such as
      // koffi.node failing its checks); the program reports its own errors.
      writeErr(oneLine(PROGRAM, err) + '\n');
      process.exitCode = 1;
    }
  }
}
