// The runtime floor for the helper benchmark: start the same Node, load
// koffi, send one fd (/dev/null) with a record over --socketpair=N, exit.
// Everything a helper does beyond this is the helper's own cost.
import { openSync } from 'node:fs';
import { sendWithFds } from '../lib/scm.ts';
import { encodeHelperRecord } from '../lib/record.ts';

const fd = Number(/^--socketpair=(\d+)$/.exec(process.argv[2] ?? '')?.[1]);
const nul = openSync('/dev/null', 'r');
sendWithFds(fd, encodeHelperRecord({ ifname: 'floor0', ifindex: 1, lower: 'lo', mode: 'vepa', mac: '52:54:00:00:00:01', queues: 1, vnetHdr: true, vhost: false, fds: ['tap'] }), [nul]);
