/**
 * How a mirror's requests leave the machine: straight to the upstream, or
 * through an HTTP proxy (`http://` upstreams as absolute-form requests,
 * `https://` ones through a `CONNECT` tunnel), trusting which certificate
 * authorities. The proxy is the configured one (`proxy`, `mirrors[].proxy`)
 * or, when none is configured, the one `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
 * name for that URL, read per request since a redirect may lead to another
 * host. The agents come from `http-proxy-agent` and `https-proxy-agent`, the
 * environment lookup from `proxy-from-env`; proxy credentials go out only in
 * the `Proxy-Authorization` header those agents send.
 */

import http from 'node:http'
import https from 'node:https'
import { rootCertificates } from 'node:tls'
import { HttpProxyAgent } from 'http-proxy-agent'
import { HttpsProxyAgent } from 'https-proxy-agent'
import { getProxyForUrl } from 'proxy-from-env'
import { redactUrl } from './redact-url.js'

const PROXY_VARIABLES = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY']

/** Whether the certificates of `ca` come on top of Node's bundled roots or instead of them. */
export type CaMode = 'add' | 'replace'

export interface TransportOptions {
  /** A proxy URL for every request; `false` for none; undefined to follow the environment. */
  proxy?: string | false
  /** PEM certificates trusted for the upstream's and the proxy's TLS. */
  ca?: { certificates: string[]; mode: CaMode }
  /** Keep-alive sockets per agent. */
  maxConnections: number
}

/** Where one request goes. */
export interface Route {
  agent: http.Agent
  /** TLS options for the request itself: a tunnel's agent reads the upstream's trust from the request, not from its own options. */
  tls: { ca?: string[] }
  /** The proxy it goes through, credentials redacted, for messages; undefined when direct. */
  proxy?: string
}

export interface Transport {
  /** The agent for `url`; throws `ProxySettingError` for a proxy URL it cannot use. */
  route(url: URL): Route
  /** Closes every socket of every agent. */
  destroy(): void
}

/** A proxy URL (configured or from the environment) that cannot be used. */
export class ProxySettingError extends Error {
  override name = 'ProxySettingError'
}

export function createTransport(options: TransportOptions): Transport {
  const tls = options.ca === undefined ? {} : { ca: options.ca.mode === 'add' ? [...rootCertificates, ...options.ca.certificates] : options.ca.certificates }
  const agentOptions = { keepAlive: true, maxSockets: options.maxConnections, ...tls }
  const direct = { 'http:': new http.Agent(agentOptions), 'https:': new https.Agent(agentOptions) }
  // One pair of agents per proxy URL met (env proxies can differ per scheme): a handful at most.
  const proxied = new Map<string, http.Agent>()

  function proxyFor(url: URL): string | undefined {
    if (options.proxy === false) return undefined
    if (options.proxy !== undefined) return options.proxy
    const fromEnv = getProxyForUrl(url.href)
    if (fromEnv === '') return undefined
    // proxy-from-env gives a proxy written without a scheme the request's own
    // (TLS to the proxy for an https upstream); curl, and every proxy, mean http://.
    const bare = fromEnv.slice(fromEnv.indexOf('://') + 3)
    return PROXY_VARIABLES.some((name) => process.env[name] === bare) ? `http://${bare}` : fromEnv
  }

  return {
    route(url) {
      const protocol = url.protocol as 'http:' | 'https:'
      const proxy = proxyFor(url)
      if (proxy === undefined) return { agent: direct[protocol], tls }
      const problem = proxyUrlProblem(proxy)
      if (problem !== undefined) throw new ProxySettingError(`proxy ${redactUrl(proxy)} ${problem}`)
      const key = `${protocol} ${proxy}`
      let agent = proxied.get(key)
      if (agent === undefined) {
        // The same trust for the proxy's own TLS (an https:// proxy) and the upstream's behind it.
        agent = protocol === 'https:' ? new HttpsProxyAgent(proxy, agentOptions) : new HttpProxyAgent(proxy, agentOptions)
        proxied.set(key, agent)
      }
      return { agent, tls, proxy: redactUrl(proxy) }
    },
    destroy() {
      direct['http:'].destroy()
      direct['https:'].destroy()
      for (const agent of proxied.values()) agent.destroy()
    },
  }
}

/** Why `proxy` cannot be used as a proxy URL, or undefined when it can. */
export function proxyUrlProblem(proxy: string): string | undefined {
  let url: URL
  try {
    url = new URL(proxy)
  } catch {
    return 'is not a URL (expected http://[user:password@]host:port/)'
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `has the unsupported scheme ${url.protocol} (expected http: or https:)`
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') return 'must not have a path, query or fragment'
  return undefined
}
