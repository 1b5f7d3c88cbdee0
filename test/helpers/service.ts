// A real MicroVMService over a real SQLite store, with no reconciler behind it: for tests of the
// API adapters (gRPC, HTTP, fl), where only the stored intent matters.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monotonicFactory } from 'ulid';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { SqliteMicroVMRepository } from '../../src/adapters/store/sqlite-repository.js';
import { MicroVMService } from '../../src/core/service.js';
import { DEFAULT_LIMITS, type HostChecks, type ProviderLookup } from '../../src/core/validation.js';
import { MemoryProvider } from './doubles.js';

/** A `qemu` provider (macvtap and tap) that reports itself unavailable. */
export function testProviders(): ProviderLookup {
  const qemu = new MemoryProvider();
  qemu.available = { available: false, reason: 'test' };
  return { names: () => ['qemu'], get: (n) => (n === 'qemu' ? qemu : undefined), defaultName: () => 'qemu' };
}

export interface TestService {
  readonly service: MicroVMService;
  readonly repo: SqliteMicroVMRepository;
  readonly dir: string;
  /** Closes the store and removes its directory. */
  close(): void;
}

export interface TestServiceOptions {
  readonly providers?: ProviderLookup;
  /** Host checks built once the directory exists (e.g. virtiofs roots inside it). */
  readonly hostChecks?: (dir: string) => HostChecks;
}

export function createTestService(prefix = 'fl-service-', options: TestServiceOptions = {}): TestService {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const repo = SqliteMicroVMRepository.open(join(dir, 'state'));
  const ids = monotonicFactory();
  const service = new MicroVMService({
    repo,
    reconciler: { trigger() {} },
    providers: options.providers ?? testProviders(),
    limits: DEFAULT_LIMITS,
    clock: { now: () => Date.now() },
    ids: { next: () => ids() },
    log: silentLogger(),
    ...(options.hostChecks !== undefined ? { hostChecks: options.hostChecks(dir) } : {}),
  });
  return {
    service,
    repo,
    dir,
    close: () => {
      repo.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
