// Which microVM a command means: a uid (what the API takes), or `[namespace/]name` (what people
// remember), looked up with List. A name is unique only within its namespace, so a bare name that
// several namespaces use is refused, naming each match, rather than guessed.
import * as grpc from '@grpc/grpc-js';
import type { MicroVM } from '../../gen/flintlock/types/microvm_pb.js';
import type { MicroVMClient, RpcError } from './client.js';

/** A ULID as the daemon issues them (Crockford base32, 26 characters). */
const UID_SHAPE = /^[0-9A-HJKMNP-TV-Z]{26}$/;

export type Resolved =
  | { readonly ok: true; readonly vm: MicroVM }
  /** `rpc`: the daemon could not be asked; otherwise `message` says what matched (none, several). */
  | { readonly ok: false; readonly message: string; readonly ambiguous: boolean; readonly rpc?: RpcError };

export function parseVmRef(ref: string): { readonly namespace: string; readonly name: string } {
  const slash = ref.indexOf('/');
  return slash < 0 ? { namespace: '', name: ref } : { namespace: ref.slice(0, slash), name: ref.slice(slash + 1) };
}

export async function resolveVm(client: Pick<MicroVMClient, 'getMicroVM' | 'listMicroVMs'>, ref: string): Promise<Resolved> {
  if (ref === '') return { ok: false, message: 'a microvm uid or [namespace/]name is required', ambiguous: true };
  if (UID_SHAPE.test(ref)) {
    const got = await client.getMicroVM(ref);
    if (got.ok) return { ok: true, vm: got.value };
    // Names may be uid-shaped too: a uid nobody has is looked up as a name before giving up.
    if (got.error.code !== grpc.status.NOT_FOUND) return { ok: false, message: got.error.details, ambiguous: false, rpc: got.error };
  }
  const { namespace, name } = parseVmRef(ref);
  if (name === '') return { ok: false, message: `"${ref}" names no microvm: give a uid or [namespace/]name`, ambiguous: true };
  const listed = await client.listMicroVMs(namespace, name);
  if (!listed.ok) return { ok: false, message: listed.error.details, ambiguous: false, rpc: listed.error };
  // The filter is the server's; checking again costs nothing and guards against a looser server.
  const matches = listed.value.filter((vm) => vm.spec?.id === name && (namespace === '' || vm.spec.namespace === namespace));
  const [only, ...more] = matches;
  if (only !== undefined && more.length === 0) return { ok: true, vm: only };
  if (only === undefined) {
    const where = namespace !== '' ? `in namespace ${namespace}` : 'in any namespace';
    return { ok: false, message: `no microvm with uid or name ${ref} (${where})`, ambiguous: false };
  }
  const listing = matches.map((vm) => `${vm.spec?.namespace ?? ''}/${vm.spec?.id ?? ''} (${vm.spec?.uid ?? ''})`).join(', ');
  return {
    ok: false,
    message: `the name ${name} matches ${matches.length} microvms: ${listing}; give the uid or namespace/name`,
    ambiguous: true,
  };
}
