// The policy file the package ships: it allows no one as installed, and
// every commented example is valid in the grammar the helpers read.

import { readFileSync } from 'node:fs';
import t from 'tap';
import { assemblePolicy, parsePolicyText } from '../../lib/policy/index.ts';

const text = readFileSync(new URL('../../packaging/net-helper.conf', import.meta.url), 'utf8');

t.test('as shipped: no statement at all', async (t) => {
  const parsed = parsePolicyText(text, 'net-helper.conf');
  t.same(parsed.problems, []);
  t.same(parsed.statements, [], 'everything is a comment: nobody but root is allowed');
});

t.test('the examples, uncommented, parse and assemble without problems', async (t) => {
  const examples = text.split('\n').map((l) => l.replace(/^#([a-z])/, '$1')).filter((l) => !l.startsWith('include ')).join('\n');
  const parsed = parsePolicyText(examples, 'examples.conf');
  t.same(parsed.problems, []);
  const exampleLines = text.split('\n').filter((l) => /^#[a-z]/.test(l) && !l.startsWith('#include ')).length;
  t.equal(parsed.statements.length, exampleLines, 'every example line is a statement');
  const { policy, problems } = assemblePolicy(parsed.statements, ['examples.conf']);
  t.same(problems, []);
  t.ok(policy.networks.has('lan'));
  t.ok(policy.pools.has('vfs'));
});
