/** Splits `host:port` / `[v6]:port` / `:port` (all interfaces) for node:net listeners. */
export function splitHostPort(endpoint: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(endpoint);
  if (match === null) throw new Error(`endpoint "${endpoint}" must be host:port`);
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port: Number(match[3]) };
}
