// Strict command-line parsing, shared by every program. Pure: argv in,
// options out, UsageError for anything doubtful.
//
// minimist does the splitting; a pass before it rejects what minimist would
// quietly accept: unknown options, options given twice (also through an
// alias), positional words, single-dash forms, flags with values, missing
// values, and names or values that are prototype keys. Every value stays a
// string (no numeric coercion); parseDecimal() is the one way to get a number.

import minimist from 'minimist';
import { UsageError } from './errors.ts';

export interface OptionSpec {
  /** The canonical long name, without "--". */
  name: string;
  /** 'value' options take --name=VALUE (or --name VALUE); 'flag' options take nothing. */
  kind: 'value' | 'flag';
  /** Other spellings that mean the same option (e.g. the seed's "arg-dev"). */
  aliases?: string[];
}

/** Parsed options by canonical name: a string for values, true for flags given. */
export type ParsedOptions = Map<string, string | true>;

const PROTOTYPE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const OPTION = /^--([a-z][a-z0-9-]*)(?:=([\s\S]*))?$/;

export function parseOptions(argv: readonly string[], specs: readonly OptionSpec[]): ParsedOptions {
  const byName = new Map<string, OptionSpec>();
  for (const spec of specs) {
    byName.set(spec.name, spec);
    for (const alias of spec.aliases ?? []) byName.set(alias, spec);
  }

  const given = new Map<string, string>(); // canonical name -> spelling first used
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    for (const part of [token, ...token.split('=')]) {
      if (PROTOTYPE_KEYS.has(part.replace(/^-+/, '').toLowerCase())) {
        throw new UsageError(`${JSON.stringify(token)} uses the reserved word ${JSON.stringify(part.replace(/^-+/, ''))}`, 'remove it');
      }
    }
    if (token === '--') throw new UsageError("'--' is not accepted here", 'give only --options');
    if (!token.startsWith('--')) {
      throw new UsageError(token.startsWith('-') ? `unknown option ${JSON.stringify(token)}` : `unexpected argument ${JSON.stringify(token)}`,
        'options are written --name=value; see --help');
    }
    const m = OPTION.exec(token);
    const spec = m ? byName.get(m[1]!) : undefined;
    if (!m || !spec) {
      throw new UsageError(`unknown option ${JSON.stringify(token.split('=')[0])}`, `known options: ${specs.map((s) => '--' + s.name).join(' ')}`);
    }
    const spelling = `--${m[1]}`;
    const previous = given.get(spec.name);
    if (previous !== undefined) {
      throw new UsageError(`${spelling} is given more than once${previous !== spelling ? ` (also as ${previous})` : ''}`, 'give each option once');
    }
    given.set(spec.name, spelling);
    if (spec.kind === 'flag' && m[2] !== undefined) throw new UsageError(`${spelling} takes no value`, `write just ${spelling}`);
    if (spec.kind === 'value') {
      let value = m[2];
      if (value === undefined) {
        value = argv[i + 1];
        if (value === undefined || value.startsWith('--')) throw new UsageError(`${spelling} needs a value`, `write ${spelling}=VALUE`);
        i++;
      }
      if (value === '') throw new UsageError(`${spelling} needs a value`, `write ${spelling}=VALUE`);
    }
  }

  // The pre-pass above has made minimist's job unambiguous; its result is
  // read only through the spec, never by iterating its (prototype-carrying) object.
  const values = specs.filter((s) => s.kind === 'value');
  const flags = specs.filter((s) => s.kind === 'flag');
  const alias: Record<string, string[]> = Object.create(null);
  for (const s of specs) if (s.aliases) alias[s.name] = s.aliases;
  const parsed = minimist([...argv], {
    string: values.flatMap((s) => [s.name, ...(s.aliases ?? [])]),
    boolean: flags.flatMap((s) => [s.name, ...(s.aliases ?? [])]),
    alias,
    unknown: (arg) => {
      throw new UsageError(`unknown option ${JSON.stringify(arg)}`, 'see --help');
    },
  });
  const result: ParsedOptions = new Map();
  for (const spec of specs) {
    if (!given.has(spec.name)) continue;
    const v: unknown = Object.prototype.hasOwnProperty.call(parsed, spec.name) ? parsed[spec.name] : undefined;
    if (spec.kind === 'flag') {
      if (v !== true) throw new UsageError(`--${spec.name} was not understood`, 'see --help');
      result.set(spec.name, true);
    } else {
      if (typeof v !== 'string') throw new UsageError(`--${spec.name} was not understood`, 'see --help');
      result.set(spec.name, v);
    }
  }
  return result;
}

/** A decimal integer in [min, max]: no sign, no leading zeros, no hex, octal or exponent forms. */
export function parseDecimal(option: string, text: string, min: number, max: number): number {
  if (!/^(0|[1-9][0-9]{0,9})$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`--${option}=${JSON.stringify(text)} is not a whole number from ${min} to ${max}`, `write it in plain decimal, e.g. --${option}=${min}`);
  }
  return Number(text);
}
