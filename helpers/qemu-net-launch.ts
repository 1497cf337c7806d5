// qemu-net-launch: see lib/launch/main.ts. Entry point only.
// Not a privileged helper: it runs as the user, runs the helpers, and becomes
// QEMU. It must never be installed setuid or with file capabilities (it refuses to run).
import { runLaunch } from '../lib/launch/main.ts';

runLaunch(process.argv.slice(2)).then((status) => { process.exitCode = status; });
