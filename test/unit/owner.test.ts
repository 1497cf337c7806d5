// Owner tags, the group mark, and the judgement of a link's owner. Pure.

import t from 'tap';
import { creatorFromGroup, decodeOwnerTag, encodeOwnerTag, judgeLink, markGroup, type ProcessView } from '../../lib/owner.ts';
import { isHeld, processStartTime, processState } from '../../lib/proc.ts';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

const tag = { helper: 'qemu-net-helper-vepa', uid: 1000, pid: 4242, start: '987654', created: 1_700_000_000 };

t.test('tags round-trip; anything else is not ours', async (t) => {
  const text = encodeOwnerTag(tag);
  t.equal(text, 'qemu-net-helper/1 helper=qemu-net-helper-vepa uid=1000 pid=4242 start=987654 created=1700000000');
  t.same(decodeOwnerTag(text), { ...tag, lowerMac: undefined });
  t.same(decodeOwnerTag(encodeOwnerTag({ ...tag, lowerMac: '02:00:00:00:00:01' }))?.lowerMac, '02:00:00:00:00:01');
  t.ok(Buffer.byteLength(encodeOwnerTag({ ...tag, lowerMac: '02:00:00:00:00:01', pid: 4194304, uid: 4294967295 })) < 256, 'fits IFALIASZ');
  for (const bad of [undefined, '', 'my uplink', 'qemu-net-helper/2 helper=x uid=1 pid=2 start=3 created=4',
    'qemu-net-helper/1 helper=x uid=1 pid=2 start=3', 'qemu-net-helper/1 helper=x uid=01 pid=2 start=3 created=4',
    'qemu-net-helper/1 helper=x uid=1 uid=2 pid=2 start=3 created=4', 'qemu-net-helper/1 helper=x uid=-1 pid=2 start=3 created=4',
    'qemu-net-helper/1 helper= uid=1 pid=2 start=3 created=4', 'qemu-net-helper/1  helper=x uid=1 pid=2 start=3 created=4']) {
    t.equal(decodeOwnerTag(bad), undefined, JSON.stringify(bad));
  }
});

t.test('the group mark carries the creating pid', async (t) => {
  t.equal(markGroup(1234), 0x510004d2);
  t.equal(creatorFromGroup(markGroup(4194304)), 4194304);
  t.equal(creatorFromGroup(0), undefined, 'the default group is not ours');
  t.equal(creatorFromGroup(0x52000001), undefined);
  t.equal(creatorFromGroup(0xffffffff), undefined);
});

t.test('judging owners', async (t) => {
  // 4242 and 77 run; 555 and 557 are running helpers (557 unreadable); 558 runs something else; 600 cannot be seen (hidepid).
  const running: Record<number, string> = { 4242: '987654', 77: '1', 555: '5', 557: '7', 558: '8' };
  const procs: ProcessView = {
    lookup: (pid, pidns) => {
      if (pidns !== undefined && pidns !== '4026531836') return { kind: 'unknown' };
      if (pid === 600) return { kind: 'unknown' };
      const start = running[pid];
      return start === undefined ? { kind: 'gone' } : { kind: 'running', start };
    },
    isHelper: (pid) => (pid === 557 ? 'unknown' : pid === 555),
    realUid: () => undefined,
    holders: () => ({ devices: new Map(), complete: false, hiddenUids: new Set(), unlisted: true }),
  };
  t.match(judgeLink({ alias: encodeOwnerTag(tag), group: markGroup(555) }, procs), { state: 'alive', creator: 555 });
  t.match(judgeLink({ alias: encodeOwnerTag({ ...tag, pid: 99 }), group: markGroup(555) }, procs), { state: 'stale' }, 'owner gone');
  t.match(judgeLink({ alias: encodeOwnerTag({ ...tag, pid: 77 }), group: markGroup(555) }, procs), { state: 'stale' }, 'pid reused: other start time');
  t.match(judgeLink({ alias: undefined, group: markGroup(555) }, procs), { state: 'in-progress', tag: undefined, creator: 555 });
  t.match(judgeLink({ alias: undefined, group: markGroup(556) }, procs), { state: 'stale', tag: undefined }, 'creator died before tagging');
  t.match(judgeLink({ alias: undefined, group: markGroup(557) }, procs), { state: 'in-progress' }, 'a creator whose executable cannot be read may be a helper');
  t.match(judgeLink({ alias: undefined, group: markGroup(558) }, procs), { state: 'stale' }, 'a running creator that is not a helper (a reused pid) does not keep it');
  t.match(judgeLink({ alias: undefined, group: markGroup(600) }, procs), { state: 'in-progress' }, 'a creator that cannot be seen may be running');
  t.match(judgeLink({ alias: encodeOwnerTag({ ...tag, pid: 600 }), group: markGroup(555) }, procs), { state: 'unknown' }, 'an owner hidden from view (hidepid) is not stale');
  t.match(judgeLink({ alias: encodeOwnerTag({ ...tag, pidns: '4026531836' }), group: markGroup(555) }, procs), { state: 'alive' }, 'an owner in our own PID namespace');
  t.match(judgeLink({ alias: encodeOwnerTag({ ...tag, pid: 99, pidns: '4026532999' }), group: markGroup(555) }, procs), { state: 'unknown' }, 'a pid of another PID namespace names nobody here');
  t.equal(decodeOwnerTag(encodeOwnerTag({ ...tag, pidns: '4026532999' }))?.pidns, '4026532999', 'pidns round-trips');
  t.equal(decodeOwnerTag(`${encodeOwnerTag(tag)} pidns=x`), undefined, 'a pidns that is not decimal is not our tag');
  t.equal(judgeLink({ alias: 'uplink to rack 4', group: 0 }, procs), undefined, 'not ours');
  t.equal(judgeLink({ alias: encodeOwnerTag({ ...tag, pid: 99 }), group: 0 }, procs), undefined, 'a forged tag without the group mark is not ours');
  t.equal(judgeLink({ alias: undefined, group: 7 }, procs), undefined, 'not ours');
});

t.test('process start times come from /proc/PID/stat field 22', async (t) => {
  const mine = processStartTime(process.pid);
  t.match(mine, /^[0-9]+$/);
  t.equal(processStartTime(process.pid), mine, 'stable');
  t.equal(processStartTime(0), undefined);
  t.equal(processStartTime(2 ** 22 + 1), undefined, 'no such process');
});

t.test('a zombie is dead: its start time is not an owner that lives', async (t) => {
  // sh starts a short sleep in the background and execs a long one, which never reaps it: the short one stays a zombie until the long one is killed. (It ends 200 ms later: a child that ended before the exec could be reaped by sh itself.)
  const parent = spawn('sh', ['-c', 'sleep 0.2 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => parent.kill('SIGKILL'));
  const pid = Number((await new Promise<Buffer>((r) => parent.stdout.once('data', r))).toString().trim());
  const deadline = Date.now() + 10_000;
  while (!/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'latin1')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.match(readFileSync(`/proc/${pid}/stat`, 'latin1'), /\) Z /, 'the child really is a zombie');
  t.same(processState(pid, '/proc', false), { kind: 'gone' }, 'and counts as gone');
  t.equal(processStartTime(pid), undefined);
});

t.test('a queue is held by any fd of its device number, except the unlinked inode of an earlier link that had the number', async (t) => {
  const node = { dev: 6n, ino: 1000n };
  const holders = (opened: Array<{ dev: bigint; ino: bigint; nlink: bigint }>) => ({ devices: new Map([[0xf00001n, opened]]) });
  t.ok(isHeld(holders([{ dev: 6n, ino: 1000n, nlink: 1n }]), 0xf00001n, node), 'opened through the node itself');
  t.notOk(isHeld(holders([{ dev: 6n, ino: 999n, nlink: 0n }]), 0xf00001n, node), 'a deleted link\'s fd: same number, old unlinked devtmpfs inode');
  t.ok(isHeld(holders([{ dev: 6n, ino: 999n, nlink: 0n }, { dev: 6n, ino: 1000n, nlink: 1n }]), 0xf00001n, node), 'one live fd among stale ones');
  t.ok(isHeld(holders([{ dev: 77n, ino: 5n, nlink: 1n }]), 0xf00001n, node), 'opened through a node of its own elsewhere (a container\'s /dev): held');
  t.ok(isHeld(holders([{ dev: 77n, ino: 5n, nlink: 0n }]), 0xf00001n, node), 'even unlinked, on another file system: cannot tell, so held');
  t.ok(isHeld(holders([{ dev: 6n, ino: 999n, nlink: 0n }]), 0xf00001n, undefined), 'no node to compare with: held');
  t.notOk(isHeld(holders([]), 0xf00001n, node), 'nobody');
  t.notOk(isHeld({ devices: new Map() }, 0xf00001n, node), 'nobody at all');
});
