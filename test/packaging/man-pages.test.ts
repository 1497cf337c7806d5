// Every helper executable has a man page (the Debian package refuses to
// build without one), and the page documents every option the program accepts.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { optionSpecs } from '../../lib/helper/options.ts';
import { HELPER_PROGRAMS } from '../../lib/helper/programs.ts';
import { defaultExecutables } from '../../packaging/build.ts';
import { isPrivilegedHelper } from '../../packaging/deb.ts';
import { REPO } from '../support/paths.ts';

/** Every program the package installs (the helpers share one executable, helpers/qemu-net-helper.ts, under their own names). */
const helperFiles = defaultExecutables().flatMap((e) => e.names);
/** The privileged helpers are documented in section 8, other programs (qemu-net-launch) in section 1. */
const page = (name: string) => `${name}.${isPrivilegedHelper(name) ? 8 : 1}`;

t.test('each installed program has docs/man/NAME.8 (helpers) or NAME.1 (other programs)', async (t) => {
  for (const name of helperFiles) t.ok(existsSync(join(REPO, 'docs/man', page(name))), page(name));
});

t.test('each page names its program and documents all of its options', async (t) => {
  for (const program of HELPER_PROGRAMS) {
    const path = join(REPO, 'docs/man', `${program.name}.8`);
    if (!existsSync(path)) {
      t.fail(`${program.name}.8 is missing`);
      continue;
    }
    const page = readFileSync(path, 'utf8');
    t.match(page, new RegExp(`^\\.TH ${program.name.toUpperCase().replace(/-/g, '\\\\-')} 8 `, 'm'), `${program.name}: .TH`);
    // roff spells a hyphen in an option \-; --name is \-\-name in the source.
    const documented = (name: string) => page.includes(`\\-\\-${name.replace(/-/g, '\\-')}`);
    for (const spec of optionSpecs(program)) {
      t.ok(documented(spec.name), `${program.name}.8 documents --${spec.name}`);
      for (const alias of spec.aliases ?? []) t.ok(documented(alias), `${program.name}.8 documents --${alias}`);
    }
    for (const mode of program.modes) t.match(page, new RegExp(`\\b${mode}\\b`), `${program.name}.8 names mode ${mode}`);
  }
});

t.test('pages are well-formed roff', async (t) => {
  for (const name of helperFiles) {
    const text = readFileSync(join(REPO, 'docs/man', page(name)), 'utf8');
    for (const section of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'EXIT STATUS', 'SEE ALSO']) {
      t.match(text, new RegExp(`^\\.SH ${section}$`, 'm'), `${page(name)} has ${section}`);
    }
    if (isPrivilegedHelper(name)) t.match(text, /^\.SH FILES$/m, `${page(name)} has FILES`);
    t.notMatch(text, /^[^.\\'].*(?<!\\)--/m, `${page(name)} writes every -- as \\-\\- (no stray hyphens that render as dashes)`);
  }
});
