/**
 * Who may use the proxy (`listen.allow`, `listen.allowStatus`): a check on the
 * client's address made in the request listener, before the metadata fast path
 * and the app, so that no route answers a client it should refuse. Refused
 * requests get 403 and a log line with the address.
 */

import { BlockList, isIPv4, isIPv6 } from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from '../log/logger.js'
import { countRequest, type Traffic } from './traffic.js'

export class AddressRuleError extends Error {
  override name = 'AddressRuleError'
}

/** A parsed allowlist entry: a single address is a CIDR with the full prefix. */
export interface AddressRule {
  network: string
  prefix: number
  family: 'ipv4' | 'ipv6'
}

/** Parses `10.0.0.0/8`, `fd00::/8`, `10.1.2.3` or `::1`; throws `AddressRuleError` with a message fit for an operator. */
export function parseAddressRule(text: string): AddressRule {
  const [network = '', prefixText, ...rest] = text.split('/')
  const family = isIPv4(network) ? 'ipv4' : isIPv6(network) ? 'ipv6' : undefined
  if (family === undefined || rest.length > 0) {
    throw new AddressRuleError(`${JSON.stringify(text)} is not an IP address or CIDR (such as "192.168.10.0/24" or "fd00::/8")`)
  }
  const bits = family === 'ipv4' ? 32 : 128
  if (prefixText === undefined) return { network, prefix: bits, family }
  const prefix = Number(prefixText)
  if (!/^[0-9]{1,3}$/.test(prefixText) || prefix > bits) {
    throw new AddressRuleError(`${JSON.stringify(text)} has a prefix length out of range (0 to ${bits} for ${family === 'ipv4' ? 'IPv4' : 'IPv6'})`)
  }
  return { network, prefix, family }
}

/** Whether an address is in a list; undefined (no list configured) lets everyone in. */
function createAddressMatcher(rules: readonly string[] | undefined): (address: string) => boolean {
  if (rules === undefined) return () => true
  const list = new BlockList()
  for (const { network, prefix, family } of rules.map(parseAddressRule)) list.addSubnet(network, prefix, family)
  return function matches(address) {
    // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; IPv4 rules must still apply to them.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
    if (mapped !== null) return list.check(mapped[1] as string, 'ipv4')
    return isIPv4(address) ? list.check(address, 'ipv4') : isIPv6(address) && list.check(address, 'ipv6')
  }
}

export interface AccessControlOptions {
  /** `listen.allow`: metadata and files; undefined allows everyone. */
  allow?: readonly string[]
  /** `listen.allowStatus`: /status and /metrics; undefined uses `allow`. */
  allowStatus?: readonly string[]
  traffic: Traffic
  log: Logger
}

const STATUS_ROUTES = new Set(['/status', '/metrics'])
/** Open to both lists: MAAS and monitoring fetch the key; load balancers and monitoring check `/health`. */
const EITHER_LIST_ROUTES = new Set(['/keyring.gpg', '/keyring.asc', '/health'])

/**
 * The path as the router will see it, decoded: `/%73tatus` must be checked as
 * `/status`. A target that cannot be read is checked as data, under `allow`.
 */
function routedPath(target: string): string {
  try {
    return decodeURIComponent(new URL(target, 'http://proxy.invalid').pathname)
  } catch {
    return target
  }
}

/**
 * Returns a listener step that answers 403 and returns true for a client the
 * configuration refuses, or returns false to let the request through.
 */
export function createAccessControl(options: AccessControlOptions) {
  const allowed = createAddressMatcher(options.allow)
  const allowedStatus = options.allowStatus === undefined ? allowed : createAddressMatcher(options.allowStatus)
  const open = options.allow === undefined && options.allowStatus === undefined
  return function refuseUnlisted(request: IncomingMessage, response: ServerResponse): boolean {
    if (open) return false
    const address = request.socket.remoteAddress ?? ''
    const path = routedPath(request.url ?? '/')
    const admitted = STATUS_ROUTES.has(path)
      ? allowedStatus(address)
      : EITHER_LIST_ROUTES.has(path)
        ? allowed(address) || allowedStatus(address)
        : allowed(address)
    if (admitted) return false
    const body = 'forbidden: this address may not use this proxy\n'
    response.writeHead(403, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) })
    response.end(request.method === 'HEAD' ? undefined : body)
    countRequest(options.traffic, 'other', 403)
    options.log.warn('client refused', { address, method: request.method, path: request.url, status: 403 })
    return true
  }
}
