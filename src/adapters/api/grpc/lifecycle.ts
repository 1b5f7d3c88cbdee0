// flintlock.services.ext.v1alpha1.MicroVMLifecycle: stop, start, restart, pause, resume (stored as
// intent by the service, done by the reconciler) and the guest's console log, streamed.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import type { Logger } from '../../../core/ports.js';
import type { LifecycleAction, MicroVMService } from '../../../core/service.js';
import { errorMessage } from '../../../core/result.js';
import {
  LifecycleResponseSchema,
  LogChunkSchema,
  type GetMicroVMLogsRequest,
  type LifecycleRequest,
  type LifecycleResponse,
  type LogChunk,
} from '../../../gen/flintlock/services/ext/v1alpha1/lifecycle_pb.js';
import type { TokenCheck } from '../auth.js';
import { microvmToProto } from '../convert.js';
import { authorizationOf, failStream, statusError, unaryCalls } from './call.js';

/** Largest LogChunk.data. */
export const LOG_CHUNK_BYTES = 64 * 1024;
/** How often a followed log is checked for more. */
const FOLLOW_POLL_MS = 250;

export function lifecycleHandlers(service: MicroVMService, check: TokenCheck, log: Logger): grpc.UntypedServiceImplementation {
  const unary = unaryCalls(check, log, () => service.durable());
  const call = (method: string, action: LifecycleAction): grpc.handleUnaryCall<LifecycleRequest, LifecycleResponse> =>
    unary<LifecycleRequest, LifecycleResponse>(
      method,
      (req) => {
        const done = service.lifecycle(req.uid, action);
        return done.ok ? { ok: true, value: create(LifecycleResponseSchema, { microvm: microvmToProto(done.value) }) } : done;
      },
      true,
    );

  const getMicroVMLogs: grpc.handleServerStreamingCall<GetMicroVMLogsRequest, LogChunk> = (stream) => {
    const denied = check(authorizationOf(stream.metadata));
    const found = denied === undefined ? service.get(stream.request.uid) : undefined;
    const refused = denied ?? (found !== undefined && !found.ok ? found.error : undefined);
    if (refused !== undefined) {
      failStream(stream, refused);
      return;
    }
    const path = found?.ok === true ? found.value.status.consoleLogPath : undefined;
    if (path === undefined) {
      failStream(stream, { kind: 'failed-precondition', message: `microvm ${stream.request.uid} has no console log yet: its VMM has not started` });
      return;
    }
    const cancelled = new AbortController();
    stream.on('cancelled', () => cancelled.abort());
    sendLog(stream, path, stream.request, cancelled.signal).then(
      () => {
        if (!cancelled.signal.aborted) stream.end();
      },
      (e: unknown) => {
        if (cancelled.signal.aborted) return;
        stream.emit('error', statusError(grpc.status.INTERNAL, `reading the console log: ${errorMessage(e)}`));
      },
    );
  };

  return {
    stopMicroVM: call('StopMicroVM', 'stop'),
    startMicroVM: call('StartMicroVM', 'start'),
    restartMicroVM: call('RestartMicroVM', 'restart'),
    pauseMicroVM: call('PauseMicroVM', 'pause'),
    resumeMicroVM: call('ResumeMicroVM', 'resume'),
    getMicroVMLogs,
  };
}

/**
 * The log from `tail_bytes` before its end, then (follow) what is appended, paced by the client
 * (write's back-pressure). Opened without following a symlink and only as a regular file: the VM
 * dir is writable by the VMM's group (ADR 0009), and a VMM must not make the daemon read a host file.
 */
async function sendLog(
  stream: grpc.ServerWritableStream<GetMicroVMLogsRequest, LogChunk>,
  path: string,
  req: GetMicroVMLogsRequest,
  signal: AbortSignal,
): Promise<void> {
  let file: FileHandle;
  try {
    file = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !req.follow) return;
    throw e;
  }
  try {
    const info = await file.stat();
    if (!info.isFile()) throw new Error(`${path} is not a regular file`);
    const tail = Number(req.tailBytes);
    let offset = tail > 0 ? Math.max(0, info.size - tail) : 0;
    const buffer = Buffer.alloc(LOG_CHUNK_BYTES);
    while (!signal.aborted) {
      const { bytesRead } = await file.read(buffer, 0, LOG_CHUNK_BYTES, offset);
      if (bytesRead > 0) {
        const ready = stream.write(create(LogChunkSchema, { data: Buffer.from(buffer.subarray(0, bytesRead)), offset: BigInt(offset) }));
        offset += bytesRead;
        if (!ready) await once(stream, 'drain', { signal }).catch(() => undefined);
        continue;
      }
      if (!req.follow) return;
      // The log was cut (a new VMM truncated it): from its start again.
      if ((await file.stat()).size < offset) offset = 0;
      await sleep(FOLLOW_POLL_MS, undefined, { signal }).catch(() => undefined);
    }
  } finally {
    await file.close();
  }
}
