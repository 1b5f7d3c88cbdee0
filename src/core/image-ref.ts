// OCI image references: `[host[:port]/]repo[/repo...][:tag][@digest]`, with Docker Hub defaults
// (`ubuntu` is `docker.io/library/ubuntu:latest`). The grammar follows the distribution spec's
// reference rules closely enough to reject what no registry would accept.
import { echo } from './identifiers.js';

export interface ImageRef {
  /** Registry host, with port when given. */
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$/;

export const DOCKER_HUB = 'docker.io';

/** Parses a reference, or returns the reason it is not one. */
export function parseImageRef(input: string): ImageRef | { readonly error: string } {
  if (input.length === 0) return { error: 'is empty' };
  if (input.length > 4096) return { error: 'is longer than 4096 characters' };
  if (/\s/.test(input)) return { error: 'contains whitespace' };

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return { error: `has an invalid digest ${echo(digest)}` };
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) return { error: `has an invalid tag ${echo(tag)}` };
  }

  const parts = rest.split('/');
  let registry = DOCKER_HUB;
  const first = parts[0] ?? '';
  // Like Docker: the first component is a host when it has a dot or a port, or is localhost.
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))) {
    if (!HOST.test(first)) return { error: `has an invalid registry host ${echo(first)}` };
    registry = first;
    parts.shift();
  }
  if (parts.length === 0 || parts.some((p) => !PATH_COMPONENT.test(p))) {
    return { error: `has an invalid repository name ${echo(parts.join('/'))} (lowercase letters, digits and . _ - separators)` };
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  const ref: ImageRef = { registry, repository: parts.join('/') };
  return {
    ...ref,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
    ...(tag === undefined && digest === undefined ? { tag: 'latest' } : {}),
  };
}

export function isImageRefError(r: ImageRef | { readonly error: string }): r is { readonly error: string } {
  return 'error' in r;
}
