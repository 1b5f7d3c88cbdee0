// Start-up sweep of host devices left behind by a crash or by a lost record: a device whose alias
// names a VM the store no longer has, or a device record whose VM is gone. Only devices with our
// alias (or recorded by us) are ever touched.
import { parseDeviceAlias } from './names.js';
import type { Logger, MicroVMRepository, NetworkService } from './ports.js';

export async function sweepOrphanDevices(repo: MicroVMRepository, network: NetworkService, log: Logger): Promise<string[]> {
  const removed: string[] = [];
  const links = await network.listLinks();
  const linkByName = new Map(links.map((l) => [l.name, l]));
  for (const link of links) {
    const owner = link.alias === undefined ? undefined : parseDeviceAlias(link.alias);
    if (owner === undefined || repo.get(owner.uid) !== undefined) continue;
    await network.deleteLink(link.name);
    repo.forgetDevice(link.name);
    removed.push(link.name);
    log.info({ device: link.name, vmid: `${owner.namespace}/${owner.name}/${owner.uid}` }, 'removed orphan host device');
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
