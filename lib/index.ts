// The package's public API, for Node programs that call a helper:
//   import { callHelper } from 'qemu-net-helper';
export { callHelper, HelperCallError, type HelperCall, type HelperResult } from './client.ts';
export { parseHelperRecord, decodeRecord, RecordError, MAX_RECORD_BYTES, type HelperRecord, type FdKind } from './record.ts';
export { readQueueInfo } from './tap.ts';
export { VERSION } from './version.ts';
