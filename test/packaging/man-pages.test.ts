// Every helper executable has a man page (the Debian package refuses to
// build without one), and the page documents every option the program accepts.
// The helpers' pages are written by packaging/man-pages.ts (npm run man) from
// lib/helper/option-docs.ts, which --help is made from too.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { OPTION_DOCS, optionDocs } from '../../lib/helper/option-docs.ts';
import { optionSpecs } from '../../lib/helper/options.ts';
import { HELPER_PROGRAMS } from '../../lib/helper/programs.ts';
import { usage } from '../../lib/helper/usage.ts';
import { BuildError, datedManPage, defaultExecutables } from '../../packaging/build.ts';
import { isPrivilegedHelper } from '../../packaging/deb.ts';
import { manPage, manPagePath } from '../../packaging/man-pages.ts';
import { REPO } from '../support/paths.ts';
import { IS_CI } from '../support/privileged.ts';

/** Every program the package installs (the helpers share one executable, helpers/qemu-net-helper.ts, under their own names). */
const helperFiles = defaultExecutables().flatMap((e) => e.names);
/** The privileged helpers are documented in section 8, other programs (qemu-net-launch) in section 1. */
const page = (name: string) => `${name}.${isPrivilegedHelper(name) ? 8 : 1}`;

t.test('each installed program has docs/man/NAME.8 (helpers) or NAME.1 (other programs)', async (t) => {
  for (const name of helperFiles) t.ok(existsSync(join(REPO, 'docs/man', page(name))), page(name));
});

t.test('docs/man holds the helper pages as npm run man writes them', async (t) => {
  for (const program of HELPER_PROGRAMS) {
    const committed = existsSync(manPagePath(program)) ? readFileSync(manPagePath(program), 'utf8') : undefined;
    t.equal(committed, manPage(program), `docs/man/${program.name}.8 is out of date: edit lib/helper/option-docs.ts (or packaging/man-pages.ts), not the page, then run npm run man and commit the result`);
  }
});

t.test('option-docs.ts documents exactly the options each helper parses', async (t) => {
  for (const program of HELPER_PROGRAMS) {
    const parsed = optionSpecs(program).flatMap((s) => [s.name, ...(s.aliases ?? [])]).sort();
    t.same(optionDocs(program).flatMap((d) => d.options).sort(), parsed, program.name);
  }
  const everywhere = OPTION_DOCS.flatMap((d) => d.options);
  t.equal(new Set(everywhere).size, everywhere.length, 'no option has two entries');
});

t.test('--help and the man page show the same synopsis', async (t) => {
  for (const program of HELPER_PROGRAMS) {
    const helpSynopsis = usage(program).split('\n\n')[0]!;
    const page = manPage(program);
    const manSynopsis = page.slice(page.indexOf('.SH SYNOPSIS'), page.indexOf('.SH DESCRIPTION')).replace(/\\-/g, '-');
    const options = (text: string) => [...new Set(text.match(/--[a-z][a-z-]*(=@)?/g))].sort();
    t.same(options(manSynopsis), options(helpSynopsis), `${program.name}: the same options in both synopses`);
  }
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

const allPages = ['net-helper.conf.5', ...helperFiles.map(page)];

t.test('the packages date every page by SOURCE_DATE_EPOCH in .TH', async (t) => {
  for (const name of allPages) {
    const text = readFileSync(join(REPO, 'docs/man', name), 'utf8');
    const dated = datedManPage(text, 1700000000, name);
    t.match(dated, /^\.TH \S+ [1-8] "2023-11-14" "qemu\\-net\\-helper" /m, `${name}: 2023-11-14 in .TH`);
    t.equal(dated.replace('"2023-11-14"', '""'), text, `${name}: nothing else changes`);
  }
  t.throws(() => datedManPage('.SH NAME\nx\n', 0, 'x.1'), new BuildError('x.1 has no .TH line with a date field'));
});

// groff breaks long lines; with hyphenation it splits words, option names
// included (--check-con- / fig). Each page turns it off (.hy 0) and no option
// may be broken at a hyphen of its own either, at any terminal width.
t.test('rendered at any width, no option name is hyphenated or broken', async (t) => {
  if (spawnSync('sh', ['-c', 'command -v groff'], { stdio: 'ignore' }).status !== 0) {
    if (IS_CI) throw new Error('groff is missing (groff-base; bash .ci/setup installs it)');
    return t.pass('skipped: groff is missing (apt-get install groff-base)');
  }
  for (const name of allPages) {
    const broken: string[] = [];
    for (let width = 30; width <= 100; width += 3) {
      const r = spawnSync('groff', ['-man', '-Tutf8', `-rLL=${width}n`, '-P-cbu', join(REPO, 'docs/man', name)], { encoding: 'utf8' });
      if (r.status !== 0) { t.fail(`groff ${name}: ${r.stderr}`); break; }
      for (const line of r.stdout.split('\n')) {
        if (/\u2010$/.test(line) || /(^|[\s([])--?[A-Za-z0-9][A-Za-z0-9-]*-$/.test(line)) broken.push(`${width}: ${line.trim()}`);
      }
    }
    t.same(broken, [], `${name}: no hyphenated word, no option broken at a line end (widths 30 to 100)`);
  }
});
