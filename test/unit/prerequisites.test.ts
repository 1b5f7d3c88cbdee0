// The daemon's start-up check of the programs it will run, and the host dependency list it names
// packages from.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { HOST_DEPENDENCIES_FILE, missingProgramMessage, packageProviding, parseHostDependencies } from '../../src/adapters/host/dependencies.js';
import { StaticProviderRegistry } from '../../src/adapters/providers/registry.js';
import { checkPrerequisites, providerPrograms, SANDBOX_PROGRAMS, VOLUME_PROGRAMS } from '../../src/daemon/prerequisites.js';
import { MemoryProcesses, MemoryProvider } from '../helpers/doubles.js';

const processes = new MemoryProcesses();
const qemu = (): MemoryProvider => new MemoryProvider(processes, 'qemu', ['macvtap', 'tap', 'qcow2-overlay']);
const firecracker = (): MemoryProvider => new MemoryProvider(processes, 'firecracker', ['macvtap', 'tap', 'metadata-service']);
const IP = { program: 'ip', for: 'host networking (taps, macvtaps)' };
const findAllBut =
  (...missing: string[]) =>
  (program: string): string | undefined =>
    missing.includes(program) ? undefined : `/usr/bin/${program}`;

describe('host-dependencies.txt', () => {
  const deps = parseHostDependencies(readFileSync(HOST_DEPENDENCIES_FILE, 'utf8'));

  it('names the package of every program the daemon checks for', () => {
    for (const program of ['ip', 'mkfs.ext4', 'qemu-system-x86_64', 'qemu-img']) {
      assert.notEqual(packageProviding(program, deps), undefined, program);
    }
    assert.equal(packageProviding('/usr/bin/qemu-img', deps), 'qemu-utils');
    assert.equal(missingProgramMessage('dnsmasq', deps), '"dnsmasq" not found (install the Debian package dnsmasq-base)');
    assert.equal(missingProgramMessage('firecracker', deps), '"firecracker" not found');
  });

  it('refuses a malformed line, naming it', () => {
    assert.throws(() => parseHostDependencies('# c\nqemu-utils install qemu\n'), /line 2: expected "package install\|extract who program\.\.\."/);
    assert.throws(() => parseHostDependencies('qemu-utils copy qemu qemu-img\n'), /line 1/);
    assert.deepEqual(parseHostDependencies('x install a,b p q # why\n'), [{ package: 'x', how: 'install', who: ['a', 'b'], programs: ['p', 'q'] }]);
  });
});

describe('checkPrerequisites', () => {
  it('passes when everything is there', () => {
    const registry = new StaticProviderRegistry([qemu(), firecracker()], 'qemu');
    assert.deepEqual(checkPrerequisites(registry, [IP, ...VOLUME_PROGRAMS], findAllBut()), { errors: [], warnings: [] });
  });

  it('refuses when a program of the default provider is missing, naming it and its package', () => {
    const registry = new StaticProviderRegistry([qemu(), firecracker()], 'qemu');
    // mkfs.vfat and mcopy are not asked for: the cidata disk is written in-process.
    const { errors } = checkPrerequisites(registry, [IP, ...VOLUME_PROGRAMS], findAllBut('qemu-img', 'mcopy', 'mkfs.vfat'));
    assert.deepEqual(errors, [
      'the default microvm provider qemu cannot run here: "qemu-img" not found (install the Debian package qemu-utils), needed for qcow2 volume overlays of qemu VMs',
    ]);
  });

  it('refuses when the default VMM is unavailable, with the reason', () => {
    const provider = qemu();
    provider.available = { available: false, reason: 'qemu-bin: "qemu-system-x86_64" not found (install the Debian package qemu-system-x86)' };
    const { errors } = checkPrerequisites(new StaticProviderRegistry([provider], 'qemu'), [], findAllBut());
    assert.deepEqual(errors, [
      'the default microvm provider qemu cannot run here: qemu-bin: "qemu-system-x86_64" not found (install the Debian package qemu-system-x86)',
    ]);
  });

  it('refuses when ip or mkfs.ext4 is missing, whatever the provider', () => {
    const registry = new StaticProviderRegistry([firecracker()], 'firecracker');
    const { errors } = checkPrerequisites(registry, [IP, ...VOLUME_PROGRAMS], findAllBut('ip', 'mkfs.ext4'));
    assert.deepEqual(errors, [
      '"ip" not found (install the Debian package iproute2), needed for host networking (taps, macvtaps)',
      '"mkfs.ext4" not found (install the Debian package e2fsprogs), needed for volumes from images',
    ]);
  });

  it('refuses when a program of the VMM launch chain is missing, naming its priority-required package (not in the list)', () => {
    const registry = new StaticProviderRegistry([firecracker()], 'firecracker');
    const { errors } = checkPrerequisites(registry, SANDBOX_PROGRAMS, findAllBut('setpriv', 'perl'));
    assert.deepEqual(errors, [
      '"perl" not found (install the Debian package perl-base), needed for opening taps for VMMs',
      '"setpriv" not found (install the Debian package util-linux), needed for running VMMs as their own uids',
    ]);
    assert.deepEqual(
      SANDBOX_PROGRAMS.map((n) => n.program),
      ['sh', 'perl', 'setpriv'],
    );
  });

  it('only warns about a provider that is not the default', () => {
    const fc = firecracker();
    fc.available = { available: false, reason: 'firecracker-bin: "firecracker" not found' };
    const report = checkPrerequisites(new StaticProviderRegistry([qemu(), fc], 'qemu'), [], findAllBut());
    assert.deepEqual(report, { errors: [], warnings: ['microvm provider firecracker is not available: firecracker-bin: "firecracker" not found'] });
  });

  it('asks for qemu-img only for qcow2 overlays, and nothing for the cidata disk (written in-process)', () => {
    assert.deepEqual(
      providerPrograms(firecracker()).map((n) => n.program),
      [],
    );
    assert.deepEqual(
      providerPrograms(qemu()).map((n) => n.program),
      ['qemu-img'],
    );
  });
});
