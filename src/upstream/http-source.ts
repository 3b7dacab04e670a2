/**
 * The HTTP(S) implementation of `UpstreamSource`: one base URL (the root),
 * fetched through the shared `UpstreamClient` (its connection bound,
 * timeouts, document limits and statistics). Credentials in the root
 * (`https://user:password@host/`) go out as Basic auth to that origin only,
 * and every URL this source shows is redacted.
 */

import { unsafePathReason } from '../streams/item-path.js'
import { redactUrl } from './redact-url.js'
import type { UpstreamClient } from './upstream-client.js'
import { UpstreamPathError, type UpstreamSource } from './upstream-source.js'

export interface HttpSourceOptions {
  /** The root URL, ending with `/`; may carry `user:password@`. */
  root: string
  client: UpstreamClient
}

export function createHttpSource(options: HttpSourceOptions): UpstreamSource {
  const { client } = options
  const root = new URL(options.root)
  if (!root.pathname.endsWith('/')) throw new Error(`upstream root ${redactUrl(root.href)} must end with "/"`)
  const shownRoot = redactUrl(root.href)

  /**
   * Where `relPath` resolves, checked after resolution (what the request will
   * really ask for): same scheme, host and port as the root, a path under the
   * root's path, nothing appended. Then the plain-segment rule of item paths,
   * so a path means the same here as in the metadata it came from.
   */
  function pathProblem(relPath: string): string | undefined {
    let resolved: URL
    try {
      resolved = new URL(relPath, root)
    } catch {
      return 'is not a valid URL path'
    }
    if (resolved.origin !== root.origin) return 'resolves to another scheme, host or port than the upstream root'
    if (resolved.username !== root.username || resolved.password !== root.password) return 'resolves with other credentials than the upstream root'
    if (!resolved.pathname.startsWith(root.pathname)) return 'resolves outside the upstream root path'
    if (resolved.search !== '' || resolved.hash !== '') return 'carries a query or fragment'
    return unsafePathReason(relPath)
  }

  /** The URL to request, credentials included: it never leaves this module but for the client. */
  function locate(relPath: string): string {
    const problem = pathProblem(relPath)
    if (problem !== undefined) throw new UpstreamPathError(`${shownRoot}: path ${JSON.stringify(relPath)} ${problem}`)
    return new URL(relPath, root).href
  }

  return {
    async getDocument(relPath, validators = {}) {
      return client.fetchText(locate(relPath), validators)
    },
    async openFile(relPath, { offset = 0 } = {}) {
      return client.request(locate(relPath), offset > 0 ? { headers: { range: `bytes=${offset}-` } } : {})
    },
    pathProblem,
    describe: (relPath = '') => `${shownRoot}${relPath}`,
  }
}
