import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { microvmToProto } from '../../src/adapters/api/convert.js';
import { encodeOnce, withEmbeddedEncoding } from '../../src/adapters/api/grpc/service-definition.js';
import { frozen } from '../../src/adapters/store/vm-row-cache.js';
import { MicroVMSchema } from '../../src/gen/flintlock/types/microvm_pb.js';
import {
  GetMicroVMResponseSchema,
  ListMessageSchema,
  ListMicroVMsResponseSchema,
  ListMicroVMsRequestSchema,
} from '../../src/gen/microvm/services/api/v1alpha1/microvms_pb.js';
import { sampleVm } from '../helpers/fixtures.js';

describe('answers built from each VM’s kept encoding', () => {
  const vms = [0, 1, 2].map((i) => {
    const vm = sampleVm({ id: { name: `vm${i}` } });
    return { ...vm, spec: { ...vm.spec, labels: { n: String(i) }, metadata: { 'user-data': 'x'.repeat(300 * (i + 1)) } } };
  });

  it('are byte for byte what toBinary writes (List of 0, 1 and 3 VMs, Get, ListMessage)', () => {
    for (const count of [0, 1, 3]) {
      const microvms = vms.slice(0, count).map(microvmToProto);
      const answer = withEmbeddedEncoding(create(ListMicroVMsResponseSchema, { microvm: microvms }), ListMicroVMsResponseSchema.field.microvm, microvms);
      assert.deepEqual(encodeOnce(ListMicroVMsResponseSchema, answer), Buffer.from(toBinary(ListMicroVMsResponseSchema, answer)));
    }
    const microvm = microvmToProto(vms[2] ?? sampleVm());
    for (const schema of [GetMicroVMResponseSchema, ListMessageSchema]) {
      const answer = withEmbeddedEncoding(create(schema, { microvm }), schema.field.microvm, [microvm]);
      assert.deepEqual(encodeOnce(schema, answer), Buffer.from(toBinary(schema, answer)));
    }
  });

  it('refuses a field that does not hold messages', () => {
    assert.throws(() => withEmbeddedEncoding(create(ListMicroVMsRequestSchema, {}), ListMicroVMsRequestSchema.field.namespace, []), /is not a message field/);
  });

  it('convert a frozen VM once; a VM that is not frozen every time', () => {
    const vm = sampleVm();
    assert.notEqual(microvmToProto(vm), microvmToProto(vm));
    const kept = frozen(sampleVm());
    assert.equal(microvmToProto(kept), microvmToProto(kept));
    assert.equal(encodeOnce(MicroVMSchema, microvmToProto(kept)), encodeOnce(MicroVMSchema, microvmToProto(kept)));
  });
});
