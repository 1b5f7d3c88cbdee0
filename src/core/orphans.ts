// Start-up sweep of host devices left behind by a crash or by a lost record: a device whose alias
// names this daemon and a VM the store no longer has, or a device record whose VM is gone. Only
// devices whose alias names this daemon as owner (or recorded by us) are ever touched: another
// flintlockd on the host (another state dir) owns its own.
import { parseDeviceAlias } from './names.js';
import type { Logger, MicroVMRepository, NetworkService } from './ports.js';

export async function sweepOrphanDevices(repo: MicroVMRepository, network: NetworkService, owner: string, log: Logger): Promise<string[]> {
  const removed: string[] = [];
  const links = await network.listLinks();
  const linkByName = new Map(links.map((l) => [l.name, l]));
  for (const link of links) {
    const parts = link.alias === undefined ? undefined : parseDeviceAlias(link.alias);
    if (parts === undefined || parts.owner !== owner || repo.get(parts.uid) !== undefined) continue;
    await network.deleteLink(link.name);
    repo.forgetDevice(link.name);
    removed.push(link.name);
    log.info({ device: link.name, vmid: `${parts.namespace}/${parts.name}/${parts.uid}` }, 'removed orphan host device');
  }
  for (const record of repo.devices()) {
    if (repo.get(record.vmUid) !== undefined || removed.includes(record.name)) continue;
    const link = linkByName.get(record.name);
    // Ours: no alias yet (a crash between create and alias) or our alias for that VM. A link of
    // that name with any other alias was not made for this record: leave it.
    const ours = link !== undefined && (link.alias === undefined || parseDeviceAlias(link.alias)?.uid === record.vmUid);
    if (ours) {
      await network.deleteLink(record.name);
      removed.push(record.name);
      log.info({ device: record.name, vmUid: record.vmUid }, 'removed orphan host device');
    }
    repo.forgetDevice(record.name);
  }
  return removed;
}
