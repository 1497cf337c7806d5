// The features record a helper sends with its fds in --socketpair mode (and
// prints with --probe). docs/protocol.md is the specification; this is the
// codec. Pure: no I/O.
//
// Text, one key=value per line, UTF-8, at most 4096 bytes, first line
// "version=1". Keys are [a-z][a-z0-9_]*; values are one line of printable
// text. Readers ignore keys they do not know, so later versions can add keys
// without breaking older readers.

export const RECORD_VERSION = '1';
export const MAX_RECORD_BYTES = 4096;

export type FdKind = 'tap' | 'vhost';

/** What a successful helper run produced. */
export interface HelperRecord {
  ifname: string;
  ifindex: number;
  lower: string;
  mode: string;
  mac: string;
  queues: number;
  /** IFF_MULTI_QUEUE is set on every queue (always when queues > 1). */
  multiQueue: boolean;
  vnetHdr: boolean;
  /** The virtio-net header size the queues use (TUNGETVNETHDRSZ). */
  vnetHdrSize: number;
  /** Offloads the kernel accepts on these queues (TUNSETOFFLOAD), e.g. csum,tso4. QEMU enables what the guest negotiates. */
  offloads: string[];
  vhost: boolean;
  /** VHOST_GET_FEATURES of the vhost fds, when vhost is on and the kernel answered. */
  vhostFeatures?: bigint | undefined;
  /** Why vhost is off although it was tried (--vhost=try). */
  vhostError?: string | undefined;
  /** IFF_ALLMULTI is set on the macvtap (absent from older helpers). */
  allmulti?: boolean | undefined;
  /** The host's IPv6 on the macvtap: 'off' (disable_ipv6=1) or 'absent' (none in that namespace); absent from older helpers. */
  hostIpv6?: string | undefined;
  /** The 802.1Q VLAN of `lower` the macvtap sits on, when one was asked for. */
  vlan?: number | undefined;
  fds: FdKind[];
}

export class RecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecordError';
  }
}

const KEY = /^[a-z][a-z0-9_]*$/;
// Printable text on one line: no C0 controls, no DEL.
const VALUE = /^[^\x00-\x1f\x7f]*$/;

/** Encodes ordered fields; "version" is added first. Throws RecordError on a bad key, value or size. */
export function encodeRecord(fields: ReadonlyArray<readonly [string, string | number]>): Buffer {
  const lines = [`version=${RECORD_VERSION}`];
  const seen = new Set(['version']);
  for (const [key, raw] of fields) {
    const value = String(raw);
    if (!KEY.test(key)) throw new RecordError(`bad record key ${JSON.stringify(key)}`);
    if (seen.has(key)) throw new RecordError(`duplicate record key ${key}`);
    if (!VALUE.test(value)) throw new RecordError(`record value for ${key} contains a control character`);
    seen.add(key);
    lines.push(`${key}=${value}`);
  }
  const data = Buffer.from(lines.join('\n') + '\n', 'utf8');
  if (data.length > MAX_RECORD_BYTES) throw new RecordError(`record is ${data.length} bytes; the limit is ${MAX_RECORD_BYTES}`);
  return data;
}

/** Decodes and validates a record into its fields (version included). */
export function decodeRecord(data: Buffer): Map<string, string> {
  if (data.length === 0) throw new RecordError('empty record');
  if (data.length > MAX_RECORD_BYTES) throw new RecordError(`record is ${data.length} bytes; the limit is ${MAX_RECORD_BYTES}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new RecordError('record is not valid UTF-8');
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const fields = new Map<string, string>();
  lines.forEach((line, i) => {
    const eq = line.indexOf('=');
    if (eq < 0) throw new RecordError(`record line ${i + 1} has no '='`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (!KEY.test(key)) throw new RecordError(`record line ${i + 1} has a bad key ${JSON.stringify(key)}`);
    if (!VALUE.test(value)) throw new RecordError(`record line ${i + 1} contains a control character`);
    if (fields.has(key)) throw new RecordError(`record key ${key} appears twice`);
    fields.set(key, value);
  });
  if (lines[0] === undefined || !lines[0].startsWith('version=')) throw new RecordError('record does not start with version=');
  if (fields.get('version') !== RECORD_VERSION) {
    throw new RecordError(`record version ${fields.get('version')} is not supported (this reader knows version ${RECORD_VERSION})`);
  }
  return fields;
}

/** The ordered fields of a successful run, as the helper sends them. */
export function helperRecordFields(r: HelperRecord): Array<[string, string | number]> {
  const fields: Array<[string, string | number]> = [
    ['ifname', r.ifname],
    ['ifindex', r.ifindex],
    ['lower', r.lower],
    ['mode', r.mode],
    ['mac', r.mac],
    ['queues', r.queues],
    ['multi_queue', r.multiQueue ? 1 : 0],
    ['vnet_hdr', r.vnetHdr ? 1 : 0],
    ['vnet_hdr_sz', r.vnetHdrSize],
    ['offloads', r.offloads.join(',')],
    ['vhost', r.vhost ? 1 : 0],
  ];
  if (r.vhostFeatures !== undefined) fields.push(['vhost_features', `0x${r.vhostFeatures.toString(16)}`]);
  if (r.vhostError !== undefined) fields.push(['vhost_error', r.vhostError]);
  if (r.allmulti !== undefined) fields.push(['allmulti', r.allmulti ? 1 : 0]);
  if (r.hostIpv6 !== undefined) fields.push(['host_ipv6', r.hostIpv6]);
  if (r.vlan !== undefined) fields.push(['vlan', r.vlan]);
  fields.push(['fds', r.fds.join(',')]);
  return fields;
}

export function encodeHelperRecord(r: HelperRecord): Buffer {
  return encodeRecord(helperRecordFields(r));
}

export function encodeErrorRecord(message: string): Buffer {
  // An error message is one line by construction; make sure of it, and keep it in bounds.
  const line = message.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 1024);
  return encodeRecord([['error', line]]);
}

/** Either the helper's result or the error it reported. */
export type DecodedHelperRecord = { ok: true; record: HelperRecord; fields: Map<string, string> } | { ok: false; error: string; fields: Map<string, string> };

function requireField(fields: Map<string, string>, key: string): string {
  const v = fields.get(key);
  if (v === undefined) throw new RecordError(`record has no ${key}`);
  return v;
}

function requireInt(fields: Map<string, string>, key: string, min: number, max: number): number {
  const v = requireField(fields, key);
  if (!/^(0|[1-9][0-9]{0,9})$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new RecordError(`record ${key}=${v} is not an integer from ${min} to ${max}`);
  }
  return Number(v);
}

function requireBool(fields: Map<string, string>, key: string): boolean {
  const v = requireField(fields, key);
  if (v !== '0' && v !== '1') throw new RecordError(`record ${key}=${v} is not 0 or 1`);
  return v === '1';
}

/** Interprets a decoded record as a helper's answer, checking the fields a client relies on. */
export function parseHelperRecord(data: Buffer): DecodedHelperRecord {
  const fields = decodeRecord(data);
  const error = fields.get('error');
  if (error !== undefined) return { ok: false, error, fields };
  const fdsText = requireField(fields, 'fds');
  const fds = fdsText === '' ? [] : fdsText.split(',');
  for (const kind of fds) {
    if (kind !== 'tap' && kind !== 'vhost') throw new RecordError(`record fds lists an unknown kind ${JSON.stringify(kind)}`);
  }
  const features = fields.get('vhost_features');
  if (features !== undefined && !/^0x[0-9a-f]{1,16}$/.test(features)) throw new RecordError(`record vhost_features=${features} is not a hex number`);
  const offloads = fields.get('offloads') ?? '';
  const record: HelperRecord = {
    ifname: requireField(fields, 'ifname'),
    ifindex: requireInt(fields, 'ifindex', 1, 0x7fffffff),
    lower: requireField(fields, 'lower'),
    mode: requireField(fields, 'mode'),
    mac: requireField(fields, 'mac'),
    queues: requireInt(fields, 'queues', 1, 256),
    multiQueue: requireBool(fields, 'multi_queue'),
    vnetHdr: requireBool(fields, 'vnet_hdr'),
    vnetHdrSize: requireInt(fields, 'vnet_hdr_sz', 0, 65535),
    offloads: offloads === '' ? [] : offloads.split(','),
    vhost: requireBool(fields, 'vhost'),
    vhostFeatures: features === undefined ? undefined : BigInt(features),
    vhostError: fields.get('vhost_error'),
    allmulti: fields.has('allmulti') ? requireBool(fields, 'allmulti') : undefined,
    hostIpv6: fields.get('host_ipv6'),
    vlan: fields.has('vlan') ? requireInt(fields, 'vlan', 1, 4094) : undefined,
    fds: fds as FdKind[],
  };
  const taps = record.fds.filter((k) => k === 'tap').length;
  const vhosts = record.fds.length - taps;
  if (taps !== record.queues) throw new RecordError(`record lists ${taps} tap fds for ${record.queues} queues`);
  if (vhosts !== (record.vhost ? record.queues : 0)) throw new RecordError(`record lists ${vhosts} vhost fds with vhost=${record.vhost ? 1 : 0} and ${record.queues} queues`);
  return { ok: true, record, fields };
}

/** The record as JSON (for --probe --json): the same keys, with numbers, booleans and a list of fds. */
export function helperRecordJson(r: HelperRecord): Record<string, unknown> {
  return {
    version: Number(RECORD_VERSION),
    ifname: r.ifname,
    ifindex: r.ifindex,
    lower: r.lower,
    mode: r.mode,
    mac: r.mac,
    queues: r.queues,
    multi_queue: r.multiQueue,
    vnet_hdr: r.vnetHdr,
    vnet_hdr_sz: r.vnetHdrSize,
    offloads: r.offloads,
    vhost: r.vhost,
    ...(r.vhostFeatures !== undefined ? { vhost_features: `0x${r.vhostFeatures.toString(16)}` } : {}),
    ...(r.vhostError !== undefined ? { vhost_error: r.vhostError } : {}),
    ...(r.allmulti !== undefined ? { allmulti: r.allmulti } : {}),
    ...(r.hostIpv6 !== undefined ? { host_ipv6: r.hostIpv6 } : {}),
    ...(r.vlan !== undefined ? { vlan: r.vlan } : {}),
    fds: r.fds,
  };
}
