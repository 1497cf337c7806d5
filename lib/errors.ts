// Errors a person reads. Every failure a helper reports is one line:
//   <program>: <cause>; <what to do>
// UsageError and HelperError carry the two halves separately so the line can
// be assembled once, at the edge, with the program's name in front.

/** A failure with a cause and a fix, both written for the person running the command. */
export class HelperError extends Error {
  readonly fix: string;
  constructor(cause: string, fix: string) {
    super(cause);
    this.name = 'HelperError';
    this.fix = fix;
  }
}

/** The command line is wrong: exit status 2, nothing was done. */
export class UsageError extends HelperError {
  constructor(cause: string, fix = "see '--help'") {
    super(cause, fix);
    this.name = 'UsageError';
  }
}

/** The longest line oneLine returns, in characters: below PIPE_BUF, so that it goes out in one write. */
export const MAX_LINE = 1024;

/**
 * Characters a terminal or a log viewer would act on rather than show: C0
 * and C1 controls, DEL, line and paragraph separators and the bidirectional
 * embeddings, overrides and isolates (which can make a line read as another).
 */
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Formats any error as the single line a helper prints: no stack, no newline
 * inside, nothing a terminal would interpret, at most MAX_LINE characters (a
 * longer one keeps its start, with the program's name, and its end, with the
 * fix, around " ... ": a caller's argument can be as long as argv allows).
 */
export function oneLine(program: string, err: unknown): string {
  let text: string;
  if (err instanceof HelperError) text = `${err.message}; ${err.fix}`;
  else if (err instanceof Error) text = err.message;
  else text = String(err);
  const line = `${program}: ${text}`.replace(/[\r\n\t]+/g, ' ').replace(UNPRINTABLE, '?');
  if (line.length <= MAX_LINE) return line;
  const half = (MAX_LINE - 5) / 2;
  return `${line.slice(0, Math.ceil(half))} ... ${line.slice(line.length - Math.floor(half))}`;
}
