// The Node module as people install it: `npm pack` (its prepack builds
// dist/lib; npm test has built it already), then `npm install` of the tarball in a fresh project, used from
// ESM, from CommonJS (Node 24's require of an ES module) and from TypeScript
// (the declarations resolve and type-check). The tarball carries the library,
// LICENSE and README only: no tests, no sources of the helpers (which come from
// the .deb/.rpm, with their privileges).

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { REPO } from '../support/paths.ts';

const run = (cmd: string, args: string[], cwd: string) => spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 240_000, env: { ...process.env, npm_config_update_notifier: 'false' } });

t.test('npm pack, then npm install in a fresh project: ESM, CommonJS and TypeScript users get the client API', async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'qnh-npm-pack-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  // npm test builds dist/lib first; here prepack (which builds it for people) is not run again, so that no other
  // test running meanwhile sees dist/lib half rewritten. It is checked to be that build.
  t.equal(JSON.parse(run(process.execPath, ['-p', 'JSON.stringify(require("./package.json").scripts.prepack)'], REPO).stdout), 'tsc -p tsconfig.build.json', 'prepack builds dist/lib');
  const pack = run('npm', ['pack', '--ignore-scripts', '--pack-destination', work, '--json'], REPO);
  t.equal(pack.status, 0, pack.stderr);
  const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const files = info!.files.map((f) => f.path);
  t.same(files.filter((f) => !f.startsWith('dist/lib/')).sort(), ['LICENSE', 'README.md', 'package.json'], 'nothing but the library, the license and the README');
  t.same(files.filter((f) => /test|\.ts$/.test(f) && !f.endsWith('.d.ts')), [], 'no tests and no TypeScript sources');
  for (const f of ['dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/client.js', 'dist/lib/client.d.ts']) t.ok(files.includes(f), `${f} is in it`);

  const app = join(work, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  const install = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, info!.filename)], app);
  t.equal(install.status, 0, install.stderr);

  const esm = run(process.execPath, ['--input-type=module', '-e', "import { VERSION, callHelper, parseHelperRecord } from 'qemu-net-helper'; console.log(VERSION, typeof callHelper, typeof parseHelperRecord)"], app);
  t.equal(esm.stdout.trim(), `${JSON.parse(run(process.execPath, ['-p', 'JSON.stringify(require("./package.json").version)'], REPO).stdout)} function function`, `ESM import works ${esm.stderr}`);
  const cjs = run(process.execPath, ['-e', "const m = require('qemu-net-helper'); console.log(typeof m.callHelper, typeof m.HelperCallError)"], app);
  t.equal(cjs.stdout.trim(), 'function function', `CommonJS require works (require of an ES module) ${cjs.stderr}`);

  writeFileSync(join(app, 'use.ts'), [
    "import { callHelper, HelperCallError, type HelperResult } from 'qemu-net-helper';",
    'export async function probe(): Promise<string> {',
    "  const r: HelperResult = await callHelper({ command: ['/usr/libexec/qemu-net-helper-vepa'], args: ['--dev=eth0'] });",
    '  const name: string = r.record.ifname;',
    '  await r.release();',
    '  return name;',
    '}',
    'export const isError = (e: unknown): boolean => e instanceof HelperCallError;',
    '// @ts-expect-error: the record has no such field',
    'export const wrong = (r: HelperResult) => r.record.nosuch;',
  ].join('\n'));
  const tsc = run(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext',
    '--target', 'es2022', '--types', 'node', '--typeRoots', join(REPO, 'node_modules/@types'), 'use.ts'], app);
  t.equal(tsc.status, 0, `TypeScript resolves the types and checks a use of them: ${tsc.stdout}${tsc.stderr}`);
});
