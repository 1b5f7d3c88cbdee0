// The plans' shape: which steps wait for which (the orders that must hold), and which may overlap.
// Then the create plan run for real on the in-memory ports with its pulls held open, to see the
// overlap and the write-through of status from steps that finish in any order.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { monotonicFactory } from 'ulid';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { StaticProviderRegistry } from '../../src/adapters/providers/registry.js';
import type { MicroVM, NetworkInterfaceSpec } from '../../src/core/model.js';
import { createPlan, deletePlan } from '../../src/core/plans.js';
import { executeSteps, StepContext, type Plan, type StepPorts } from '../../src/core/steps/step.js';
import type { CreateInput } from '../../src/core/validation.js';
import { MemoryCgroups, MemoryCidata, MemoryFilesystem, MemoryImages, MemoryNetwork, MemoryProcesses, MemoryProvider } from '../helpers/doubles.js';
import { createTestService, type TestService } from '../helpers/service.js';

const INTERFACES: NetworkInterfaceSpec[] = [
  { deviceId: 'eth0', type: 'macvtap' },
  { deviceId: 'eth1', type: 'tap' },
];

function input(): CreateInput {
  return {
    name: 'vm1',
    namespace: 'ns1',
    labels: {},
    vcpu: 1,
    memoryMb: 256,
    kernel: { image: 'registry.local/kernel:1', cmdline: {}, addNetworkConfig: false },
    initrd: { image: 'registry.local/initrd:1' },
    rootVolume: { id: 'root', readOnly: false, source: { containerImage: 'registry.local/root:1' } },
    additionalVolumes: [{ id: 'data', readOnly: true, source: { containerImage: 'registry.local/data:1' } }],
    interfaces: INTERFACES,
    metadata: {},
    provider: '',
    allowGuestAgent: false,
  };
}

/** Every step that `name` waits for, directly or through others. */
function waitsFor(plan: Plan, name: string): Set<string> {
  const byName = new Map(plan.map((p) => [p.step.name, p.after]));
  assert.ok(byName.has(name), `the plan has ${name}`);
  const seen = new Set<string>();
  const visit = (n: string): void => {
    for (const before of byName.get(n) ?? []) {
      if (seen.has(before)) continue;
      seen.add(before);
      visit(before);
    }
  };
  visit(name);
  return seen;
}

describe('plans', () => {
  let testService: TestService;
  let network: MemoryNetwork;
  let fs: MemoryFilesystem;
  let images: MemoryImages;
  let ports: StepPorts;
  let vm: MicroVM;

  beforeEach(() => {
    testService = createTestService('fl-plans-');
    network = new MemoryNetwork();
    fs = new MemoryFilesystem();
    images = new MemoryImages(fs);
    const processes = new MemoryProcesses();
    const nextUlid = monotonicFactory();
    ports = {
      repo: testService.repo,
      network,
      images,
      fs,
      providers: new StaticProviderRegistry([new MemoryProvider(processes)], 'qemu'),
      clock: { now: () => Date.now() },
      ids: { next: () => nextUlid() },
      hostNetwork: { parentIface: 'eth0', bridgeName: 'br0', deviceOwner: '0123456789ab' },
      processes,
      cidata: new MemoryCidata(fs),
      deleteVmTimeoutMs: 1000,
      sandbox: { idRange: { start: 1_879_048_192, count: 65_536 }, cgroups: new MemoryCgroups(), limits: { memoryOverheadMb: 64, pidsMax: 512 } },
    };
    const created = testService.service.create(input());
    assert.ok(created.ok, created.ok ? '' : created.error.message);
    vm = created.value;
  });
  afterEach(() => testService.close());

  const context = (): StepContext => new StepContext(testService.repo.get(vm.id.uid) ?? vm, ports, silentLogger());

  it('create: the orders that must hold', () => {
    const plan = createPlan(context());
    const must = (step: string, before: string[]): void => {
      const waits = waitsFor(plan, step);
      for (const b of before) assert.ok(waits.has(b), `${step} waits for ${b}`);
    };
    must('vm_state_dir_create', ['vmm_identity']);
    must('network_iface_create[eth0]', ['vmm_identity']);
    must('network_iface_create[eth1]', ['vmm_identity']);
    must('macvtap_device_node[eth0]', ['network_iface_create[eth0]', 'vm_state_dir_create']);
    must('kernel_image', ['vmm_identity']);
    must('initrd_image', ['vmm_identity']);
    must('volume_image[root]', ['vm_state_dir_create']);
    must('volume_image[data]', ['vm_state_dir_create']);
    must('cloud_init_disk', ['vm_state_dir_create', 'network_iface_create[eth0]', 'network_iface_create[eth1]', 'volume_image[root]', 'volume_image[data]']);
    const files = plan.map((p) => p.step.name).filter((n) => !n.startsWith('vmm_') || n === 'vmm_identity');
    must('vmm_files_access', files);
    must('vmm_restart', [...files, 'vmm_files_access']);
    must('vmm_start', [...files, 'vmm_files_access', 'vmm_restart']);
    must('vmm_resume', ['vmm_start']);
  });

  it('create: NICs, kernel, initrd and volumes wait for none of each other', () => {
    const plan = createPlan(context());
    const independent = [
      'network_iface_create[eth0]',
      'network_iface_create[eth1]',
      'kernel_image',
      'initrd_image',
      'volume_image[root]',
      'volume_image[data]',
    ];
    for (const a of independent) {
      const waits = waitsFor(plan, a);
      for (const b of independent) assert.ok(!waits.has(b), `${a} does not wait for ${b}`);
    }
  });

  it('create, stopped: no VMM steps but the stop, after everything else', () => {
    const stopped = testService.service.lifecycle(vm.id.uid, 'stop');
    assert.ok(stopped.ok);
    const plan = createPlan(context());
    const names = plan.map((p) => p.step.name);
    assert.ok(!names.includes('vmm_start'));
    const others = names.filter((n) => n !== 'vmm_stop');
    assert.deepEqual([...waitsFor(plan, 'vmm_stop')].sort(), others.sort());
  });

  it('delete: the VMM stopped before anything is removed, the state dir last', async () => {
    const ctx = context();
    await executeSteps(createPlan(ctx), silentLogger(), { signal: ctx.signal });
    const plan = deletePlan(context());
    const names = plan.map((p) => p.step.name);
    const devices = names.filter((n) => n.startsWith('network_iface_delete['));
    assert.equal(devices.length, 2);
    for (const n of [...devices, 'vmm_cgroup_delete']) {
      assert.deepEqual([...waitsFor(plan, n)], ['vmm_stop'], `${n} waits for the stop only`);
    }
    assert.deepEqual([...waitsFor(plan, 'vm_state_dir_delete')].sort(), names.filter((n) => n !== 'vm_state_dir_delete').sort());
  });

  it('create, run: pulls overlap with each other and the NICs, devices are recorded while the pulls run, and no status field is lost', async () => {
    const held = new Map<string, () => void>();
    images.delay = (ref) => new Promise<void>((resolve) => held.set(ref, resolve));
    const ctx = context();
    const running: string[][] = [];
    const run = executeSteps(createPlan(ctx), silentLogger(), { signal: ctx.signal, onStep: (names) => running.push([...names]) });
    const until = async (what: string, ok: () => boolean): Promise<void> => {
      for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setImmediate(r));
      assert.ok(ok(), what);
    };
    await until('all four pulls are running at once', () => held.size === 4);
    // The NICs finished while every pull is still held: recorded, aliased, in the status.
    await until('both NICs made', () => network.links.size === 2);
    const stored = (): MicroVM | undefined => testService.repo.get(vm.id.uid);
    await until('both NICs in the status', () => Object.values(stored()?.status.interfaces ?? {}).every((i) => i.index > 0));
    assert.deepEqual(Object.keys(stored()?.status.interfaces ?? {}).sort(), ['eth0', 'eth1']);
    assert.equal(testService.repo.devices(vm.id.uid).length, 2);
    const together = (...steps: string[]): boolean => running.some((names) => steps.every((s) => names.includes(s)));
    assert.ok(together('network_iface_create[eth0]', 'network_iface_create[eth1]', 'kernel_image', 'initrd_image'), JSON.stringify(running));
    assert.ok(together('kernel_image', 'initrd_image', 'volume_image[root]', 'volume_image[data]', 'macvtap_device_node[eth0]'), JSON.stringify(running));
    // Released in the reverse of plan order: each step writes its own field into the latest status.
    for (const ref of ['registry.local/data:1', 'registry.local/root:1', 'registry.local/initrd:1', 'registry.local/kernel:1']) held.get(ref)?.();
    await run;
    const status = stored()?.status;
    assert.ok(status?.kernelMount !== undefined && status.initrdMount !== undefined);
    assert.deepEqual(Object.keys(status.volumes).sort(), ['data', 'root']);
    assert.deepEqual(Object.keys(status.images ?? {}).sort(), ['initrd', 'kernel', 'volume:data', 'volume:root']);
    assert.deepEqual(Object.keys(status.interfaces).sort(), ['eth0', 'eth1']);
    assert.ok(status.vmmIdentity !== undefined && status.vmm !== undefined);
  });
});
