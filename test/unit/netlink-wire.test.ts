// Byte-level tests of lib/netlink/wire.ts against traffic captured from the
// real kernel and iproute2, plus round trips and malformed input.
//
// How the fixtures were captured (iproute2 6.1.0, Linux 6.18, x86_64, as root):
//
//   ip netns add wiretest && trap 'ip netns del wiretest' EXIT
//   ip -n wiretest link add v0 type veth peer name v1        # v0 is ifindex 3
//   t() { out=$1; shift; strace -f -o $out -e trace=sendmsg,sendto,recvmsg \
//           -e read=all -e write=all -xx -s 8192 ip -n wiretest "$@"; }
//   t add.strace    link add link v0 name 'macvtap%d' address 02:00:00:00:00:01 type macvtap mode vepa
//   t show.strace   -d link show macvtap0
//   t erange.strace link set dev v0 gso_max_size 1        # "Error: integer out of range."
//   t emtu.strace   link set dev v0 mtu 10                # "Error: mtu less than device minimum."
//   t eexist.strace link add link v0 name macvtap0 type macvtap mode vepa   # "File exists"
//
//   # in a second namespace, with its own trap: ip netns add wt2, then
//   ip -n wt2 link set lo up && ip -n wt2 addr add 10.0.0.1/8 dev lo
//   t dump.strace -4 addr show                               # (t with -n wt2)
//
// Each fixture is the data of one sendmsg/recvmsg: the " | 00000  30 00 ..."
// lines strace prints under the call (-e read/write), hex columns joined.

import t from 'tap';
import { constants as os } from 'node:os';
import {
  AF_UNSPEC,
  ARPHRD_ETHER,
  IFA_LOCAL,
  IFADDRMSG_LEN,
  IFF_BROADCAST,
  IFF_MULTICAST,
  IFF_UP,
  IFINFOMSG_LEN,
  IFLA_ADDRESS,
  IFLA_DEVLINK_PORT,
  IFLA_GSO_MAX_SIZE,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_MACVLAN_FLAGS,
  IFLA_MACVLAN_MODE,
  IFLA_MTU,
  MACVLAN_MODE_VEPA,
  NLA_F_NESTED,
  NLA_F_NET_BYTEORDER,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  RTM_NEWADDR,
  RTM_NEWLINK,
} from '../../lib/constants.ts';
import { parseLink } from '../../lib/netlink/link.ts';
import { prng } from '../support/random.ts';
import {
  type Attribute,
  type NetlinkMessage,
  NetlinkDecodeError,
  align4,
  attr,
  attrNested,
  attrString,
  attrU32,
  classifyMessage,
  decodeAck,
  decodeAttributes,
  decodeDone,
  decodeIfInfoMsg,
  decodeMessages,
  encodeAttribute,
  encodeIfInfoMsg,
  encodeMessage,
  encodeNested,
  findAttribute,
} from '../../lib/netlink/wire.ts';


function hex(...lines: string[]): Buffer {
  return Buffer.from(lines.join(''), 'hex');
}

// ---------------------------------------------------------------------------
// Fixtures

// sendmsg of `ip link add link v0 name 'macvtap%d' address 02:00:00:00:00:01
// type macvtap mode vepa`: RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE, attributes in
// iproute2's order: IFLA_ADDRESS, IFLA_LINK, IFLA_IFNAME, IFLA_LINKINFO. Note
// IFLA_INFO_KIND "macvtap" without its NUL (nla_len 11): iproute2 sends strlen().
const NEWLINK_REQUEST = hex(
  '60000000100005069bb1016b0000000000000000000000000000000000000000',
  '0a000100020000000001000008000500030000000e0003006d61637674617025',
  '640000001c0012000b0001006d616376746170000c0002000800010002000000',
);

// The kernel's answer to NEWLINK_REQUEST: NLMSG_ERROR, error 0, NLM_F_CAPPED
// (a success ack never echoes the request payload).
const NEWLINK_ACK = hex(
  '24000000020000019bb1016b7c1500000000000060000000100005069bb1016b',
  '00000000',
);

// recvmsg of `ip -d link show macvtap0`: the RTM_NEWLINK reply for the macvtap
// created above (ifindex 4, lower device v0 = ifindex 3).
const NEWLINK_REPLY = hex(
  '98040000100000009bb1016b99867fd300000100040000000210000000000000',
  '0d0003006d616376746170300000000008000d00f40100000500100002000000',
  '0500110000000000050043000000000008000400dc0500000800320044000000',
  '08003300ffff000008001b000000000008001e000000000008003d0000000000',
  '08001f000100000008002800ffff0000080029000000010008003a0000000100',
  '08003f0000000100080040000000010008003b00f8ff070008003c00ffff0000',
  '0800420000000000080020000100000005002100000000000800230000000000',
  '08002f0000000000080030000000000006004400000000000600450000000000',
  '05002700000000000a00010002000000000100000a000200ffffffffffff0000',
  'cc00170000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000006400070000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '000000000000000000000000000000000c002b0005000200000000003c001200',
  '0c0001006d616376746170002c00020008000100020000000600020000000000',
  '080006000000000008000700e803000008000800e80300000800050003000000',
  '090006006e6f6f7000000000c0011a008c000200880001000000000000000000',
  '0000000001000000010000000100000001000000000000000100000000000000',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0000000000000000000000000000000000000000000000000000000000000000',
  '10270000e8030000000000000000000000000000000000000100000030010a00',
  '080001000000000014000500ffff00003e590000b0650000e8030000f4000200',
  '0000000040000000dc05000001000000010000000100000001000000ffffffff',
  'a00f0000e803000000000000803a090080510100030000005802000010000000',
  '0000000001000000010000000100000060ea0000000000000000000000000000',
  '00000000000000000000000001000000000000000000000010270000e8030000',
  '0100000000000000000000000100000000000000000000000100000000000000',
  '00000000000000000000000080ee360000000000000000000100000000000000',
  '000000000000000000000000000000000004000000000000ffff0000ffffffff',
  '0100000000000000000000000000000014000700000000000000000000000000',
  '00000000050008000000000024000e0000000000000000000000000000000000',
  '0000000000000000000000000000000004003e8004004180',
);

// sendmsg of `ip link set dev v0 gso_max_size 1`: RTM_NEWLINK with
// IFLA_GSO_MAX_SIZE 1, which the kernel's policy rejects.
const GSO_REQUEST = hex(
  '28000000100005009bb1016b0000000000000000030000000000000000000000',
  '0800290001000000',
);

// The kernel's answer to GSO_REQUEST: -ERANGE, NLM_F_ACK_TLVS, the request
// echoed in full, then NLMSGERR_ATTR_MSG "integer out of range",
// NLMSGERR_ATTR_OFFS 32 and a nested NLMSGERR_ATTR_POLICY.
const GSO_ERANGE = hex(
  '84000000020000029bb1016b84150000deffffff28000000100005009bb1016b',
  '0000000000000000030000000000000000000000080029000100000019000100',
  '696e7465676572206f7574206f662072616e6765000000000800020020000000',
  '240004800c000400c1000000000000000c000500ffffffff0000000008000100',
  '04000000',
);

// recvmsg of `ip link set dev v0 mtu 10`: -EINVAL with only NLMSGERR_ATTR_MSG.
const MTU_EINVAL = hex(
  '60000000020000029bb1016b88150000eaffffff28000000100005009bb1016b',
  '0000000000000000030000000000000000000000080004000a00000021000100',
  '6d7475206c657373207468616e20646576696365206d696e696d756d00000000',
);

// recvmsg of a second `ip link add ... name macvtap0 ...`: -EEXIST, no
// extended ack (flags 0), the 84-byte request echoed.
const EEXIST_ERROR = hex(
  '68000000020000009bb1016b8c150000efffffff54000000100005069bb1016b',
  '000000000000000000000000000000000000000008000500030000000d000300',
  '6d61637674617030000000001c0012000b0001006d616376746170000c000200',
  '0800010002000000',
);

// recvmsg of `ip -4 addr show` in a namespace where lo has 127.0.0.1/8 and
// 10.0.0.1/8: two RTM_NEWADDR messages (NLM_F_MULTI) in one datagram.
const ADDR_DUMP = hex(
  '4c00000014000200acb1016b43160000020880fe01000000080001007f000001',
  '080002007f000001070003006c6f0000080008008000000014000600ffffffff',
  'ffffffffaa5f0000aa5f00004c00000014000200acb1016b4316000002088000',
  '01000000080001000a000001080002000a000001070003006c6f000008000800',
  '8000000014000600ffffffffffffffffab5f0000ab5f0000',
);

// The next recvmsg of that dump: NLMSG_DONE, status 0.
const ADDR_DUMP_DONE = hex(
  '1400000003000200acb1016b4316000000000000',
);

const SEQ = 0x6b01b19b; // iproute2's sequence number in the captures above

// ---------------------------------------------------------------------------
// Helpers

// The two assertions throwsDecodeError needs from a tap test.
interface Asserts {
  fail(message: string): unknown;
  match(found: unknown, pattern: RegExp, message: string): unknown;
}

// Asserts that fn throws a NetlinkDecodeError whose message matches `what`.
function throwsDecodeError(tt: Asserts, fn: () => unknown, what: RegExp, name: string): void {
  try {
    fn();
    tt.fail(`${name}: did not throw`);
  } catch (err) {
    if (err instanceof NetlinkDecodeError) tt.match(err.message, what, name);
    else tt.fail(`${name}: threw ${String(err)} instead of NetlinkDecodeError`);
  }
}

function only<T>(items: T[]): T {
  if (items.length !== 1) throw new Error(`expected exactly one item, got ${items.length}`);
  return items[0] as T;
}

function required(a: Attribute | undefined, what: string): Attribute {
  if (a === undefined) throw new Error(`missing attribute ${what}`);
  return a;
}

// The request of the fixture, built with this module. 'iproute2' mimics it
// exactly: its attribute order, and IFLA_INFO_KIND without a NUL (iproute2
// puts strlen(kind) bytes). 'ours' is how the project's API would build it.
function macvtapRequest(seq: number, style: 'iproute2' | 'ours'): Buffer {
  const address = attr.bytes(IFLA_ADDRESS, Buffer.from([2, 0, 0, 0, 0, 1]));
  const link = attr.u32(IFLA_LINK, 3);
  const name = attr.string(IFLA_IFNAME, 'macvtap%d');
  const linkinfo = attr.nested(IFLA_LINKINFO, [
    style === 'iproute2' ? attr.bytes(IFLA_INFO_KIND, Buffer.from('macvtap')) : attr.string(IFLA_INFO_KIND, 'macvtap'),
    attr.nested(IFLA_INFO_DATA, [attr.u32(IFLA_MACVLAN_MODE, MACVLAN_MODE_VEPA)]),
  ]);
  const attributes = style === 'iproute2' ? [address, link, name, linkinfo] : [link, name, linkinfo, address];
  const ifinfo = encodeIfInfoMsg({ family: AF_UNSPEC, type: 0, index: 0, flags: 0, change: 0 });
  return encodeMessage({
    type: RTM_NEWLINK,
    flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE,
    seq,
    pid: 0,
    payload: Buffer.concat([ifinfo, ...attributes]),
  });
}

// What a macvtap RTM_NEWLINK request says, read back through the decoders.
function describeMacvtapRequest(message: Buffer): object {
  const msg = only(decodeMessages(message));
  const { header, attributes } = decodeIfInfoMsg(msg.payload);
  const get = (attrs: Attribute[], type: number): Attribute => required(findAttribute(attrs, type), `type ${type}`);
  const linkinfo = get(attributes, IFLA_LINKINFO);
  const info = attrNested(linkinfo);
  const data = get(info, IFLA_INFO_DATA);
  return {
    message: { type: msg.type, flags: msg.flags, seq: msg.seq, pid: msg.pid },
    header,
    attributeTypes: attributes.map((a) => a.type).sort((x, y) => x - y),
    address: get(attributes, IFLA_ADDRESS).value.toString('hex'),
    link: attrU32(get(attributes, IFLA_LINK)),
    name: attrString(get(attributes, IFLA_IFNAME)),
    kind: attrString(get(info, IFLA_INFO_KIND)),
    modes: attrNested(data).map((a) => [a.type, attrU32(a)]),
    nestedFlags: [linkinfo.nested, data.nested],
  };
}

// What the typed API does with a received datagram: the transport's decoders
// for acks and dump ends, and lib/netlink/link.ts parseLink for links. Corrupt
// input must only ever produce NetlinkDecodeError.
function decodeAsTheApi(datagram: Buffer): void {
  for (const msg of decodeMessages(datagram)) {
    if (msg.type === NLMSG_ERROR) decodeAck(msg);
    else if (msg.type === NLMSG_DONE) decodeDone(msg);
    else if (msg.type === RTM_NEWLINK) parseLink(msg);
  }
}

// ---------------------------------------------------------------------------
// Ground truth from iproute2 and the kernel

t.test('encodes the macvtap RTM_NEWLINK request exactly as iproute2 does', async (tt) => {
  tt.equal(macvtapRequest(SEQ, 'iproute2').toString('hex'), NEWLINK_REQUEST.toString('hex'));
});

t.test('our own request differs only in order and the IFLA_INFO_KIND NUL', async (tt) => {
  const ours = describeMacvtapRequest(macvtapRequest(SEQ, 'ours'));
  const theirs = describeMacvtapRequest(NEWLINK_REQUEST);
  tt.same(ours, theirs);
  tt.same(theirs, {
    message: { type: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, seq: SEQ, pid: 0 },
    header: { family: AF_UNSPEC, type: 0, index: 0, flags: 0, change: 0 },
    attributeTypes: [IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO],
    address: '020000000001',
    link: 3,
    name: 'macvtap%d',
    kind: 'macvtap',
    modes: [[IFLA_MACVLAN_MODE, MACVLAN_MODE_VEPA]],
    nestedFlags: [false, false], // iproute2 does not set NLA_F_NESTED on these
  });
  // With or without the NUL, "macvtap" fills 12 bytes; only nla_len tells them apart.
  tt.equal(attr.string(IFLA_INFO_KIND, 'macvtap').toString('hex'), '0c0001006d61637674617000');
  tt.equal(attr.bytes(IFLA_INFO_KIND, Buffer.from('macvtap')).toString('hex'), '0b0001006d61637674617000');
});

t.test('decodes the capped ack to the request', async (tt) => {
  const msg = only(decodeMessages(NEWLINK_ACK));
  tt.equal(classifyMessage(msg), 'ack');
  tt.equal(msg.type, NLMSG_ERROR);
  tt.equal(msg.flags, NLM_F_CAPPED);
  tt.equal(msg.seq, SEQ);
  tt.same(decodeAck(msg), {
    error: 0,
    request: { length: 96, type: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, seq: SEQ, pid: 0 },
  });
  tt.equal(decodeAck(msg).requestPayload, undefined, 'capped: no request payload');
});

t.test('decodes the kernel RTM_NEWLINK reply for the macvtap', async (tt) => {
  const msg = only(decodeMessages(NEWLINK_REPLY));
  tt.equal(classifyMessage(msg), 'data');
  tt.equal(msg.type, RTM_NEWLINK);
  tt.equal(msg.seq, SEQ);
  tt.equal(msg.pid, 0xd37f8699, 'port id read as u32 (autobound ids can have the top bit set)');
  tt.equal(msg.payload.length, NEWLINK_REPLY.length - NLMSG_HDRLEN);

  const { header, attributes } = decodeIfInfoMsg(msg.payload);
  tt.same(header, { family: AF_UNSPEC, type: ARPHRD_ETHER, index: 4, flags: (IFF_BROADCAST | IFF_MULTICAST), change: 0 });
  tt.equal(header.flags & IFF_UP, 0, 'created down');
  tt.equal(attributes.length, 40);

  tt.equal(attrString(required(findAttribute(attributes, IFLA_IFNAME), 'IFLA_IFNAME')), 'macvtap0');
  tt.equal(attrU32(required(findAttribute(attributes, IFLA_LINK), 'IFLA_LINK')), 3);
  tt.equal(attrU32(required(findAttribute(attributes, IFLA_MTU), 'IFLA_MTU')), 1500);
  tt.equal(
    required(findAttribute(attributes, IFLA_ADDRESS), 'IFLA_ADDRESS').value.toString('hex'),
    '020000000001',
  );

  const linkinfo = required(findAttribute(attributes, IFLA_LINKINFO), 'IFLA_LINKINFO');
  tt.equal(linkinfo.nested, false, 'the kernel does not flag IFLA_LINKINFO as nested either');
  const info = attrNested(linkinfo);
  tt.equal(attrString(required(findAttribute(info, IFLA_INFO_KIND), 'IFLA_INFO_KIND')), 'macvtap');
  const data = attrNested(required(findAttribute(info, IFLA_INFO_DATA), 'IFLA_INFO_DATA'));
  tt.equal(attrU32(required(findAttribute(data, IFLA_MACVLAN_MODE), 'IFLA_MACVLAN_MODE')), MACVLAN_MODE_VEPA);
  // IFLA_MACVLAN_FLAGS is a u16 (nla_len 6): reading it as u32 must fail.
  const macvlanFlags = required(findAttribute(data, IFLA_MACVLAN_FLAGS), 'IFLA_MACVLAN_FLAGS');
  tt.equal(macvlanFlags.value.readUInt16LE(0), 0);
  throwsDecodeError(tt, () => attrU32(macvlanFlags), /u32 needs 4 bytes, got 2/, 'u16 read as u32');

  // Newer nests (IFLA_DEVLINK_PORT here) do carry NLA_F_NESTED; it is masked off the type.
  const devlinkPort = required(findAttribute(attributes, IFLA_DEVLINK_PORT), 'IFLA_DEVLINK_PORT');
  tt.equal(devlinkPort.nested, true);
  tt.equal(devlinkPort.value.length, 0);
  tt.same(attrNested(devlinkPort), []);
});

t.test('decodes an extended ack with message and offset', async (tt) => {
  const msg = only(decodeMessages(GSO_ERANGE));
  tt.equal(classifyMessage(msg), 'ack');
  tt.equal(msg.flags, NLM_F_ACK_TLVS, 'TLVs, not capped');
  const ack = decodeAck(msg);
  tt.equal(ack.error, -os.errno.ERANGE);
  tt.equal(ack.extAckMessage, 'integer out of range');
  tt.equal(ack.extAckOffset, 32);
  const request = only(decodeMessages(GSO_REQUEST));
  tt.same(ack.request, { length: GSO_REQUEST.length, type: request.type, flags: request.flags, seq: request.seq, pid: 0 });
  tt.same(ack.requestPayload, request.payload, 'the full request is echoed');
  // The offset counts from the request's nlmsghdr and lands on the bad attribute.
  const offs = ack.extAckOffset ?? 0;
  const bad = decodeAttributes(GSO_REQUEST.subarray(offs))[0];
  tt.equal(bad?.type, IFLA_GSO_MAX_SIZE);
  tt.equal(bad && attrU32(bad), 1);
});

t.test('decodes an extended ack with a message only', async (tt) => {
  const ack = decodeAck(only(decodeMessages(MTU_EINVAL)));
  tt.equal(ack.error, -os.errno.EINVAL);
  tt.equal(ack.extAckMessage, 'mtu less than device minimum');
  tt.equal(ack.extAckOffset, undefined);
  tt.equal(ack.request.length, 40);
});

t.test('decodes an error without extended ack', async (tt) => {
  const msg = only(decodeMessages(EEXIST_ERROR));
  tt.equal(msg.flags, 0);
  const ack = decodeAck(msg);
  tt.equal(ack.error, -os.errno.EEXIST);
  tt.equal(ack.extAckMessage, undefined);
  tt.equal(ack.request.length, 84);
  tt.equal(ack.requestPayload?.length, 84 - NLMSG_HDRLEN);
  const { attributes } = decodeIfInfoMsg(ack.requestPayload ?? Buffer.alloc(0));
  tt.equal(attrString(required(findAttribute(attributes, IFLA_IFNAME), 'IFLA_IFNAME')), 'macvtap0');
});

t.test('splits a datagram holding several messages (real RTM_NEWADDR dump)', async (tt) => {
  const messages = decodeMessages(ADDR_DUMP);
  tt.equal(messages.length, 2);
  const locals = messages.map((m) => {
    tt.equal(m.type, RTM_NEWADDR);
    tt.equal(m.flags, NLM_F_MULTI);
    tt.equal(classifyMessage(m), 'data');
    tt.equal(m.payload.length, 76 - NLMSG_HDRLEN);
    const attrs = decodeAttributes(m.payload.subarray(IFADDRMSG_LEN));
    return [...required(findAttribute(attrs, IFA_LOCAL), 'IFA_LOCAL').value].join('.');
  });
  tt.same(locals, ['127.0.0.1', '10.0.0.1']);
  tt.equal(messages[0]?.seq, messages[1]?.seq);

  const done = only(decodeMessages(ADDR_DUMP_DONE));
  tt.equal(done.type, NLMSG_DONE);
  tt.equal(classifyMessage(done), 'done');
  tt.same(decodeDone(done), { error: 0 });

  const joined = decodeMessages(Buffer.concat([ADDR_DUMP, NEWLINK_ACK, ADDR_DUMP_DONE]));
  tt.same(joined.map(classifyMessage), ['data', 'data', 'ack', 'done']);
});

// ---------------------------------------------------------------------------
// Encoding

t.test('attribute encoders: nla_len excludes the padding, padding is zero', async (tt) => {
  tt.equal(attr.u8(7, 0xab).toString('hex'), '05000700ab000000');
  tt.equal(attr.u16(7, 0xbeef).toString('hex'), '06000700efbe0000');
  tt.equal(attr.u32(7, 0xdeadbeef).toString('hex'), '08000700efbeadde');
  tt.equal(attr.string(3, 'mt0').toString('hex'), '080003006d743000', 'NUL fits exactly');
  tt.equal(attr.string(3, '').toString('hex'), '0500030000000000', 'empty string is just the NUL');
  tt.equal(attr.string(3, 'é').toString('hex'), '07000300c3a90000', 'UTF-8');
  tt.equal(attr.bytes(1, Buffer.alloc(0)).toString('hex'), '04000100', 'empty value');
  tt.equal(encodeAttribute(1, Buffer.from([1, 2, 3, 4, 5])).toString('hex'), '090001000102030405000000');
  tt.equal(encodeNested(18, [attr.u8(1, 1)]).toString('hex'), '0c001200050001000100' + '0000');
  tt.equal(encodeNested(18, [attr.u8(1, 1)]).readUInt16LE(2), 18, 'no NLA_F_NESTED, as iproute2 sends IFLA_LINKINFO');
  tt.equal(encodeNested(18, []).toString('hex'), '04001200', 'empty nest');
  // A child handed over without its padding is padded so its sibling stays aligned.
  tt.equal(
    encodeNested(2, [Buffer.from('05000100ab', 'hex'), attr.u8(1, 0xcd)]).toString('hex'),
    '1400020005000100ab00000005000100cd000000',
  );
});

t.test('encoders reject values no message could carry', async (tt) => {
  tt.throws(() => attr.u8(1, 256), RangeError);
  tt.throws(() => attr.u16(1, -1), RangeError);
  tt.throws(() => attr.u32(1, 2 ** 32), RangeError);
  tt.throws(() => attr.u32(1, 1.5), RangeError);
  tt.throws(() => attr.string(3, 'a\0b'), TypeError);
  tt.throws(() => encodeAttribute(0x10000, Buffer.alloc(0)), RangeError);
  tt.throws(() => encodeAttribute(1, Buffer.alloc(0xffff)), RangeError, 'nla_len overflows u16');
  tt.throws(() => encodeMessage({ type: 0x10000, flags: 0, seq: 0, pid: 0, payload: Buffer.alloc(0) }), RangeError);
  tt.throws(() => encodeMessage({ type: 16, flags: 0, seq: -1, pid: 0, payload: Buffer.alloc(0) }), RangeError);
  tt.throws(() => encodeIfInfoMsg({ family: 0, type: 0, index: 2 ** 31, flags: 0, change: 0 }), RangeError);
});

t.test('encodeMessage: nlmsg_len is the true length, the buffer is padded to 4', async (tt) => {
  const buf = encodeMessage({ type: 0x1234, flags: 0x0305, seq: 0xfffffffe, pid: 0x80000001, payload: Buffer.from('abcde') });
  tt.equal(buf.toString('hex'), '15000000' + '3412' + '0503' + 'feffffff' + '01000080' + '6162636465' + '000000');
});

t.test('align4 rounds up, also past 2^31 where bitwise tricks wrap', async (tt) => {
  tt.same([0, 1, 3, 4, 5, 21].map(align4), [0, 4, 4, 4, 8, 24]);
  tt.equal(align4(0xfffffffd), 0x100000000);
});

t.test('encodeIfInfoMsg lays out struct ifinfomsg', async (tt) => {
  const buf = encodeIfInfoMsg({ family: 7, type: ARPHRD_ETHER, index: -1, flags: IFF_UP, change: 0xffffffff });
  tt.equal(buf.length, IFINFOMSG_LEN);
  tt.equal(buf.toString('hex'), '07000100' + 'ffffffff' + '01000000' + 'ffffffff', 'pad byte is zero');
});

// ---------------------------------------------------------------------------
// Round trips

t.test('round trip: messages, including several in one buffer', async (tt) => {
  const originals: NetlinkMessage[] = [
    { type: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_ACK, seq: 1, pid: 0, payload: Buffer.alloc(0) },
    { type: 0xffff, flags: 0xffff, seq: 0xffffffff, pid: 0xffffffff, payload: Buffer.from('xyz') },
    { type: NLMSG_DONE, flags: NLM_F_MULTI, seq: 3, pid: 42, payload: Buffer.alloc(4) },
  ];
  for (const m of originals) tt.same(only(decodeMessages(encodeMessage(m))), m);
  tt.same(decodeMessages(Buffer.concat(originals.map(encodeMessage))), originals);
  tt.same(decodeMessages(Buffer.alloc(0)), [], 'empty datagram, no messages');
});

t.test('round trip: nested attributes and ifinfomsg', async (tt) => {
  const header = { family: 0, type: ARPHRD_ETHER, index: 17, flags: IFF_UP, change: IFF_UP };
  const payload = Buffer.concat([
    encodeIfInfoMsg(header),
    attr.string(IFLA_IFNAME, 'vtap-é'),
    // As newer kernels send a nest: with NLA_F_NESTED.
    encodeAttribute(IFLA_LINKINFO | NLA_F_NESTED, Buffer.concat(
      [attr.string(IFLA_INFO_KIND, 'macvtap'), attr.nested(IFLA_INFO_DATA, [attr.u32(IFLA_MACVLAN_MODE, 4), attr.u16(IFLA_MACVLAN_FLAGS, 1)])])),
    attr.u8(16, 6),
  ]);
  const decoded = decodeIfInfoMsg(payload);
  tt.same(decoded.header, header);
  const [name, linkinfo, operstate] = decoded.attributes;
  tt.equal(name && attrString(name), 'vtap-é');
  tt.equal(linkinfo?.type, IFLA_LINKINFO, 'type without the flag');
  tt.equal(linkinfo?.nested, true);
  tt.same(operstate && [operstate.type, operstate.value.toString('hex')], [16, '06']);
  const info = linkinfo ? attrNested(linkinfo) : [];
  tt.equal(attrString(required(findAttribute(info, IFLA_INFO_KIND), 'kind')), 'macvtap');
  const data = attrNested(required(findAttribute(info, IFLA_INFO_DATA), 'data'));
  tt.same(
    data.map((a) => [a.type, a.nested, a.value.length]),
    [
      [IFLA_MACVLAN_MODE, false, 4],
      [IFLA_MACVLAN_FLAGS, false, 2],
    ],
  );
  tt.equal(attrU32(data[0] as Attribute), 4);
  tt.equal((data[1] as Attribute).value.readUInt16LE(0), 1);
});

t.test('findAttribute takes the first', async (tt) => {
  const attrs = decodeAttributes(Buffer.concat([attr.u8(1, 1), attr.u8(2, 2), attr.u8(1, 3)]));
  tt.equal(required(findAttribute(attrs, 1), '1').value[0], 1);
  tt.equal(findAttribute(attrs, 9), undefined);
});

t.test('NLA_F_NET_BYTEORDER is masked off the type', async (tt) => {
  const a = only(decodeAttributes(encodeAttribute(5 | NLA_F_NET_BYTEORDER, Buffer.alloc(4))));
  tt.equal(a.type, 5);
  tt.equal(a.nested, false);
});

// ---------------------------------------------------------------------------
// Malformed and truncated input

t.test('malformed messages throw NetlinkDecodeError', async (tt) => {
  const good = encodeMessage({ type: RTM_NEWLINK, flags: 0, seq: 1, pid: 0, payload: Buffer.alloc(8) });
  const withLen = (len: number): Buffer => {
    const b = Buffer.from(good);
    b.writeUInt32LE(len, 0);
    return b;
  };
  throwsDecodeError(tt, () => decodeMessages(Buffer.alloc(15)), /15 trailing bytes, shorter than a 16-byte nlmsghdr \(at offset 0\)/, 'buffer shorter than a header');
  throwsDecodeError(tt, () => decodeMessages(withLen(15)), /nlmsg_len 15 is shorter than the header/, 'nlmsg_len < 16');
  throwsDecodeError(tt, () => decodeMessages(withLen(0)), /nlmsg_len 0 /, 'nlmsg_len 0');
  throwsDecodeError(tt, () => decodeMessages(withLen(25)), /nlmsg_len 25 runs past the end \(24 bytes left\)/, 'nlmsg_len past the end');
  throwsDecodeError(tt, () => decodeMessages(withLen(0xffffffff)), /runs past the end/, 'huge nlmsg_len');
  throwsDecodeError(
    tt,
    () => decodeMessages(Buffer.concat([good, Buffer.alloc(4)])),
    /4 trailing bytes.*\(at offset 24\)/,
    'trailing garbage shorter than a header',
  );
  throwsDecodeError(
    tt,
    () => decodeMessages(Buffer.concat([good, withLen(40)])),
    /runs past the end.*\(at offset 24\)/,
    'second message truncated',
  );
  // An unaligned last message may lack its padding; a following one starts aligned.
  const unaligned = encodeMessage({ type: RTM_NEWLINK, flags: 0, seq: 1, pid: 0, payload: Buffer.from('abc') });
  tt.equal(only(decodeMessages(unaligned.subarray(0, 19))).payload.toString(), 'abc', 'missing final padding is fine');
  tt.equal(decodeMessages(Buffer.concat([unaligned, good])).length, 2);
  throwsDecodeError(tt, () => classifyMessage({ type: 5, flags: 0, seq: 0, pid: 0 }), /reserved netlink control message type 5/, 'reserved type');
  tt.equal(classifyMessage({ type: NLMSG_NOOP, flags: 0, seq: 0, pid: 0 }), 'noop');
  tt.equal(classifyMessage({ type: NLMSG_OVERRUN, flags: 0, seq: 0, pid: 0 }), 'overrun');
});

t.test('decoded payloads are copies, safe from reuse of the receive buffer', async (tt) => {
  const rx = Buffer.from(NEWLINK_ACK);
  const msg = only(decodeMessages(rx));
  rx.fill(0xff);
  tt.equal(decodeAck(msg).error, 0);
});

t.test('malformed attributes throw NetlinkDecodeError', async (tt) => {
  throwsDecodeError(tt, () => decodeAttributes(Buffer.from('03000100', 'hex')), /nla_len 3 is shorter than the attribute header/, 'nla_len < 4');
  throwsDecodeError(tt, () => decodeAttributes(Buffer.from('00000100', 'hex')), /nla_len 0 /, 'nla_len 0 (would loop forever)');
  throwsDecodeError(tt, () => decodeAttributes(Buffer.from('0900010001020304', 'hex')), /nla_len 9 runs past the end \(8 bytes left\)/, 'nla_len past the end');
  throwsDecodeError(tt, () => decodeAttributes(Buffer.from('0500010001000000' + '0400', 'hex')), /2 trailing bytes.*\(at offset 8\)/, 'trailing bytes shorter than a header');
  tt.same(
    decodeAttributes(Buffer.from('0500010001', 'hex')).map((a) => a.value.toString('hex')),
    ['01'],
    'the last attribute may lack its padding',
  );
  // The nest itself is well formed; its child claims 8 bytes of the 4 there are.
  const overflowingChild = encodeAttribute(IFLA_LINKINFO, Buffer.from('08000100aabb', 'hex'));
  const nest = only(decodeAttributes(overflowingChild));
  throwsDecodeError(tt, () => attrNested(nest), /nla_len 8 runs past the end \(6 bytes left\)/, 'nested children overflow');
  throwsDecodeError(tt, () => attrU32(only(decodeAttributes(attr.u16(1, 1)))), /attribute type 1: u32 needs 4 bytes, got 2/, 'u32 of length 2');
  throwsDecodeError(tt, () => attrU32(only(decodeAttributes(attr.bytes(1, Buffer.alloc(8))))), /u32 needs 4 bytes, got 8/, 'u32 of length 8');
});

t.test('attrString: NLA_STRING rules, strict UTF-8', async (tt) => {
  const str = (hexValue: string): Attribute => ({ type: 3, nested: false, value: Buffer.from(hexValue, 'hex') });
  tt.equal(attrString(str('6d743000')), 'mt0');
  tt.equal(attrString(str('00')), '');
  tt.equal(attrString(str('6d7430000000')), 'mt0', 'NUL padding after the terminator (char array)');
  tt.equal(attrString(str('6d7430')), 'mt0', 'no NUL: ends at nla_len (iproute2 sends IFLA_INFO_KIND so)');
  tt.equal(attrString(str('')), '', 'empty value');
  throwsDecodeError(tt, () => attrString(str('6d00740000')), /bytes after the string's NUL terminator/, 'embedded NUL');
  throwsDecodeError(tt, () => attrString(str('ff00')), /not valid UTF-8/, 'invalid UTF-8');
});

t.test('decodeIfInfoMsg rejects a short header and bad attributes', async (tt) => {
  throwsDecodeError(tt, () => decodeIfInfoMsg(Buffer.alloc(15)), /payload of 15 bytes is shorter than struct ifinfomsg/, 'ifinfomsg < 16');
  throwsDecodeError(tt, () => decodeIfInfoMsg(Buffer.alloc(0)), /payload of 0 bytes/, 'empty payload');
  throwsDecodeError(
    tt,
    () => decodeIfInfoMsg(Buffer.concat([Buffer.alloc(16), Buffer.from('0c000300', 'hex')])),
    /nla_len 12 runs past the end \(4 bytes left\) \(at offset 16\)/,
    'offsets count from the payload start',
  );
  tt.same(decodeIfInfoMsg(Buffer.alloc(16)).attributes, [], 'no attributes');
});

t.test('malformed NLMSG_ERROR payloads throw NetlinkDecodeError', async (tt) => {
  const errorMsg = (flags: number, payload: Buffer): NetlinkMessage => ({ type: NLMSG_ERROR, flags, seq: 1, pid: 0, payload });
  const nlmsgerr = (error: number, echoed: Buffer): Buffer => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(error);
    return Buffer.concat([b, echoed]);
  };
  const request = encodeMessage({ type: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_ACK, seq: 1, pid: 0, payload: Buffer.alloc(16) });
  const requestHeader = request.subarray(0, NLMSG_HDRLEN);

  throwsDecodeError(tt, () => decodeAck(errorMsg(0, Buffer.alloc(19))), /NLMSG_ERROR payload of 19 bytes is shorter than struct nlmsgerr/, 'payload < 20');
  throwsDecodeError(tt, () => decodeAck(errorMsg(0, Buffer.alloc(0))), /payload of 0 bytes/, 'empty payload');
  throwsDecodeError(
    tt,
    () => decodeAck(errorMsg(0, nlmsgerr(-1, requestHeader))),
    /echoed request of 32 bytes runs past the end/,
    'uncapped error whose echoed request is missing',
  );
  throwsDecodeError(
    tt,
    () => decodeAck(errorMsg(0, nlmsgerr(-1, request.subarray(0, 31)))),
    /echoed request of 32 bytes runs past the end/,
    'echoed request truncated by one byte',
  );
  const tinyEcho = Buffer.from(requestHeader);
  tinyEcho.writeUInt32LE(8, 0);
  throwsDecodeError(tt, () => decodeAck(errorMsg(NLM_F_CAPPED, nlmsgerr(-1, tinyEcho))), /echoed nlmsg_len 8 is shorter than a header/, 'echoed nlmsg_len < 16');
  throwsDecodeError(tt, () => decodeAck(errorMsg(NLM_F_CAPPED, nlmsgerr(5, requestHeader))), /status 5 is positive/, 'positive error');
  throwsDecodeError(
    tt,
    () => decodeAck(errorMsg(NLM_F_CAPPED | NLM_F_ACK_TLVS, Buffer.concat([nlmsgerr(-1, requestHeader), encodeAttribute(NLMSGERR_ATTR_MSG, Buffer.from('oo\0ps'))]))),
    /bytes after the string's NUL terminator/,
    'ext ack message with an embedded NUL',
  );
  throwsDecodeError(
    tt,
    () => decodeAck(errorMsg(NLM_F_CAPPED | NLM_F_ACK_TLVS, Buffer.concat([nlmsgerr(-1, requestHeader), attr.u16(NLMSGERR_ATTR_OFFS, 32)]))),
    /u32 needs 4 bytes, got 2/,
    'ext ack offset of the wrong size',
  );
  throwsDecodeError(
    tt,
    () => decodeAck(errorMsg(NLM_F_CAPPED | NLM_F_ACK_TLVS, Buffer.concat([nlmsgerr(-1, requestHeader), Buffer.from('0900010061', 'hex')]))),
    /nla_len 9 runs past the end.*\(at offset 20\)/,
    'ext ack TLV past the end, offset within the payload',
  );
  tt.throws(() => decodeAck({ ...errorMsg(0, Buffer.alloc(20)), type: NLMSG_DONE }), TypeError, 'not an NLMSG_ERROR');
});

t.test('NLMSG_ERROR variants the captures do not cover', async (tt) => {
  const errorMsg = (flags: number, payload: Buffer): NetlinkMessage => ({ type: NLMSG_ERROR, flags, seq: 1, pid: 0, payload });
  const status = (error: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(error);
    return b;
  };
  const request = encodeMessage({ type: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_ACK, seq: 1, pid: 0, payload: Buffer.from('abcdef') });
  const header = request.subarray(0, NLMSG_HDRLEN);
  const tlvs = Buffer.concat([attr.string(NLMSGERR_ATTR_MSG, 'bad thing'), attr.u32(NLMSGERR_ATTR_OFFS, 16), attr.u8(99, 0)]);

  const capped = decodeAck(errorMsg(NLM_F_CAPPED | NLM_F_ACK_TLVS, Buffer.concat([status(-1), header, tlvs])));
  tt.same(capped, { error: -1, request: { length: 22, type: RTM_NEWLINK, flags: 5, seq: 1, pid: 0 }, extAckMessage: 'bad thing', extAckOffset: 16 }, 'capped error with TLVs (NETLINK_CAP_ACK)');

  // The unaligned 22-byte request is echoed padded to 24; the TLVs follow the padding.
  const uncapped = decodeAck(errorMsg(NLM_F_ACK_TLVS, Buffer.concat([status(-1), request, tlvs])));
  tt.equal(uncapped.requestPayload?.toString(), 'abcdef');
  tt.equal(uncapped.extAckMessage, 'bad thing');

  const flagWithoutTlvs = decodeAck(errorMsg(NLM_F_CAPPED | NLM_F_ACK_TLVS, Buffer.concat([status(0), header])));
  tt.same(flagWithoutTlvs, { error: 0, request: { length: 22, type: RTM_NEWLINK, flags: 5, seq: 1, pid: 0 } }, 'NLM_F_ACK_TLVS with no TLVs');

  const tlvsIgnoredWithoutFlag = decodeAck(errorMsg(NLM_F_CAPPED, Buffer.concat([status(-1), header, tlvs])));
  tt.equal(tlvsIgnoredWithoutFlag.extAckMessage, undefined, 'TLVs are only read when NLM_F_ACK_TLVS says so');

  const legacy = decodeAck(errorMsg(0, Buffer.concat([status(0), header])));
  tt.same(legacy, { error: 0, request: { length: 22, type: RTM_NEWLINK, flags: 5, seq: 1, pid: 0 } }, 'pre-4.12 ack: uncapped but no echo');
});

t.test('NLMSG_DONE payloads', async (tt) => {
  const doneMsg = (flags: number, payload: Buffer): NetlinkMessage => ({ type: NLMSG_DONE, flags, seq: 1, pid: 0, payload });
  tt.same(decodeDone(doneMsg(NLM_F_MULTI, Buffer.alloc(0))), { error: 0 }, 'empty payload');
  const failed = Buffer.concat([Buffer.from('f2ffffff', 'hex'), attr.string(NLMSGERR_ATTR_MSG, 'dump failed')]);
  tt.same(decodeDone(doneMsg(NLM_F_MULTI | NLM_F_ACK_TLVS, failed)), { error: -14, extAckMessage: 'dump failed' });
  throwsDecodeError(tt, () => decodeDone(doneMsg(NLM_F_MULTI, Buffer.alloc(2))), /NLMSG_DONE payload of 2 bytes is too short/, 'DONE payload of 2 bytes');
  throwsDecodeError(tt, () => decodeDone(doneMsg(NLM_F_MULTI | NLM_F_ACK_TLVS, Buffer.concat([Buffer.alloc(4), Buffer.from('0800', 'hex')]))), /2 trailing bytes.*\(at offset 4\)/, 'DONE TLV truncated');
  tt.throws(() => decodeDone({ ...doneMsg(0, Buffer.alloc(4)), type: NLMSG_ERROR }), TypeError, 'not an NLMSG_DONE');
});

t.test('every truncation of a captured datagram is rejected, none misread', async (tt) => {
  const captures = { NEWLINK_REQUEST, NEWLINK_ACK, NEWLINK_REPLY, GSO_ERANGE, MTU_EINVAL, EEXIST_ERROR, ADDR_DUMP, ADDR_DUMP_DONE };
  const surprises: string[] = [];
  for (const [name, datagram] of Object.entries(captures)) {
    const boundaries = new Set([0, datagram.length]);
    for (let end = 0, msgs = decodeMessages(datagram); msgs.length > 0; msgs.shift()) {
      end += Math.ceil((NLMSG_HDRLEN + (msgs[0]?.payload.length ?? 0)) / 4) * 4;
      boundaries.add(end);
    }
    for (let cut = 0; cut < datagram.length; cut++) {
      try {
        decodeMessages(datagram.subarray(0, cut));
        if (!boundaries.has(cut)) surprises.push(`${name}[0..${cut}] decoded`);
      } catch (err) {
        if (!(err instanceof NetlinkDecodeError)) surprises.push(`${name}[0..${cut}] threw ${String(err)}`);
        else if (boundaries.has(cut)) surprises.push(`${name}[0..${cut}] rejected at a message boundary`);
      }
    }
  }
  tt.same(surprises, []);
});

t.test('corrupted captures only ever throw NetlinkDecodeError', async (tt) => {
  const random = prng(0x5eed);
  const captures = [NEWLINK_REPLY, NEWLINK_ACK, GSO_ERANGE, MTU_EINVAL, EEXIST_ERROR, ADDR_DUMP, ADDR_DUMP_DONE];
  const surprises: string[] = [];
  let rejected = 0;
  let cases = 0;
  for (const capture of captures) {
    for (let round = 0; round < 400; round++) {
      const corrupt = Buffer.from(capture);
      // Corrupt the length fields more often than anything else: they are what can mislead a decoder.
      const flips = 1 + Math.floor(random() * 3);
      for (let i = 0; i < flips; i++) {
        const pos = Math.floor(random() * corrupt.length);
        corrupt[pos] = Math.floor(random() * 256);
      }
      // Also cut the message short while keeping nlmsg_len consistent,
      // so the inner decoders (not decodeMessages) meet the truncation.
      const cut = random() < 0.3 ? Math.max(NLMSG_HDRLEN, Math.floor(random() * corrupt.length)) : corrupt.length;
      const sample = Buffer.from(corrupt.subarray(0, cut));
      if (cut !== corrupt.length && sample.readUInt32LE(0) > cut) sample.writeUInt32LE(cut, 0);
      cases++;
      try {
        decodeAsTheApi(sample);
      } catch (err) {
        rejected++;
        if (!(err instanceof NetlinkDecodeError)) surprises.push(`${sample.toString('hex')}: ${String(err)}`);
      }
    }
  }
  tt.same(surprises.slice(0, 5), [], 'no error other than NetlinkDecodeError');
  tt.ok(rejected > cases / 10, `corruption was detected often enough (${rejected}/${cases})`);
});
