// The features record: encoding, decoding and the limits in docs/protocol.md.

import t from 'tap';
import { decodeRecord, encodeErrorRecord, encodeHelperRecord, encodeRecord, helperRecordJson, MAX_RECORD_BYTES, parseHelperRecord, RecordError, type HelperRecord } from '../../lib/record.ts';

const sample: HelperRecord = {
  ifname: 'macvtap3', ifindex: 7, lower: 'eth0', mode: 'vepa', mac: '52:54:00:12:34:56',
  queues: 1, multiQueue: false, vnetHdr: true, vnetHdrSize: 10, offloads: ['csum', 'tso4'], vhost: false, fds: ['tap'],
};

t.test('a success record is exactly the documented text', async (t) => {
  t.equal(encodeHelperRecord(sample).toString(), [
    'version=1', 'ifname=macvtap3', 'ifindex=7', 'lower=eth0', 'mode=vepa', 'mac=52:54:00:12:34:56',
    'queues=1', 'multi_queue=0', 'vnet_hdr=1', 'vnet_hdr_sz=10', 'offloads=csum,tso4', 'vhost=0', 'fds=tap', '',
  ].join('\n'));
  const back = parseHelperRecord(encodeHelperRecord(sample));
  t.ok(back.ok);
  if (back.ok) t.same(back.record, sample, 'round trip');
  t.same(helperRecordJson(sample), {
    version: 1, ifname: 'macvtap3', ifindex: 7, lower: 'eth0', mode: 'vepa', mac: '52:54:00:12:34:56', queues: 1,
    multi_queue: false, vnet_hdr: true, vnet_hdr_sz: 10, offloads: ['csum', 'tso4'], vhost: false, fds: ['tap'],
  });
});

t.test('vhost and multiqueue keys', async (t) => {
  const mq: HelperRecord = { ...sample, queues: 2, multiQueue: true, vhost: true, vhostFeatures: 0x1_7000_8000n, fds: ['tap', 'tap', 'vhost', 'vhost'] };
  const text = encodeHelperRecord(mq).toString();
  t.match(text, /\nqueues=2\nmulti_queue=1\n/);
  t.match(text, /\nvhost=1\nvhost_features=0x170008000\nfds=tap,tap,vhost,vhost\n$/);
  const back = parseHelperRecord(encodeHelperRecord(mq));
  if (back.ok) t.same(back.record, mq, 'round trip');
  else t.fail(back.error);
  const fellBack: HelperRecord = { ...sample, vhostError: 'cannot open /dev/vhost-net: ENOENT (No such file or directory)' };
  t.match(encodeHelperRecord(fellBack).toString(), /\nvhost=0\nvhost_error=cannot open \/dev\/vhost-net: ENOENT \(No such file or directory\)\nfds=tap\n$/);
  const wrongCount = Buffer.from(encodeHelperRecord(mq).toString().replace('fds=tap,tap,vhost,vhost', 'fds=tap,vhost,vhost'));
  t.throws(() => parseHelperRecord(wrongCount), /1 tap fds for 2 queues/);
  const vhostWithoutFlag = Buffer.from(encodeHelperRecord(sample).toString().replace('fds=tap', 'fds=tap,vhost'));
  t.throws(() => parseHelperRecord(vhostWithoutFlag), /1 vhost fds with vhost=0/);
});

t.test('allmulti and host_ipv6: written when known, read back, optional for older helpers', async (t) => {
  const r: HelperRecord = { ...sample, allmulti: true, hostIpv6: 'off' };
  t.match(encodeHelperRecord(r).toString(), /\nallmulti=1\nhost_ipv6=off\nfds=tap\n$/);
  const back = parseHelperRecord(encodeHelperRecord(r));
  t.same(back.ok && back.record, r, 'round trip');
  const old = parseHelperRecord(encodeHelperRecord(sample));
  t.same(old.ok && [old.record.allmulti, old.record.hostIpv6], [undefined, undefined], 'a record without them still parses');
  t.throws(() => parseHelperRecord(Buffer.from(encodeHelperRecord(r).toString().replace('allmulti=1', 'allmulti=yes'))), /allmulti=yes is not 0 or 1/);
  t.match(helperRecordJson({ ...r, allmulti: false }), { allmulti: false, host_ipv6: 'off' });
});

t.test('an error record carries one line and no fds', async (t) => {
  const data = encodeErrorRecord('qemu-net-helper-vepa: no such\ndevice');
  t.equal(data.toString(), 'version=1\nerror=qemu-net-helper-vepa: no such device\n');
  const back = parseHelperRecord(data);
  t.same(back.ok ? null : back.error, 'qemu-net-helper-vepa: no such device');
});

t.test('readers ignore unknown keys and tolerate a missing final newline', async (t) => {
  const text = encodeHelperRecord(sample).toString().trimEnd() + '\nfuture_key=whatever';
  const back = parseHelperRecord(Buffer.from(text));
  t.ok(back.ok);
  t.equal(back.fields.get('future_key'), 'whatever');
});

t.test('malformed records are refused', async (t) => {
  const bad: Array<[string | Buffer, RegExp]> = [
    ['', /empty record/],
    ['ifname=x\nversion=1\n', /does not start with version=/],
    ['version=2\n', /version 2 is not supported/],
    ['version=1\nnoequals\n', /line 2 has no '='/],
    ['version=1\nBad=1\n', /bad key "Bad"/],
    ['version=1\nx=1\nx=2\n', /appears twice/],
    ['version=1\nx=a\rb\n', /control character/],
    [Buffer.from([0x76, 0x65, 0x72, 0xff]), /not valid UTF-8/],
    ['version=1\n' + 'x='.padEnd(MAX_RECORD_BYTES, 'a') + '\n', /limit is 4096/],
  ];
  for (const [input, message] of bad) {
    t.throws(() => decodeRecord(Buffer.isBuffer(input) ? input : Buffer.from(input)), { name: 'RecordError', message }, JSON.stringify(String(input).slice(0, 30)));
  }
  const missing = Buffer.from(encodeHelperRecord(sample).toString().replace('ifindex=7\n', ''));
  t.throws(() => parseHelperRecord(missing), /record has no ifindex/);
  const badFds = Buffer.from(encodeHelperRecord(sample).toString().replace('fds=tap', 'fds=tap,disk'));
  t.throws(() => parseHelperRecord(badFds), /unknown kind "disk"/);
  const badInt = Buffer.from(encodeHelperRecord(sample).toString().replace('queues=1', 'queues=01'));
  t.throws(() => parseHelperRecord(badInt), /queues=01 is not an integer/);
});

t.test('the encoder refuses what a decoder would refuse', async (t) => {
  t.throws(() => encodeRecord([['Ifname', 'x']]), RecordError);
  t.throws(() => encodeRecord([['x', 'a\nb']]), RecordError);
  t.throws(() => encodeRecord([['x', '1'], ['x', '2']]), RecordError);
  t.throws(() => encodeRecord([['version', '2']]), RecordError);
  t.throws(() => encodeRecord([['x', 'a'.repeat(MAX_RECORD_BYTES)]]), /limit is 4096/);
});
