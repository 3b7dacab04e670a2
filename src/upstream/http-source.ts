/**
 * The HTTP(S) implementation of `UpstreamSource`: one base URL (the root),
 * fetched through the shared `UpstreamClient` (its connection bound,
 * timeouts, document limits and statistics). Credentials in the root
 * (`https://user:password@host/`) go out as Basic auth to that origin only,
 * and every URL this source shows is redacted. Its requests leave through the
 * transport its mirror configures (proxy, CAs). A file that upstream
 * redirected is resumed at the URL that answered, not asked again at the root.
 */

import { LRUCache } from 'lru-cache'
import { unsafePathReason } from '../streams/item-path.js'
import { redactUrl } from './redact-url.js'
import type { TransportSettings, UpstreamClient, UpstreamResponse } from './upstream-client.js'
import { UpstreamPathError, type UpstreamSource } from './upstream-source.js'

export interface HttpSourceOptions {
  /** The root URL, ending with `/`; may carry `user:password@`. */
  root: string
  client: UpstreamClient
  /** Proxy and CAs for this source; direct with Node's roots when omitted. */
  transport?: TransportSettings
}

// Fills in progress at once are far fewer: room for every one to resume.
const REMEMBERED_REDIRECTS = 1024

export function createHttpSource(options: HttpSourceOptions): UpstreamSource {
  const { client } = options
  const root = new URL(options.root)
  if (!root.pathname.endsWith('/')) throw new Error(`upstream root ${redactUrl(root.href)} must end with "/"`)
  const shownRoot = redactUrl(root.href)
  const transport = client.transport(options.transport ?? {})
  /** Item path → the URL a redirect led to, credentials included (it is below the seam). */
  const redirected = new LRUCache<string, string>({ max: REMEMBERED_REDIRECTS })

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
      return client.fetchText(locate(relPath), { ...validators, transport })
    },
    async openFile(relPath, { offset = 0 } = {}) {
      const url = locate(relPath)
      const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {}
      const final = offset > 0 ? redirected.get(relPath) : undefined
      let response: UpstreamResponse | undefined
      if (final !== undefined) {
        response = await client.request(final, { headers, transport })
        // A redirect target may be short-lived (a signed CDN URL): ask the root again.
        if (response.status >= 400 && response.status < 500) {
          response.body.resume()
          redirected.delete(relPath)
          response = undefined
        }
      }
      response ??= await client.request(url, { headers, transport })
      const { location, ...answer } = response
      if (location !== url && location !== final) redirected.set(relPath, location)
      return answer
    },
    pathProblem,
    describe: (relPath = '') => `${shownRoot}${relPath}`,
  }
}
