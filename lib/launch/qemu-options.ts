// QEMU's own command-line syntax, as QEMU reads it, for the launcher: which
// words of argv are options and which their arguments, and the key=value text
// of an option's argument. Knows nothing of macvtaps; the launcher's plan
// (plan.ts) and rendering (render.ts) both read and write through it.
//
// QEMU's option syntax (QemuOpts, util/qemu-option.c): "key=value" items separated by
// ",", a ",," inside a value is a literal comma, the first item may omit its key (type=
// for -netdev and -net, driver= for -device), and an item without "=" is a flag. We find
// options by walking argv as QEMU does: an option either takes the next word as its
// argument or takes none (QEMU_OPTIONS_WITHOUT_ARGUMENT), so a word such as "-net" inside
// -append's argument is never taken for an option.

/** QEMU 7.2's options that take no argument (qemu-options.hx, every target); all others take one. */
export const QEMU_OPTIONS_WITHOUT_ARGUMENT: ReadonlySet<string> = new Set([
  'h', 'help', 'version', 'mem-prealloc', 'audio-help', 'snapshot', 'usb', 'nographic', 'portrait',
  'full-screen', 'win2k-hack', 'no-fd-bootchk', 'no-acpi', 'no-hpet', 'singlestep', 'preconfig', 'S', 's',
  'enable-kvm', 'xen-attach', 'xen-domid-restrict', 'no-reboot', 'no-shutdown', 'daemonize',
  'only-migratable', 'nodefaults', 'no-user-config', 'async-teardown', 'enable-sync-profile',
  'semihosting', 'old-param',
]);

// ---------------------------------------------------------------------------
// QemuOpts syntax

export interface KeyvalItem {
  key: string;
  /** undefined for a flag item ("key" without "="). */
  value: string | undefined;
}

export interface Keyval {
  items: KeyvalItem[];
  /** The text ends with a separating comma (QEMU ignores it); appending must not add another. */
  endsWithSeparator: boolean;
}

/** Reads a value from `p` up to an unescaped comma; ",," is a literal comma. */
function readValue(text: string, p: number): [string, number] {
  let value = '';
  while (p < text.length) {
    if (text[p] === ',') {
      if (text[p + 1] !== ',') break;
      value += ',';
      p += 2;
      continue;
    }
    value += text[p];
    p++;
  }
  return [value, p];
}

/** Splits QEMU option text as QemuOpts does; `impliedKey` names a first item written without "key=". */
export function parseKeyval(text: string, impliedKey?: string): Keyval {
  const items: KeyvalItem[] = [];
  let endsWithSeparator = false;
  let p = 0;
  let first = true;
  while (p < text.length) {
    const rest = text.slice(p);
    const m = /[=,]/.exec(rest);
    const len = m ? m.index : rest.length;
    if (rest[len] !== '=') {
      if (first && impliedKey !== undefined) {
        const [value, next] = readValue(text, p);
        items.push({ key: impliedKey, value });
        p = next;
      } else {
        items.push({ key: rest.slice(0, len), value: undefined });
        p += len;
      }
    } else {
      const [value, next] = readValue(text, p + len + 1);
      items.push({ key: rest.slice(0, len), value });
      p = next;
    }
    first = false;
    if (p < text.length) {
      p++; // the separating comma
      if (p === text.length) endsWithSeparator = true;
    }
  }
  return { items, endsWithSeparator };
}

/** The value QEMU uses for `key`: the last one given. */
export function keyvalGet(kv: Keyval, key: string): string | undefined {
  for (let i = kv.items.length - 1; i >= 0; i--) {
    const item = kv.items[i]!;
    if (item.key === key) return item.value ?? 'on';
  }
  return undefined;
}

/** A value written into QEMU option text: commas doubled. */
export function escapeKeyvalValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/** Appends key=value items to option text, respecting a trailing separator. */
export function appendItems(text: string, kv: Keyval, items: ReadonlyArray<readonly [string, string]>): string {
  if (items.length === 0) return text;
  const added = items.map(([k, v]) => `${k}=${escapeKeyvalValue(v)}`).join(',');
  return text + (text === '' || kv.endsWithSeparator ? '' : ',') + added;
}

/** An option argument in QEMU's JSON form ("{...}"), or undefined for key=value text (or JSON QEMU itself will refuse). */
export function jsonObject(text: string): Record<string, unknown> | undefined {
  if (!text.trimStart().startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined; // QEMU will say what is wrong with it
  }
}

// ---------------------------------------------------------------------------
// QEMU's command line

export interface QemuOption {
  /** Index of the option word in the argument list. */
  index: number;
  /** The option's name without its dash(es), e.g. "netdev". */
  name: string;
  /** The option as written ("-netdev" or "--netdev"). */
  spelling: string;
  /** Its argument, for options that take one (undefined when missing at the end). */
  value: string | undefined;
}

/** The options in QEMU's arguments (argv without argv[0]), as QEMU itself reads them. */
export function scanQemuArgs(args: readonly string[]): QemuOption[] {
  const out: QemuOption[] = [];
  for (let i = 0; i < args.length; i++) {
    const word = args[i]!;
    if (!word.startsWith('-')) continue; // a disk image given without an option
    const name = word.startsWith('--') ? word.slice(2) : word.slice(1);
    if (QEMU_OPTIONS_WITHOUT_ARGUMENT.has(name)) {
      out.push({ index: i, name, spelling: word, value: undefined });
    } else {
      out.push({ index: i, name, spelling: word, value: args[i + 1] });
      i++;
    }
  }
  return out;
}

/** An option and its argument as written, for messages: "-netdev macvtap,id=n0,...". */
export function optionText(option: QemuOption): string {
  return `${option.spelling} ${option.value ?? ''}`.trim();
}
