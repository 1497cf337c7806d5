// Owner tags, the group mark, and the judgement of a link's owner. Pure.

import t from 'tap';
import { creatorFromGroup, decodeOwnerTag, encodeOwnerTag, judgeLink, markGroup, type ProcessView } from '../../lib/owner.ts';
import { processStartTime } from '../../lib/proc.ts';

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
  const procs: ProcessView = {
    startTime: (pid) => ({ 4242: '987654', 77: '1' } as Record<number, string>)[pid],
    isHelper: (pid) => pid === 555,
  };
  t.match(judgeLink({ alias: encodeOwnerTag(tag), group: markGroup(555) }, procs), { state: 'alive', creator: 555 });
  t.match(judgeLink({ alias: encodeOwnerTag({ ...tag, pid: 99 }), group: 0 }, procs), { state: 'stale' }, 'owner gone');
  t.match(judgeLink({ alias: encodeOwnerTag({ ...tag, pid: 77 }), group: 0 }, procs), { state: 'stale' }, 'pid reused: other start time');
  t.match(judgeLink({ alias: undefined, group: markGroup(555) }, procs), { state: 'in-progress', tag: undefined, creator: 555 });
  t.match(judgeLink({ alias: undefined, group: markGroup(556) }, procs), { state: 'stale', tag: undefined }, 'creator died before tagging');
  t.equal(judgeLink({ alias: 'uplink to rack 4', group: 0 }, procs), undefined, 'not ours');
  t.equal(judgeLink({ alias: undefined, group: 7 }, procs), undefined, 'not ours');
});

t.test('process start times come from /proc/PID/stat field 22', async (t) => {
  const mine = processStartTime(process.pid);
  t.match(mine, /^[0-9]+$/);
  t.equal(processStartTime(process.pid), mine, 'stable');
  t.equal(processStartTime(0), undefined);
  t.equal(processStartTime(2 ** 22 + 1), undefined, 'no such process');
});
