// Enum names in gateway JSON. grpc-gateway's DiscardUnknown (and protobuf-es' ignoreUnknownFields)
// drops an enum name it doesn't know, so `"type":"BOGUS"` would quietly become the zero value
// (MACVTAP): a different VM from the one asked for. Unknown fields stay ignored (COMPAT §1); an
// unknown enum name is refused, naming the field.
import { echo } from '../../../core/identifiers.js';
import type { DescEnum, DescField, DescMessage, JsonObject, JsonValue } from '@bufbuild/protobuf';

const isObject = (v: JsonValue): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

function enumValueProblem(e: DescEnum, value: JsonValue, path: string): string | undefined {
  // Numbers (any, proto3 enums are open) and null are left to decoding and validation.
  if (typeof value !== 'string' || e.values.some((v) => v.name === value)) return undefined;
  return `${path}: unknown value ${echo(value)} (expected one of ${e.values.map((v) => v.name).join(', ')})`;
}

/** `check` on each element of a list or value of a map, first problem wins. */
function eachProblem(value: JsonValue, path: string, check: (v: JsonValue, at: string) => string | undefined): string | undefined {
  const entries: Array<[string, JsonValue]> = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : isObject(value) ? Object.entries(value) : [];
  for (const [key, v] of entries) {
    const problem = check(v, `${path}[${key}]`);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function elementProblem(element: DescEnum | DescMessage | undefined, value: JsonValue, path: string): string | undefined {
  if (element === undefined) return undefined;
  return eachProblem(value, path, (v, at) => (element.kind === 'enum' ? enumValueProblem(element, v, at) : unknownEnumName(element, v, at)));
}

function fieldProblem(field: DescField, value: JsonValue, path: string): string | undefined {
  switch (field.fieldKind) {
    case 'enum':
      return enumValueProblem(field.enum, value, path);
    case 'message':
      return unknownEnumName(field.message, value, path);
    case 'list':
      return elementProblem(field.listKind === 'enum' ? field.enum : field.listKind === 'message' ? field.message : undefined, value, path);
    case 'map':
      return elementProblem(field.mapKind === 'enum' ? field.enum : field.mapKind === 'message' ? field.message : undefined, value, path);
    case 'scalar':
      return undefined;
  }
}

/**
 * The first enum field in `json` (a message of type `desc`, fields by JSON or proto name) holding a
 * name its enum doesn't have, as `path: problem`; undefined when there is none.
 */
export function unknownEnumName(desc: DescMessage, json: JsonValue, path = ''): string | undefined {
  // Well-known types have their own JSON forms and no enums a client writes by name.
  if (!isObject(json) || desc.typeName.startsWith('google.protobuf.')) return undefined;
  for (const field of desc.fields) {
    const value = json[field.jsonName] ?? json[field.name];
    const problem = value === undefined ? undefined : fieldProblem(field, value, path === '' ? field.name : `${path}.${field.name}`);
    if (problem !== undefined) return problem;
  }
  return undefined;
}
