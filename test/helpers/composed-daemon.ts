// The composition root started in-process for a test: an explicit, empty config file (so a config
// in /etc/opt/flintlockd on this host can't leak in), the state under `dir`, gRPC on a free
// loopback port, and the in-memory host network (these tests are about wiring, not devices).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../src/adapters/log/logger.js';
import { loadConfig } from '../../src/config/config.js';
import type { Logger } from '../../src/core/ports.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/compose.js';
import { MemoryNetwork } from './doubles.js';

/** Starts the daemon with `flags` (config keys) on top of the test defaults above. */
export async function startComposedDaemon(dir: string, flags: Readonly<Record<string, unknown>>, log: Logger = silentLogger()): Promise<RunningDaemon> {
  const file = join(dir, 'config.yaml');
  writeFileSync(file, '');
  const config = loadConfig({ file, env: {}, flags: { 'state-dir': join(dir, 'state'), 'grpc-endpoint': '127.0.0.1:0', ...flags } });
  return startDaemon(config, log, { network: new MemoryNetwork() });
}
