// From a reconciled VM to the LaunchSpec a provider runs: disks and NICs in the guest's order,
// paths from the status the earlier steps wrote. Pure: no I/O.
import { dirname, join, relative, sep } from 'node:path';
import type { MicroVM } from './model.js';
import type { CloudInitFiles, LaunchDisk, LaunchNic, LaunchSpec, VmmAccess } from './ports.js';
import { macvtapNodePath } from './steps/network.js';

export const CIDATA_FILE = 'cidata.img';
export const CONSOLE_LOG_FILE = 'console.log';
/** The VMM's pid and start time, written the moment it exists (see SpawnOptions.pidFile). */
export const VMM_PID_FILE = 'vmm.pid';

/** Root first, then container-sourced additional volumes in spec order (virtiofs shares are not disks). */
export function launchDisks(vm: MicroVM): LaunchDisk[] {
  const volumes = [
    ...(vm.spec.rootVolume !== undefined ? [{ volume: vm.spec.rootVolume, root: true }] : []),
    ...vm.spec.additionalVolumes.map((volume) => ({ volume, root: false })),
  ];
  return volumes
    .filter(({ volume }) => volume.source.containerImage !== undefined)
    .map(({ volume, root }) => {
      const mount = vm.status.volumes[volume.id];
      if (mount === undefined) throw new Error(`volume ${volume.id} is not prepared yet`);
      return {
        id: volume.id,
        path: mount.source,
        readOnly: volume.readOnly,
        root,
        format: mount.source.endsWith('.qcow2') ? ('qcow2' as const) : ('raw' as const),
      };
    });
}

/** The spec's interfaces in order, with their host devices and guest MACs from the status. */
export function launchNics(vm: MicroVM, vmDir: string): LaunchNic[] {
  return vm.spec.interfaces.map((iface) => {
    const status = vm.status.interfaces[iface.deviceId];
    if (status === undefined || status.hostDeviceName === '' || status.macAddress === '') throw new Error(`interface ${iface.deviceId} has no host device yet`);
    return {
      deviceId: iface.deviceId,
      type: iface.type,
      hostDevice: status.hostDeviceName,
      mac: status.macAddress,
      ...(iface.type === 'macvtap' ? { tapNode: macvtapNodePath(vmDir, iface.deviceId) } : {}),
      ...(iface.allowMetadata === true ? { allowMetadata: true } : {}),
    };
  });
}

export function buildLaunchSpec(vm: MicroVM, vmDir: string, cloudInit: CloudInitFiles, cidataPath: string | undefined): LaunchSpec {
  const kernel = vm.status.kernelMount;
  if (kernel === undefined) throw new Error('the kernel is not prepared yet');
  const disks = launchDisks(vm);
  if (cidataPath !== undefined) disks.push({ id: 'cidata', path: cidataPath, readOnly: true, root: false, format: 'raw' });
  return {
    vm,
    vmDir,
    vcpu: vm.spec.vcpu,
    memoryMb: vm.spec.memoryMb,
    kernelPath: kernel.source,
    ...(vm.status.initrdMount !== undefined ? { initrdPath: vm.status.initrdMount.source } : {}),
    cmdline: vm.spec.kernel.cmdline,
    disks,
    nics: launchNics(vm, vmDir),
    cloudInit,
    consoleLogPath: join(vmDir, CONSOLE_LOG_FILE),
    pidFile: join(vmDir, VMM_PID_FILE),
  };
}

export interface VmmFile {
  readonly path: string;
  readonly access: VmmAccess;
}

/**
 * The files in the VM dir that the VMM opens by path, and the directories between them and the
 * VM dir: what the VM's gid must be able to reach. Files outside the VM dir (kernels, initrds and
 * volume bases in the shared image cache) are made readable by the image cache itself.
 */
export function vmmFiles(launch: LaunchSpec): VmmFile[] {
  const files: VmmFile[] = [{ path: launch.consoleLogPath, access: 'read-write' }];
  for (const path of [launch.kernelPath, ...(launch.initrdPath !== undefined ? [launch.initrdPath] : [])]) files.push({ path, access: 'read' });
  for (const disk of launch.disks) files.push({ path: disk.path, access: disk.readOnly ? 'read' : 'read-write' });
  const inside = (path: string): boolean => {
    const rel = relative(launch.vmDir, path);
    return rel !== '' && !rel.startsWith('..') && !rel.startsWith(sep);
  };
  const dirs = new Set<string>();
  const out: VmmFile[] = [];
  for (const file of files.filter((f) => inside(f.path))) {
    for (let dir = dirname(file.path); inside(dir); dir = dirname(dir)) dirs.add(dir);
    out.push(file);
  }
  return [...[...dirs].sort().map((path) => ({ path, access: 'dir' as const })), ...out];
}
