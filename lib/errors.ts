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

/** Formats any error as the single line a helper prints: no stack, no newline inside. */
export function oneLine(program: string, err: unknown): string {
  let text: string;
  if (err instanceof HelperError) text = `${err.message}; ${err.fix}`;
  else if (err instanceof Error) text = err.message;
  else text = String(err);
  return `${program}: ${text}`.replace(/[\r\n\t]+/g, ' ').replace(/[\x00-\x1f\x7f]/g, '?');
}
