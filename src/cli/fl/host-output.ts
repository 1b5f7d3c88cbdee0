// How `fl host info` prints a host: sections of aligned lines for people, protobuf JSON (or the
// same as YAML) with every field present for scripts.
import { toJson } from '@bufbuild/protobuf';
import { stringify } from 'yaml';
import { Acceleration, HostInfoSchema, type HostInfo } from '../../gen/flintlock/services/ext/v1alpha1/host_pb.js';
import { NetworkInterface_IfaceType as IfaceType } from '../../gen/flintlock/types/microvm_pb.js';
import { formatRows, stateName, type OutputFormat } from './output.js';

const GIB = 1024 ** 3;
const gib = (bytes: bigint | undefined): string => `${(Number(bytes ?? 0n) / GIB).toFixed(1)} GiB`;

function formatText(host: HostInfo): string {
  const c = host.capacity;
  const acceleration = host.acceleration === Acceleration.KVM ? 'KVM' : 'TCG (emulated)';
  const lines = [
    formatRows([
      ['Host:', host.hostname],
      ['Daemon:', `flintlockd ${host.daemonVersion}`],
      ['Acceleration:', `${acceleration}: ${host.accelerationReason}`],
      ['CPUs:', `${c?.cpus ?? 0} (${c?.vcpusAllocated ?? 0} vCPUs allocated)`],
      ['Memory:', `${gib(c?.memoryAvailableBytes)} available of ${gib(c?.memoryTotalBytes)} (${gib(c?.memoryAllocatedBytes)} allocated)`],
      ['MicroVMs:', `${c?.microvmsRunning ?? 0} running`],
    ]),
    'Providers:\n' +
      formatRows(
        host.providers.map((p) => [
          `  ${p.name}${p.name === host.defaultProvider ? ' (default)' : ''}`,
          p.available ? `available (${p.capabilities.join(', ')})` : `unavailable: ${p.unavailableReason}`,
        ]),
      ),
    'Network modes:\n' +
      (host.networkModes.length === 0
        ? '  none configured\n'
        : formatRows(
            host.networkModes.map((m) => [`  ${m.type === IfaceType.TAP ? 'tap' : 'macvtap'}`, `${m.configKey}=${m.device}`, m.usable ? 'ok' : m.problem]),
          )),
  ];
  if ((c?.microvms.length ?? 0) > 0) {
    lines.push('MicroVMs by state:\n' + formatRows((c?.microvms ?? []).map((m) => [`  ${stateName(m.state)}`, m.provider, String(m.count)])));
  }
  return lines.join('');
}

export function formatHostInfo(format: OutputFormat, host: HostInfo): string {
  if (format === 'table') return formatText(host);
  const value = toJson(HostInfoSchema, host, { alwaysEmitImplicit: true });
  return format === 'json' ? `${JSON.stringify(value, null, 2)}\n` : stringify(value);
}
