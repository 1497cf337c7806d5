// Wire format of rtnetlink messages: nlmsghdr, netlink attributes (TLVs),
// struct ifinfomsg and the NLMSG_ERROR / NLMSG_DONE payloads.
//
// This module is pure: Buffers in, Buffers and plain objects out. Sockets,
// sequence numbers and port checks belong to the transport (socket.ts); the
// typed link API sits on top of both. Layout follows <linux/netlink.h> and
// <linux/rtnetlink.h> on a little-endian host (x86_64 is the only target).
//
// Decoders treat their input as hostile: every length is checked before it is
// used, so malformed or truncated input throws NetlinkDecodeError and never a
// RangeError from a Buffer read, nor a half-decoded result. Encoders throw
// RangeError/TypeError for arguments no valid message could carry.

import {
  IFINFOMSG_LEN,
  NLA_F_NESTED,
  NLA_HDRLEN,
  NLA_TYPE_MASK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_ALIGNTO,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  NLMSG_MIN_TYPE,
  NLMSGERR_LEN,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
} from '../constants.ts';

/** Thrown for malformed or truncated input; `offset` is where in the decoded buffer the problem lies. */
export class NetlinkDecodeError extends Error {
  readonly offset: number;

  constructor(what: string, offset: number) {
    super(`${what} (at offset ${offset})`);
    this.name = 'NetlinkDecodeError';
    this.offset = offset;
  }
}

/** The fields of struct nlmsghdr other than nlmsg_len, which the codec computes. */
export interface NetlinkHeader {
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

/** One netlink message: header plus payload (without padding). */
export interface NetlinkMessage extends NetlinkHeader {
  payload: Buffer;
}

/** A header as echoed inside NLMSG_ERROR, with its nlmsg_len (the length of the original request). */
export interface EchoedHeader extends NetlinkHeader {
  length: number;
}

/** One decoded attribute; `type` has NLA_F_NESTED and NLA_F_NET_BYTEORDER masked off. */
export interface Attribute {
  type: number;
  nested: boolean;
  value: Buffer;
}

/** struct ifinfomsg, the fixed header of RTM_{NEW,DEL,GET,SET}LINK payloads. */
export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}

/** Extended-ack details (NETLINK_EXT_ACK) the kernel may append to NLMSG_ERROR and NLMSG_DONE. */
export interface ExtAck {
  /** The kernel's explanation (NLMSGERR_ATTR_MSG). */
  extAckMessage?: string;
  /** Offset of the offending attribute from the start of the request's nlmsghdr (NLMSGERR_ATTR_OFFS). */
  extAckOffset?: number;
}

/** The payload of NLMSG_ERROR: an acknowledgement (error 0) or a failure (negative errno). */
export interface NetlinkAck extends ExtAck {
  error: number;
  request: EchoedHeader;
  /** The original request's payload, present unless the kernel capped the ack. */
  requestPayload?: Buffer;
}

/** The payload of NLMSG_DONE: the dump's final status, 0 or a negative errno. */
export interface NetlinkDone extends ExtAck {
  error: number;
}

/** What a received message is, for the transport's receive loop. */
export type MessageKind =
  | 'data' // family message (RTM_*): a reply or one part of a dump
  | 'done' // NLMSG_DONE: end of a multipart dump, see decodeDone
  | 'ack' // NLMSG_ERROR: an ack (error 0) or a failure, see decodeAck
  | 'noop' // NLMSG_NOOP: to be ignored
  | 'overrun'; // NLMSG_OVERRUN: data was lost

// ---------------------------------------------------------------------------
// Alignment and argument checks

/** Rounds a length up to the 4-byte alignment netlink uses for messages and attributes. */
export function align4(length: number): number {
  // NLMSG_ALIGNTO and NLA_ALIGNTO are both 4; one helper serves both.
  // Arithmetic, not the C bit trick: JS bitwise operators wrap at 2^31.
  return Math.ceil(length / NLMSG_ALIGNTO) * NLMSG_ALIGNTO;
}

function zeroPaddedTo4(buf: Buffer): Buffer {
  const padding = align4(buf.length) - buf.length;
  return padding === 0 ? buf : Buffer.concat([buf, Buffer.alloc(padding)]);
}

function checkUnsigned(value: number, bits: 8 | 16 | 32, what: string): void {
  const max = 2 ** bits - 1;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${what} must be an integer in 0..${max}, got ${value}`);
  }
}

function checkSigned32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < -(2 ** 31) || value > 2 ** 31 - 1) {
    throw new RangeError(`${what} must be a signed 32-bit integer, got ${value}`);
  }
}

// ---------------------------------------------------------------------------
// Messages

/** Encodes nlmsghdr + payload; nlmsg_len is 16 + payload length and the buffer is zero-padded to 4. */
export function encodeMessage(msg: NetlinkMessage): Buffer {
  checkUnsigned(msg.type, 16, 'nlmsg_type');
  checkUnsigned(msg.flags, 16, 'nlmsg_flags');
  checkUnsigned(msg.seq, 32, 'nlmsg_seq');
  checkUnsigned(msg.pid, 32, 'nlmsg_pid');
  const length = NLMSG_HDRLEN + msg.payload.length;
  checkUnsigned(length, 32, 'nlmsg_len');
  // nlmsg_len is the true length; the padding after it only keeps the next
  // message aligned (NLMSG_NEXT advances by NLMSG_ALIGN(nlmsg_len)).
  const out = Buffer.alloc(align4(length));
  out.writeUInt32LE(length, 0);
  out.writeUInt16LE(msg.type, 4);
  out.writeUInt16LE(msg.flags, 6);
  out.writeUInt32LE(msg.seq, 8);
  out.writeUInt32LE(msg.pid, 12);
  msg.payload.copy(out, NLMSG_HDRLEN);
  return out;
}

// Reads the nlmsghdr at `offset`; the caller has checked that 16 bytes exist.
function readHeader(buf: Buffer, offset: number): EchoedHeader {
  return {
    length: buf.readUInt32LE(offset),
    type: buf.readUInt16LE(offset + 4),
    flags: buf.readUInt16LE(offset + 6),
    seq: buf.readUInt32LE(offset + 8),
    pid: buf.readUInt32LE(offset + 12),
  };
}

/**
 * Splits a received datagram into its messages. Payloads are copies, so the
 * caller may reuse its receive buffer. The last message's padding may be
 * missing; any other leftover byte is an error.
 */
export function decodeMessages(buf: Buffer): NetlinkMessage[] {
  const messages: NetlinkMessage[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const remaining = buf.length - offset;
    if (remaining < NLMSG_HDRLEN) {
      throw new NetlinkDecodeError(
        `${remaining} trailing bytes, shorter than a ${NLMSG_HDRLEN}-byte nlmsghdr`,
        offset,
      );
    }
    const { length, type, flags, seq, pid } = readHeader(buf, offset);
    if (length < NLMSG_HDRLEN) {
      throw new NetlinkDecodeError(`nlmsg_len ${length} is shorter than the header`, offset);
    }
    if (length > remaining) {
      throw new NetlinkDecodeError(`nlmsg_len ${length} runs past the end (${remaining} bytes left)`, offset);
    }
    const payload = Buffer.from(buf.subarray(offset + NLMSG_HDRLEN, offset + length));
    messages.push({ type, flags, seq, pid, payload });
    offset += align4(length);
  }
  return messages;
}

/** Tells the transport what a received message is; throws NetlinkDecodeError (offset of nlmsg_type) for reserved control types. */
export function classifyMessage(msg: NetlinkHeader): MessageKind {
  // Types below NLMSG_MIN_TYPE are netlink control messages, not family data.
  if (msg.type >= NLMSG_MIN_TYPE) return 'data';
  switch (msg.type) {
    case NLMSG_ERROR:
      return 'ack';
    case NLMSG_DONE:
      return 'done';
    case NLMSG_NOOP:
      return 'noop';
    case NLMSG_OVERRUN:
      return 'overrun';
    default:
      throw new NetlinkDecodeError(`reserved netlink control message type ${msg.type}`, 4);
  }
}

// ---------------------------------------------------------------------------
// Attributes

/** Encodes one attribute: nla_len = 4 + value length (unpadded), then zero padding to 4. */
export function encodeAttribute(type: number, value: Buffer): Buffer {
  checkUnsigned(type, 16, 'nla_type');
  const length = NLA_HDRLEN + value.length;
  checkUnsigned(length, 16, 'nla_len');
  const out = Buffer.alloc(align4(length));
  out.writeUInt16LE(length, 0);
  out.writeUInt16LE(type, 2);
  value.copy(out, NLA_HDRLEN);
  return out;
}

/**
 * Encodes a nested attribute whose value is the given (already encoded)
 * child attributes. NLA_F_NESTED is not set: iproute2 sends IFLA_LINKINFO
 * without it, and the kernel accepts every nest this project sends so.
 */
export function encodeNested(type: number, children: Buffer[]): Buffer {
  checkUnsigned(type, 16, 'nla_type');
  // Each child is padded so the next one starts aligned; the nest's nla_len
  // covers that padding, as iproute2's addattr_nest_end computes it.
  const value = Buffer.concat(children.map(zeroPaddedTo4));
  return encodeAttribute(type, value);
}

function u8Bytes(v: number): Buffer {
  checkUnsigned(v, 8, 'u8 attribute value');
  return Buffer.of(v);
}

function u16Bytes(v: number): Buffer {
  checkUnsigned(v, 16, 'u16 attribute value');
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
}

function u32Bytes(v: number): Buffer {
  checkUnsigned(v, 32, 'u32 attribute value');
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

function nulTerminated(s: string): Buffer {
  // An embedded NUL would silently cut the string short on the kernel side.
  if (s.includes('\0')) throw new TypeError(`string attribute contains a NUL: ${JSON.stringify(s)}`);
  return Buffer.from(`${s}\0`, 'utf8');
}

/** Encoders for the attribute value types rtnetlink uses (host byte order). */
export const attr = {
  u8: (type: number, v: number): Buffer => encodeAttribute(type, u8Bytes(v)),
  u16: (type: number, v: number): Buffer => encodeAttribute(type, u16Bytes(v)),
  u32: (type: number, v: number): Buffer => encodeAttribute(type, u32Bytes(v)),
  /** NUL-terminated UTF-8, as nla_put_string writes and NLA_NUL_STRING expects. */
  string: (type: number, s: string): Buffer => encodeAttribute(type, nulTerminated(s)),
  bytes: (type: number, b: Buffer): Buffer => encodeAttribute(type, b),
  nested: (type: number, children: Buffer[]): Buffer => encodeNested(type, children),
} as const;

// Parses the attribute stream in `buf`; `base` is added to reported offsets so
// they point into the enclosing buffer the caller knows about.
function parseAttributes(buf: Buffer, base: number): Attribute[] {
  const attributes: Attribute[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const remaining = buf.length - offset;
    if (remaining < NLA_HDRLEN) {
      throw new NetlinkDecodeError(`${remaining} trailing bytes, shorter than an attribute header`, base + offset);
    }
    const length = buf.readUInt16LE(offset);
    const rawType = buf.readUInt16LE(offset + 2);
    if (length < NLA_HDRLEN) {
      throw new NetlinkDecodeError(`nla_len ${length} is shorter than the attribute header`, base + offset);
    }
    if (length > remaining) {
      throw new NetlinkDecodeError(`nla_len ${length} runs past the end (${remaining} bytes left)`, base + offset);
    }
    attributes.push({
      type: rawType & NLA_TYPE_MASK,
      nested: (rawType & NLA_F_NESTED) !== 0,
      value: buf.subarray(offset + NLA_HDRLEN, offset + length),
    });
    // The padding after the last attribute may be missing: the kernel's
    // nla_ok() only needs nla_len bytes, so offset may step past the end here.
    offset += align4(length);
  }
  return attributes;
}

/** Decodes a stream of attributes; values are views into `buf`. */
export function decodeAttributes(buf: Buffer): Attribute[] {
  return parseAttributes(buf, 0);
}

/**
 * Decodes the children of a nested attribute. Needed whether or not
 * NLA_F_NESTED is set: the kernel omits it on older nests like IFLA_LINKINFO.
 */
export function attrNested(a: Attribute): Attribute[] {
  return parseAttributes(a.value, 0);
}

/** The first attribute of the given type (the same choice as the kernel's nla_find), if any. */
export function findAttribute(attrs: Attribute[], type: number): Attribute | undefined {
  return attrs.find((a) => a.type === type);
}

// Fixed-size values must have exactly their size, as the kernel's strict
// validation demands: a u16 read as a u32 is garbage, not a value.
function checkValueLength(a: Attribute, size: number, what: string): void {
  if (a.value.length !== size) {
    throw new NetlinkDecodeError(`attribute type ${a.type}: ${what} needs ${size} bytes, got ${a.value.length}`, 0);
  }
}

/** Reads a u32 attribute (host byte order). */
export function attrU32(a: Attribute): number {
  checkValueLength(a, 4, 'u32');
  return a.value.readUInt32LE(0);
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads a string attribute with the kernel's NLA_STRING rules: the value ends
 * at the first NUL, or at nla_len if there is none. The kernel NUL-terminates
 * what it sends (nla_put_string), but iproute2 sends IFLA_INFO_KIND without
 * the NUL, and echoed requests carry it that way. NUL padding after the
 * terminator (fixed-size char arrays) is accepted; other bytes after a NUL
 * are not, as they would be silently dropped. Invalid UTF-8 is rejected
 * rather than replaced: an interface name with U+FFFD in it would name a
 * different device. Use `a.value` for the raw bytes.
 */
export function attrString(a: Attribute): string {
  const nul = a.value.indexOf(0);
  const end = nul < 0 ? a.value.length : nul;
  for (let i = end + 1; i < a.value.length; i++) {
    if (a.value[i] !== 0) {
      throw new NetlinkDecodeError(`attribute type ${a.type}: bytes after the string's NUL terminator`, i);
    }
  }
  try {
    return strictUtf8.decode(a.value.subarray(0, end));
  } catch {
    throw new NetlinkDecodeError(`attribute type ${a.type}: string is not valid UTF-8`, 0);
  }
}

// ---------------------------------------------------------------------------
// struct ifinfomsg

/** Encodes struct ifinfomsg (16 bytes): u8 family, u8 pad, u16 type, s32 index, u32 flags, u32 change. */
export function encodeIfInfoMsg(m: IfInfoMsg): Buffer {
  checkUnsigned(m.family, 8, 'ifi_family');
  checkUnsigned(m.type, 16, 'ifi_type');
  checkSigned32(m.index, 'ifi_index');
  checkUnsigned(m.flags, 32, 'ifi_flags');
  checkUnsigned(m.change, 32, 'ifi_change');
  const out = Buffer.alloc(IFINFOMSG_LEN);
  out.writeUInt8(m.family, 0);
  out.writeUInt16LE(m.type, 2);
  out.writeInt32LE(m.index, 4);
  out.writeUInt32LE(m.flags, 8);
  out.writeUInt32LE(m.change, 12);
  return out;
}

/** Decodes a link message payload: struct ifinfomsg, then its attributes (offsets in errors count from the payload start). */
export function decodeIfInfoMsg(payload: Buffer): { header: IfInfoMsg; attributes: Attribute[] } {
  if (payload.length < IFINFOMSG_LEN) {
    throw new NetlinkDecodeError(`payload of ${payload.length} bytes is shorter than struct ifinfomsg`, 0);
  }
  const header: IfInfoMsg = {
    family: payload.readUInt8(0),
    type: payload.readUInt16LE(2),
    index: payload.readInt32LE(4),
    flags: payload.readUInt32LE(8),
    change: payload.readUInt32LE(12),
  };
  // IFINFOMSG_LEN is already a multiple of 4, so attributes start right after.
  return { header, attributes: parseAttributes(payload.subarray(IFINFOMSG_LEN), IFINFOMSG_LEN) };
}

// ---------------------------------------------------------------------------
// NLMSG_ERROR and NLMSG_DONE

// A received status must be 0 or a negative errno; anything else is garbage.
function readStatus(payload: Buffer): number {
  const error = payload.readInt32LE(0);
  if (error > 0) throw new NetlinkDecodeError(`status ${error} is positive, not 0 or -errno`, 0);
  return error;
}

// Reads the extended-ack TLVs (struct nlmsgerr_attrs) starting at `start`.
// Unknown ones (NLMSGERR_ATTR_POLICY, _MISS_TYPE, ...) are skipped.
function readExtAck(payload: Buffer, start: number): ExtAck {
  const result: ExtAck = {};
  for (const tlv of parseAttributes(payload.subarray(start), start)) {
    if (tlv.type === NLMSGERR_ATTR_MSG) result.extAckMessage = attrString(tlv);
    else if (tlv.type === NLMSGERR_ATTR_OFFS) result.extAckOffset = attrU32(tlv);
  }
  return result;
}

/**
 * Decodes the payload of an NLMSG_ERROR: int32 error, the echoed nlmsghdr,
 * the rest of the original request unless NLM_F_CAPPED is set, then the
 * extended-ack TLVs if NLM_F_ACK_TLVS is set. Offsets in errors count from
 * the payload start.
 */
export function decodeAck(msg: NetlinkMessage): NetlinkAck {
  if (msg.type !== NLMSG_ERROR) {
    throw new TypeError(`decodeAck needs an NLMSG_ERROR message, got type ${msg.type}`);
  }
  const { payload } = msg;
  // struct nlmsgerr: int error, then the echoed nlmsghdr.
  const requestStart = NLMSGERR_LEN;
  if (payload.length < requestStart) {
    throw new NetlinkDecodeError(`NLMSG_ERROR payload of ${payload.length} bytes is shorter than struct nlmsgerr`, 0);
  }
  const error = readStatus(payload);
  const request = readHeader(payload, 4);
  if (request.length < NLMSG_HDRLEN) {
    throw new NetlinkDecodeError(`echoed nlmsg_len ${request.length} is shorter than a header`, 4);
  }
  const ack: NetlinkAck = { error, request };
  let tlvStart = requestStart;
  // Kernels before 4.12 knew no NLM_F_CAPPED and never echoed the request in
  // a success ack; such an ack ends right after struct nlmsgerr.
  const legacyAck = error === 0 && payload.length === requestStart;
  if ((msg.flags & NLM_F_CAPPED) === 0 && !legacyAck) {
    const requestEnd = requestStart + request.length - NLMSG_HDRLEN;
    if (requestEnd > payload.length) {
      throw new NetlinkDecodeError(
        `echoed request of ${request.length} bytes runs past the end of the NLMSG_ERROR payload`,
        requestStart,
      );
    }
    ack.requestPayload = Buffer.from(payload.subarray(requestStart, requestEnd));
    // The kernel reserves the echoed request with nlmsg_put, which aligns it;
    // the padding of an unaligned request may be cut off at the very end.
    tlvStart = Math.min(align4(requestEnd), payload.length);
  }
  if ((msg.flags & NLM_F_ACK_TLVS) !== 0) Object.assign(ack, readExtAck(payload, tlvStart));
  return ack;
}

/**
 * Decodes the payload of an NLMSG_DONE: int32 status (negative when the dump
 * failed), then extended-ack TLVs if NLM_F_ACK_TLVS is set. An empty payload
 * (sent by some non-rtnetlink families) counts as success.
 */
export function decodeDone(msg: NetlinkMessage): NetlinkDone {
  if (msg.type !== NLMSG_DONE) {
    throw new TypeError(`decodeDone needs an NLMSG_DONE message, got type ${msg.type}`);
  }
  const { payload } = msg;
  if (payload.length === 0) return { error: 0 };
  const statusLength = 4; // sizeof(int)
  if (payload.length < statusLength) {
    throw new NetlinkDecodeError(`NLMSG_DONE payload of ${payload.length} bytes is too short for its status`, 0);
  }
  const done: NetlinkDone = { error: readStatus(payload) };
  if ((msg.flags & NLM_F_ACK_TLVS) !== 0) Object.assign(done, readExtAck(payload, statusLength));
  return done;
}
