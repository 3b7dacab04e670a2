/**
 * The one place an upstream URL from the configuration becomes an
 * `UpstreamSource`: each entry of a mirror's `upstream` (one URL or a list)
 * goes through `createSource`, so a new kind of upstream (a `file://`
 * directory) plugs in here and is at once usable alone or in a failover list.
 */

import { createHttpSource } from './http-source.js'
import { redactUrl } from './redact-url.js'
import type { UpstreamClient } from './upstream-client.js'
import type { UpstreamSource } from './upstream-source.js'

/** What sources share: the HTTP client with its connection bound, timeouts and statistics. */
export interface SourceDeps {
  client: UpstreamClient
}

/** The source for one validated upstream URL (ending with `/`). */
export function createSource(url: string, deps: SourceDeps): UpstreamSource {
  const { protocol } = new URL(url)
  if (protocol === 'http:' || protocol === 'https:') return createHttpSource({ root: url, client: deps.client })
  throw new Error(`upstream ${redactUrl(url)}: unsupported scheme ${protocol}`)
}
