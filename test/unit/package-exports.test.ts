// The package's own name resolves to the compiled library with its types,
// as it will for a program that installs it (npm test builds dist/lib first).

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';

t.test('import "qemu-net-helper" gives the client API', async (t) => {
  // A variable specifier: the typecheck runs before dist/lib is built.
  const name: string = 'qemu-net-helper';
  const api = await import(name);
  t.equal(typeof api.callHelper, 'function');
  t.equal(typeof api.parseHelperRecord, 'function');
  t.equal(typeof api.HelperCallError, 'function');
  t.match(import.meta.resolve('qemu-net-helper'), /\/dist\/lib\/index\.js$/, 'compiled JavaScript, not TypeScript source');
  t.ok(existsSync(fileURLToPath(new URL('../../dist/lib/index.d.ts', import.meta.url))), 'declarations are there');
  t.ok(existsSync(fileURLToPath(new URL('../../dist/lib/client.d.ts', import.meta.url))));
});
