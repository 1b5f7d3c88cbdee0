// Bridges protobuf-es service descriptors to grpc-js: serializers built from the schemas, so
// grpc-js carries protobuf-es messages on both the server and the client side.
import { create, fromBinary, toBinary, type DescField, type DescMessage, type DescService, type Message, type MessageShape } from '@bufbuild/protobuf';
import { BinaryWriter, configureTextEncoding, getTextEncoding, WireType } from '@bufbuild/protobuf/wire';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';

// protobuf-es decodes strings with a default TextDecoder, which drops a leading U+FEFF (a BOM):
// a request's "\ufeffns" arrived as "ns" and "\ufeff" as "" (every namespace). A protobuf
// string holds every code point as sent (grpc-go keeps it), so strings are decoded as they are.
const utf8 = getTextEncoding();
const asSent = new TextDecoder('utf-8', { ignoreBOM: true });
const asSentStrict = new TextDecoder('utf-8', { ignoreBOM: true, fatal: true });
configureTextEncoding({ ...utf8, decodeUtf8: (bytes, strict) => (strict === true ? asSentStrict : asSent).decode(bytes) });

const encoded = new WeakMap<object, Buffer>();

/** The bytes of `value` as the response serializer will send them (encoded once, then reused). */
export function encodeOnce<Desc extends DescMessage>(schema: Desc, value: MessageShape<Desc>): Buffer {
  const known = encoded.get(value);
  if (known !== undefined) return known;
  const bytes = Buffer.from(toBinary(schema, create(schema, value)));
  encoded.set(value, bytes);
  return bytes;
}

/**
 * `value`, whose only field set is the message field `field` (singular or repeated) holding
 * `items`, with its encoding built from each item's own (kept) encoding: a List answer of VMs
 * that did not change costs a copy, not a protobuf encoding of every VM. The bytes are exactly
 * what toBinary writes for such a message (one length-delimited record per item, in order).
 */
export function withEmbeddedEncoding<T extends object>(value: T, field: DescField, items: readonly Message[]): T {
  const itemSchema = field.fieldKind === 'message' || (field.fieldKind === 'list' && field.listKind === 'message') ? field.message : undefined;
  if (itemSchema === undefined) throw new Error(`${field.toString()} is not a message field`);
  const writer = new BinaryWriter();
  for (const item of items) writer.tag(field.number, WireType.LengthDelimited).bytes(encodeOnce(itemSchema, item));
  encoded.set(value, Buffer.from(writer.finish()));
  return value;
}

function methodDefinition<I extends DescMessage, O extends DescMessage>(
  service: DescService,
  name: string,
  input: I,
  output: O,
  responseStream: boolean,
): MethodDefinition<MessageShape<I>, MessageShape<O>> {
  return {
    path: `/${service.typeName}/${name}`,
    requestStream: false,
    responseStream,
    // toBinary needs a real message ($typeName); create() also accepts one, so plain objects work.
    requestSerialize: (value: MessageShape<I>) => Buffer.from(toBinary(input, create(input, value))),
    requestDeserialize: (bytes: Buffer) => fromBinary(input, bytes),
    // A response object reused across calls (the Get cache) is encoded once. Responses are
    // never mutated after they are handed to grpc-js, so the bytes stay right.
    responseSerialize: (value: MessageShape<O>) => encodeOnce(output, value),
    responseDeserialize: (bytes: Buffer) => fromBinary(output, bytes),
  };
}

/** A grpc-js ServiceDefinition for a protobuf-es service (unary and server-streaming methods). */
export function grpcServiceDefinition(service: DescService): ServiceDefinition {
  const entries = service.methods.map((method) => {
    if (method.methodKind !== 'unary' && method.methodKind !== 'server_streaming') {
      throw new Error(`${service.typeName}/${method.name}: only unary and server-streaming methods are supported`);
    }
    return [method.localName, methodDefinition(service, method.name, method.input, method.output, method.methodKind === 'server_streaming')] as const;
  });
  return Object.fromEntries(entries);
}
