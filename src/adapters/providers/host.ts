// Facts about this host that decide which VMMs can run: their executables, a usable /dev/kvm.
import type { ProviderAvailability } from '../../core/ports.js';
import { accessSync, constants, existsSync } from 'node:fs';
import { missingProgramMessage } from '../host/dependencies.js';
import { findExecutable } from '../host/programs.js';

export interface KvmSupport {
  readonly usable: boolean;
  readonly reason: string;
}

/** Whether KVM can run an ordinary guest here. */
export function kvmSupport(): KvmSupport {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { usable: false, reason: '/dev/kvm is missing or not accessible' };
  }
  const loaded = (m: string): boolean => existsSync(`/sys/module/${m}`);
  if (loaded('kvm_pvm') && !loaded('kvm_intel') && !loaded('kvm_amd')) {
    return { usable: false, reason: '/dev/kvm is served by kvm_pvm, which cannot run an ordinary guest kernel' };
  }
  return { usable: true, reason: '/dev/kvm is usable' };
}

/** KVM can run an ordinary guest here (see kvmSupport for why it sometimes can't). */
export function kvmUsable(): boolean {
  return kvmSupport().usable;
}

/**
 * Whether a VMM can run here: its `<name>-bin` is set and found, and (for KVM-only VMMs) KVM is
 * usable. The reason names everything that is missing.
 */
export function vmmAvailability(configKey: string, bin: string, kvm?: { readonly vmm: string; readonly usable: () => boolean }): ProviderAvailability {
  if (bin === '') return { available: false, reason: `${configKey} is empty, so the provider is disabled` };
  const missing: string[] = [];
  if (findExecutable(bin) === undefined) missing.push(`${configKey}: ${missingProgramMessage(bin)}`);
  if (kvm !== undefined && !kvm.usable()) missing.push(`/dev/kvm is missing or not readable and writable (${kvm.vmm} needs KVM)`);
  return missing.length === 0 ? { available: true } : { available: false, reason: missing.join('; ') };
}
