// How fl prints microVMs: a table for people, protobuf JSON (or the same as YAML) for scripts.
// JSON/YAML use the canonical proto3 JSON mapping with every field present, so scripts can rely
// on keys existing (`status.state` is "PENDING" rather than missing).
import { toJson, type JsonValue } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { stringify } from 'yaml';
import { MicroVMSchema, MicroVMStatus_MicroVMState, type MicroVM } from '../../gen/flintlock/types/microvm_pb.js';

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function isOutputFormat(value: string): value is OutputFormat {
  return (OUTPUT_FORMATS as readonly string[]).includes(value);
}

const REASON_WIDTH = 60;

export function stateName(state: MicroVMStatus_MicroVMState | undefined): string {
  return MicroVMStatus_MicroVMState[state ?? MicroVMStatus_MicroVMState.PENDING] ?? `UNKNOWN(${String(state)})`;
}

/** Why the VM is not (yet) running: the terminal failure reason, else the latest attempt's error. */
export function reasonOf(vm: MicroVM): string {
  const status = vm.status;
  if (status === undefined) return '';
  return status.failureReason !== '' ? status.failureReason : status.lastError;
}

export function truncate(text: string, width: number): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length <= width ? oneLine : `${oneLine.slice(0, width - 3)}...`;
}

/** kubectl-style age: 42s, 7m, 3h, 12d. */
export function formatAge(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 120) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}

export const TABLE_HEADER = ['UID', 'NAMESPACE', 'NAME', 'STATE', 'IP', 'RETRY', 'AGE', 'REASON'] as const;

const STATE_COLUMN = TABLE_HEADER.indexOf('STATE');

/** The guest addresses the host has seen: IPv4 first (the one people type), the rest counted. */
export function ipsOf(vm: MicroVM): string {
  const ips = [...(vm.status?.guestIps ?? [])].sort((a, b) => Number(a.includes(':')) - Number(b.includes(':')));
  if (ips.length === 0) return '-';
  return ips.length === 1 ? (ips[0] ?? '-') : `${ips[0] ?? ''} (+${ips.length - 1})`;
}

export function tableRow(vm: MicroVM, now: number): string[] {
  const created = vm.spec?.createdAt;
  return [
    vm.spec?.uid ?? '',
    vm.spec?.namespace ?? '',
    vm.spec?.id ?? '',
    stateName(vm.status?.state),
    ipsOf(vm),
    String(vm.status?.retry ?? 0),
    created !== undefined ? formatAge(now - timestampMs(created)) : '-',
    truncate(reasonOf(vm), REASON_WIDTH) || '-',
  ];
}

/** Left-aligned columns separated by three spaces; no trailing blanks. */
export function formatRows(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('   ')).join('\n') + '\n';
}

export function formatTable(vms: readonly MicroVM[], now: number): string {
  return formatRows([[...TABLE_HEADER], ...vms.map((vm) => tableRow(vm, now))]);
}

export function vmJson(vm: MicroVM): JsonValue {
  return toJson(MicroVMSchema, vm, { alwaysEmitImplicit: true });
}

/** One VM as an object, a list as an array. */
export function formatJson(vms: MicroVM | readonly MicroVM[]): string {
  const value = isList(vms) ? vms.map(vmJson) : vmJson(vms);
  return `${JSON.stringify(value, null, 2)}\n`;
}

export function formatYaml(vms: MicroVM | readonly MicroVM[]): string {
  const value = isList(vms) ? vms.map(vmJson) : vmJson(vms);
  return stringify(value);
}

function isList(vms: MicroVM | readonly MicroVM[]): vms is readonly MicroVM[] {
  return Array.isArray(vms);
}

/** A single VM (get) or a list (list); the table shows a single VM as a one-row table. */
export function formatVms(format: OutputFormat, vms: MicroVM | readonly MicroVM[], now: number): string {
  switch (format) {
    case 'table':
      return formatTable(isList(vms) ? vms : [vms], now);
    case 'json':
      return formatJson(vms);
    case 'yaml':
      return formatYaml(vms);
  }
}

// Watch output streams, so columns cannot be sized from the data: fixed minimum widths instead.
const WATCH_WIDTHS = [8, 26, 12, 20, 8, 15, 5, 4, REASON_WIDTH];

function fixedRow(row: readonly string[]): string {
  return `${row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(WATCH_WIDTHS[i] ?? 0))).join('   ')}\n`;
}

/** Printed once before the updates of `list --watch` (table format only). */
export function formatWatchHeader(format: OutputFormat): string {
  return format === 'table' ? fixedRow(['EVENT', ...TABLE_HEADER]) : '';
}

/**
 * One line of `list --watch`: a table row (state DELETED for a deletion), or the event as one
 * compact JSON line (NDJSON) or YAML document: `{"type": "SNAPSHOT"|"UPDATED"|"DELETED", "event": "ADDED"|"MODIFIED"|"DELETED", "microvm": {...}}`
 * (type: what the watch RPC said; event: what it means for the list, in kubectl's words).
 */
export function formatWatchLine(format: OutputFormat, line: { readonly type: string; readonly event: string; readonly vm: MicroVM }, now: number): string {
  switch (format) {
    case 'table': {
      const row = tableRow(line.vm, now);
      return fixedRow([line.event, ...(line.type === 'DELETED' ? row.map((cell, i) => (i === STATE_COLUMN ? 'DELETED' : cell)) : row)]);
    }
    case 'json':
      return `${JSON.stringify({ type: line.type, event: line.event, microvm: vmJson(line.vm) })}\n`;
    case 'yaml':
      return `---\n${stringify({ type: line.type, event: line.event, microvm: vmJson(line.vm) })}`;
  }
}
