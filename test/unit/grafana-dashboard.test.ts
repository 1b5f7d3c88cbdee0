// The Grafana dashboard (packaging/grafana/flintlockd.json) queries only metrics the daemon has,
// by the labels they carry: a renamed metric or label breaks this, not a panel in production.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { ApiMetrics } from '../../src/adapters/api/metrics.js';
import { DaemonMetrics, ImageMetrics } from '../../src/adapters/metrics/daemon-metrics.js';
import { REPO_ROOT } from '../helpers/daemon.js';

interface Dashboard {
  readonly panels: ReadonlyArray<{ readonly title: string; readonly targets: ReadonlyArray<{ readonly expr: string }> }>;
}

it('uses only metric names and labels the daemon exports', async () => {
  const api = new ApiMetrics(false);
  const census = { counts: () => [], withVmm: () => [] } as unknown as ConstructorParameters<typeof DaemonMetrics>[1]['census'];
  new DaemonMetrics(api.registry, { census, repo: { queueStats: () => ({ entries: 0, due: 0 }) }, clock: { now: () => 0 }, providers: ['qemu'] });
  new ImageMetrics(api.registry, () => Promise.resolve({ images: 0, blobsBytes: 0, ext4Bytes: 0, filesBytes: 0 }));
  const exported = new Map((await api.registry.getMetricsAsJSON()).map((m) => [m.name, m]));
  const labelsOf = (name: string): Set<string> => {
    const metric = api.registry.getSingleMetric(name) as unknown as { labelNames?: string[] } | undefined;
    return new Set([...(metric?.labelNames ?? []), 'instance', 'job', 'le']);
  };
  const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'packaging/grafana/flintlockd.json'), 'utf8')) as Dashboard;
  for (const panel of dashboard.panels) {
    for (const { expr } of panel.targets) {
      for (const [, raw, selector] of expr.matchAll(/\b((?:flintlock|grpc_server)_\w+)(?:\{([^}]*)\})?/g)) {
        const name = (raw ?? '').replace(/_(bucket|count|sum)$/, '');
        assert.ok(exported.has(name), `${panel.title}: ${name} is not exported`);
        for (const [, label] of (selector ?? '').matchAll(/(\w+)\s*[!=]~?"/g))
          assert.ok(labelsOf(name).has(label ?? ''), `${panel.title}: ${name} has no label ${label}`);
      }
      for (const [, group] of expr.matchAll(/by \(([^)]*)\)/g)) {
        const names = [...expr.matchAll(/\b((?:flintlock|grpc_server)_\w+)/g)].map((m) => (m[1] ?? '').replace(/_(bucket|count|sum)$/, ''));
        for (const label of (group ?? '').split(',').map((l) => l.trim())) {
          assert.ok(
            names.some((n) => labelsOf(n).has(label)),
            `${panel.title}: no metric of "${expr}" has label ${label}`,
          );
        }
      }
    }
  }
});
