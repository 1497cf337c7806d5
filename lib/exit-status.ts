// The exit statuses every program here uses (the man pages' EXIT STATUS).
export const EXIT_OK = 0;
/** Failure or refusal; nothing is left behind. */
export const EXIT_FAILURE = 1;
/** The command line is wrong; nothing was done. */
export const EXIT_USAGE = 2;
