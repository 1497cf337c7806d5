// The release version, compiled in (a unit test keeps it equal to package.json's).
export const VERSION = '0.1.0';

/** What every program prints for --version (the SEA prologue too: packaging/sea-entry.cjs). */
export const versionLine = (program: string): string => `${program} ${VERSION}\n`;
