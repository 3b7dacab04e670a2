/**
 * The one place a mirror's `upstream` setting becomes an `UpstreamSource`:
 * `http:`/`https:` URLs read through the shared HTTP client, `file:` URLs
 * (configuration turns an absolute path into one) read from a directory.
 */

import { createDirectorySource } from './directory-source.js'
import { createHttpSource } from './http-source.js'
import type { UpstreamClient } from './upstream-client.js'
import type { UpstreamSource } from './upstream-source.js'

export interface SourceDeps {
  client: UpstreamClient
  /** The metadata size cap (`limits.metadataMaxBytes`), for sources that do not read through the client. */
  metadataMaxBytes: number
}

export function createSource(url: string, deps: SourceDeps): UpstreamSource {
  if (url.startsWith('file:')) return createDirectorySource({ root: url, metadataMaxBytes: deps.metadataMaxBytes })
  return createHttpSource({ root: url, client: deps.client })
}
