/**
 * The one place an upstream from the configuration becomes an
 * `UpstreamSource`: each entry of a mirror's `upstream` (one URL or a list)
 * goes through `createSource`. `http:`/`https:` URLs read through the shared
 * HTTP client, `file:` URLs (configuration turns an absolute path into one)
 * read from a directory, so either is usable alone or in a failover list.
 */

import { createDirectorySource } from './directory-source.js'
import { createHttpSource } from './http-source.js'
import { redactUrl } from './redact-url.js'
import type { UpstreamClient } from './upstream-client.js'
import type { UpstreamSource } from './upstream-source.js'

/** What sources share. */
export interface SourceDeps {
  /** The HTTP client with its connection bound, timeouts and statistics. */
  client: UpstreamClient
  /** The metadata size cap (`limits.metadataMaxBytes`), for sources that do not read through the client. */
  metadataMaxBytes: number
}

/** The source for one validated upstream URL (ending with `/`). */
export function createSource(url: string, deps: SourceDeps): UpstreamSource {
  const { protocol } = new URL(url)
  if (protocol === 'file:') return createDirectorySource({ root: url, metadataMaxBytes: deps.metadataMaxBytes })
  if (protocol === 'http:' || protocol === 'https:') return createHttpSource({ root: url, client: deps.client })
  throw new Error(`upstream ${redactUrl(url)}: unsupported scheme ${protocol}`)
}
