// `fl microvm get <vm>` for people: what the daemon knows about one microVM, in sections (as
// `incus info` prints an instance). Scripts use -o json|yaml, which this does not change.
import { timestampMs } from '@bufbuild/protobuf/wkt';
import type { Timestamp } from '@bufbuild/protobuf/wkt';
import type { MicroVM, Volume } from '../../gen/flintlock/types/microvm_pb.js';
import { NetworkInterface_IfaceType as IfaceType, PowerState } from '../../gen/flintlock/types/microvm_pb.js';
import { formatAge, formatRows, stateName } from './output.js';
import { formatPull } from './progress-view.js';

function powerName(state: PowerState | undefined): string {
  return state === undefined || state === PowerState.UNSPECIFIED ? '-' : (PowerState[state] ?? String(state));
}

function when(ts: Timestamp | undefined, now: number): string | undefined {
  if (ts === undefined) return undefined;
  const ms = timestampMs(ts);
  const delta = ms - now;
  return `${new Date(ms).toISOString()} (${delta >= 0 ? `in ${formatAge(delta)}` : `${formatAge(-delta)} ago`})`;
}

/** `image (sha256:0123456789ab)` when the status says which digest the tag resolved to. */
function imageLine(image: string, digest: string | undefined): string {
  return digest !== undefined && digest !== '' ? `${image} (${digest.slice(0, 19)})` : image;
}

function volumeLine(volume: Volume, digest: string | undefined): string {
  const source = volume.source?.containerSource ?? (volume.source?.virtiofsSource !== undefined ? `virtiofs ${volume.source.virtiofsSource}` : '-');
  const where = volume.mountPoint !== undefined && volume.mountPoint !== '' ? ` on ${volume.mountPoint}` : '';
  const flags = volume.isReadOnly ? ', read-only' : '';
  return `${imageLine(source, digest)}${where}${flags}`;
}

/** The widest label (`Console log:`, `Reconciling:`) and a space: every section's values line up. */
const LABEL_WIDTH = 14;

/** Rows of `Label: value`, leaving out the values that are not there. */
function section(rows: ReadonlyArray<readonly [string, string | undefined]>): string {
  const present = rows.filter((r): r is readonly [string, string] => r[1] !== undefined && r[1] !== '');
  return present.map(([k, v]) => `${`${k}:`.padEnd(LABEL_WIDTH)}${v}\n`).join('');
}

function indented(title: string, rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '';
  return `${title}:\n${formatRows(rows.map((r) => [`  ${r[0] ?? ''}`, ...r.slice(1)]))}`;
}

export function formatDetail(vm: MicroVM, now: number): string {
  const spec = vm.spec;
  const status = vm.status;
  const images = status?.images ?? {};
  const created = spec?.createdAt !== undefined ? timestampMs(spec.createdAt) : undefined;
  const power = powerName(status?.powerState);
  const desired = powerName(status?.desiredPowerState);
  const retry = status?.retry ?? 0;
  const pull = status?.pullProgress;

  const head = section([
    ['Name', spec?.id],
    ['Namespace', spec?.namespace],
    ['UID', spec?.uid],
    ['State', stateName(status?.state)],
    ['Power', desired !== '-' && desired !== power ? `${power} (asked: ${desired})` : power],
    ['Provider', spec?.provider],
    ['Resources', `${spec?.vcpu ?? 0} vCPUs, ${spec?.memoryInMb ?? 0} MiB memory`],
    ['Created', created !== undefined ? `${new Date(created).toISOString()} (${formatAge(now - created)} ago)` : undefined],
    [
      'Labels',
      Object.entries(spec?.labels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(', '),
    ],
  ]);

  const imageRows: string[][] = [];
  if (spec?.kernel !== undefined) imageRows.push(['kernel', imageLine(spec.kernel.image, images['kernel'])]);
  if (spec?.initrd !== undefined) imageRows.push(['initrd', imageLine(spec.initrd.image, images['initrd'])]);
  for (const volume of [...(spec?.rootVolume !== undefined ? [spec.rootVolume] : []), ...(spec?.additionalVolumes ?? [])]) {
    imageRows.push([`volume ${volume.id}`, volumeLine(volume, images[`volume:${volume.id}`])]);
  }

  const nicRows = (spec?.interfaces ?? []).map((iface) => {
    const seen = status?.networkInterfaces[iface.deviceId];
    const mac = seen?.macAddress !== undefined && seen.macAddress !== '' ? seen.macAddress : (iface.guestMac ?? '');
    return [
      iface.deviceId,
      iface.type === IfaceType.TAP ? 'tap' : 'macvtap',
      `device ${seen?.hostDeviceName !== undefined && seen.hostDeviceName !== '' ? seen.hostDeviceName : '-'}`,
      `MAC ${mac !== '' ? mac : '-'}`,
      iface.address !== undefined ? `static ${iface.address.address}` : 'dhcp',
    ];
  });
  const guestIps = status?.guestIps ?? [];

  const runtime = section([
    ['Guest IPs', guestIps.length > 0 ? guestIps.join(', ') : '- (none seen yet)'],
    ['VMM pid', status?.vmmPid !== undefined && status.vmmPid !== 0 ? String(status.vmmPid) : '- (not running)'],
    ['Console log', status?.consoleLogPath],
    ['Reconciling', status?.reconcileStep !== undefined && status.reconcileStep !== '' ? `step ${status.reconcileStep}` : undefined],
    ['Pulling', pull !== undefined ? formatPull(pull) : undefined],
    ['Failure', status?.failureReason],
    ['Last error', status?.lastError],
    ['Retries', retry > 0 ? `${retry}${status?.nextRetryAt !== undefined ? `, next ${when(status.nextRetryAt, now) ?? ''}` : ''}` : undefined],
    ['Restarts', (status?.restartCount ?? 0) > 0 ? String(status?.restartCount) : undefined],
    ['Last exit', status?.lastExitReason],
    [
      'Crash loop',
      (status?.crashLoopCount ?? 0) > 0
        ? `${status?.crashLoopCount} quick exits in a row${status?.nextRestartAt !== undefined ? `, next restart ${when(status.nextRestartAt, now) ?? ''}` : ''}`
        : undefined,
    ],
  ]);

  return [head, indented('Images', imageRows), indented('Network', nicRows), runtime].filter((s) => s !== '').join('');
}
