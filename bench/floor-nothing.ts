// The do-nothing floor of the helper benchmark: a single executable built
// exactly as the helpers are (packaging/build.ts: the same Node, SEA settings,
// prologue and code cache), whose program does nothing at all: no koffi, no
// fd sent. What it costs is Node's own start and exit in a SEA; the floor
// that sends an fd (bench/floor-send-fd.ts) adds koffi's load and one
// sendmsg, and the helper adds its own work on top.
process.exitCode = 0;
