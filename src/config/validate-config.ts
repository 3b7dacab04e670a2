/**
 * Checks a parsed configuration file (or the built-in default) key by key and
 * turns it into a `Config`: defaults applied, paths absolute, durations in
 * seconds, filters parsed. The first problem found is thrown as a `ConfigError`
 * whose one-line message names the source and the key.
 */

import { isIP } from 'node:net'
import { resolve } from 'node:path'
import { FilterSyntaxError, parseFilter } from '../streams/filter.js'
import type { Config, MirrorConfig, SelectionConfig } from './types.js'
import { DEFAULTS, SIGNING_KEY_FILE, STOCK_KEYRING } from './defaults.js'
import { DurationSyntaxError, describeValue, parseDuration } from './duration.js'
import { RateSyntaxError, parseRate } from './rate.js'
import { WindowSyntaxError, parseWindow, type TimeWindow } from '../prefetch/windows.js'

export class ConfigError extends Error {
  override name = 'ConfigError'
  constructor(
    /** The configuration file as the operator knows it, or `built-in default`. */
    readonly source: string,
    /** The key path, like `mirrors[0].selections[1].filters[0]`; empty for the file as a whole. */
    readonly key: string,
    readonly problem: string,
  ) {
    super(key === '' ? `${source}: ${problem}` : `${source}: ${key}: ${problem}`)
  }
}

export interface ValidateConfigOptions {
  /** Named in messages and kept as `Config.source`. */
  source: string
  /** Relative paths (dataDir, signingKey, keyring) resolve against it. */
  baseDir: string
}

const TOP_KEYS = ['$schema', 'listen', 'dataDir', 'signingKey', 'metadataTtl', 'prefetch', 'limits', 'mirrors']
const LISTEN_KEYS = ['host', 'port']
const PREFETCH_KEYS = ['onStart', 'interval', 'concurrency', 'rate', 'windows']
const LIMITS_KEYS = ['upstreamRate']
const MIRROR_KEYS = ['name', 'path', 'upstream', 'keyring', 'metadata', 'publish', 'missFailure', 'missWait', 'selections']
const SELECTION_KEYS = ['filters', 'max']
const METADATA_MODES = ['filtered', 'upstream'] as const
const PUBLISH_MODES = ['selected', 'cached'] as const
const MISS_FAILURES = ['reset', '503'] as const
// Node's timers hold at most 2^31 - 1 ms (24.8 days).
const MAX_DURATION_SECONDS = 24 * 86_400

/** Routes of the proxy itself, which no mirror path may shadow. */
export const RESERVED_ROUTES = ['/status', '/metrics', '/keyring.gpg', '/keyring.asc']

const MIRROR_NAME = /^[A-Za-z0-9._-]+$/
// Segments of URL-unreserved characters only: nothing that needs escaping, so the
// path a client sends is the path configured, byte for byte.
const MIRROR_PATH_CHARS = /^[A-Za-z0-9._~/-]+$/
// A host name or an IPv4/IPv6 literal (checked with isIP); no scheme, port or path.
const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/

/** Validates a parsed configuration, throwing `ConfigError` at the first problem. */
export function validateConfig(raw: unknown, options: ValidateConfigOptions): Config {
  const check = new Checker(options.source)
  const top = check.object(raw, '', TOP_KEYS)
  if (top.$schema !== undefined) {
    check.string(top.$schema, '$schema')
  }

  const listen = check.object(orDefault(top.listen, {}), 'listen', LISTEN_KEYS)
  const host = check.string(orDefault(listen.host, DEFAULTS.listen.host), 'listen.host')
  if (isIP(host) === 0 && !HOST_NAME.test(host)) {
    check.fail('listen.host', `${describeValue(host)} is not a host name or IP address`)
  }
  const port = check.integer(orDefault(listen.port, DEFAULTS.listen.port), 'listen.port', 0, 65535)

  const dataDir = resolve(options.baseDir, check.string(orDefault(top.dataDir, DEFAULTS.dataDir), 'dataDir'))
  const signingKey =
    top.signingKey === undefined
      ? resolve(dataDir, SIGNING_KEY_FILE)
      : resolve(options.baseDir, check.string(top.signingKey, 'signingKey'))
  const metadataTtl = check.duration(orDefault(top.metadataTtl, DEFAULTS.metadataTtl), 'metadataTtl')

  const prefetch = check.object(orDefault(top.prefetch, {}), 'prefetch', PREFETCH_KEYS)
  const onStart = check.boolean(orDefault(prefetch.onStart, DEFAULTS.prefetch.onStart), 'prefetch.onStart')
  const interval = check.duration(orDefault(prefetch.interval, DEFAULTS.prefetch.interval), 'prefetch.interval')
  const concurrency = check.integer(orDefault(prefetch.concurrency, DEFAULTS.prefetch.concurrency), 'prefetch.concurrency', 1, 64)
  const windows = check
    .array(orDefault(prefetch.windows, DEFAULTS.prefetch.windows), 'prefetch.windows')
    .map((window, index) => check.window(window, `prefetch.windows[${index}]`))

  const limits = check.object(orDefault(top.limits, {}), 'limits', LIMITS_KEYS)
  const upstreamRate = limits.upstreamRate === undefined ? undefined : check.rate(limits.upstreamRate, 'limits.upstreamRate')
  const prefetchRate = prefetch.rate === undefined ? undefined : check.rate(prefetch.rate, 'prefetch.rate')
  if (prefetchRate !== undefined && upstreamRate !== undefined && prefetchRate > upstreamRate) {
    check.fail('prefetch.rate', `${describeValue(prefetch.rate)} exceeds limits.upstreamRate ${describeValue(limits.upstreamRate)}`)
  }

  if (top.mirrors === undefined) {
    check.fail('mirrors', 'missing (at least one mirror is required)')
  }
  const rawMirrors = check.array(top.mirrors, 'mirrors')
  if (rawMirrors.length === 0) {
    check.fail('mirrors', 'empty (at least one mirror is required)')
  }
  const mirrors = rawMirrors.map((value, index) => validateMirror(check, value, `mirrors[${index}]`, options.baseDir))
  checkMirrorsApart(check, mirrors)

  return {
    listen: { host, port },
    dataDir,
    signingKey,
    metadataTtl,
    prefetch: { onStart, interval, concurrency, ...(prefetchRate === undefined ? {} : { rate: prefetchRate }), windows },
    limits: upstreamRate === undefined ? {} : { upstreamRate },
    mirrors,
    source: options.source,
  }
}

function validateMirror(check: Checker, value: unknown, key: string, baseDir: string): MirrorConfig {
  const mirror = check.object(value, key, MIRROR_KEYS)
  const name = check.string(check.required(mirror, 'name', key), `${key}.name`)
  if (!MIRROR_NAME.test(name)) {
    check.fail(`${key}.name`, `${describeValue(name)} may only contain letters, digits, ".", "_" and "-"`)
  }
  const path = checkMirrorPath(check, check.string(check.required(mirror, 'path', key), `${key}.path`), `${key}.path`)
  const upstream = checkUpstream(check, check.string(check.required(mirror, 'upstream', key), `${key}.upstream`), `${key}.upstream`)
  const keyring =
    mirror.keyring === undefined ? STOCK_KEYRING : resolve(baseDir, check.string(mirror.keyring, `${key}.keyring`))
  const metadata = check.oneOf(orDefault(mirror.metadata, DEFAULTS.mirror.metadata), `${key}.metadata`, METADATA_MODES)
  const publish = check.oneOf(orDefault(mirror.publish, DEFAULTS.mirror.publish), `${key}.publish`, PUBLISH_MODES)
  const missFailure = check.oneOf(orDefault(mirror.missFailure, DEFAULTS.mirror.missFailure), `${key}.missFailure`, MISS_FAILURES)
  const missWait = check.duration(orDefault(mirror.missWait, DEFAULTS.mirror.missWait), `${key}.missWait`)
  const selections = check
    .array(orDefault(mirror.selections, []), `${key}.selections`)
    .map((selection, index) => validateSelection(check, selection, `${key}.selections[${index}]`))
  // The stock keyring may be missing even when named explicitly (config.example.json
  // names it): the server then says how to install it instead of refusing to start.
  return { name, path, upstream, keyring, keyringIsDefault: keyring === STOCK_KEYRING, metadata, publish, missFailure, missWait, selections }
}

function validateSelection(check: Checker, value: unknown, key: string): SelectionConfig {
  const selection = check.object(value, key, SELECTION_KEYS)
  const filters = check.array(check.required(selection, 'filters', key), `${key}.filters`).map((filter, index) => {
    const filterKey = `${key}.filters[${index}]`
    try {
      return parseFilter(check.string(filter, filterKey))
    } catch (error) {
      if (error instanceof FilterSyntaxError) {
        check.fail(filterKey, error.message)
      }
      throw error
    }
  })
  if (selection.max === undefined) {
    return { filters }
  }
  return { filters, max: check.integer(selection.max, `${key}.max`, 1, Number.MAX_SAFE_INTEGER) }
}

function checkMirrorPath(check: Checker, path: string, key: string): string {
  const quoted = describeValue(path)
  if (!path.startsWith('/') || !path.endsWith('/')) {
    check.fail(key, `${quoted} must start and end with "/"`)
  }
  if (path === '/') {
    check.fail(key, `"/" alone would hide the proxy's own routes; use a prefix such as "/maas/images/ephemeral-v3/stable/"`)
  }
  if (path.includes('//')) {
    check.fail(key, `${quoted} must not contain "//"`)
  }
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) {
    check.fail(key, `${quoted} must not contain "." or ".." segments`)
  }
  if (!MIRROR_PATH_CHARS.test(path)) {
    check.fail(key, `${quoted} may only contain letters, digits, ".", "_", "~", "-" and "/" (no "%", "\\" or spaces)`)
  }
  const reserved = RESERVED_ROUTES.find((route) => path.startsWith(`${route}/`))
  if (reserved !== undefined) {
    check.fail(key, `${quoted} collides with the proxy's own route ${reserved}`)
  }
  return path
}

function checkUpstream(check: Checker, text: string, key: string): string {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    check.fail(key, `${describeValue(text)} is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    check.fail(key, `${describeValue(text)} must be an http or https URL`)
  }
  if (url.search !== '' || url.hash !== '' || text.includes('?') || text.includes('#')) {
    check.fail(key, `${describeValue(text)} must not have a query or fragment (file paths are appended to it)`)
  }
  return url.href.endsWith('/') ? url.href : `${url.href}/`
}

/** Names and paths identify mirrors in URLs, status and storage, so no two may clash. */
function checkMirrorsApart(check: Checker, mirrors: MirrorConfig[]): void {
  mirrors.forEach((mirror, index) => {
    for (let other = 0; other < index; other++) {
      const earlier = mirrors[other] as MirrorConfig
      if (earlier.name === mirror.name) {
        check.fail(`mirrors[${index}].name`, `${describeValue(mirror.name)} is already the name of mirrors[${other}]`)
      }
      if (earlier.path === mirror.path) {
        check.fail(`mirrors[${index}].path`, `${describeValue(mirror.path)} is already the path of mirrors[${other}]`)
      }
      if (mirror.path.startsWith(earlier.path) || earlier.path.startsWith(mirror.path)) {
        check.fail(
          `mirrors[${index}].path`,
          `${describeValue(mirror.path)} overlaps mirrors[${other}].path ${describeValue(earlier.path)} (one may not be a prefix of the other)`,
        )
      }
    }
  })
}

/** A key set to `null` is a wrong type, not an omitted key, so only `undefined` takes the default. */
function orDefault(value: unknown, fallback: unknown): unknown {
  return value === undefined ? fallback : value
}

/** Type and range checks that throw a `ConfigError` naming the key. */
class Checker {
  constructor(private readonly source: string) {}

  fail(key: string, problem: string): never {
    throw new ConfigError(this.source, key, problem)
  }

  object(value: unknown, key: string, known: readonly string[]): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.fail(key, `expected an object, got ${describeValue(value)}`)
    }
    const unknown = Object.keys(value).find((name) => !known.includes(name))
    if (unknown !== undefined) {
      this.fail(key === '' ? unknown : `${key}.${unknown}`, `unknown key (expected one of ${known.join(', ')})`)
    }
    return value as Record<string, unknown>
  }

  required(object: Record<string, unknown>, name: string, key: string): unknown {
    if (object[name] === undefined) {
      this.fail(`${key}.${name}`, 'missing (required)')
    }
    return object[name]
  }

  array(value: unknown, key: string): unknown[] {
    if (!Array.isArray(value)) {
      this.fail(key, `expected a list, got ${describeValue(value)}`)
    }
    return value
  }

  string(value: unknown, key: string): string {
    if (typeof value !== 'string' || value === '') {
      this.fail(key, `expected a non-empty string, got ${describeValue(value)}`)
    }
    return value
  }

  boolean(value: unknown, key: string): boolean {
    if (typeof value !== 'boolean') {
      this.fail(key, `expected true or false, got ${describeValue(value)}`)
    }
    return value
  }

  integer(value: unknown, key: string, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`
      this.fail(key, `expected an integer ${range}, got ${describeValue(value)}`)
    }
    return value
  }

  oneOf<T extends string>(value: unknown, key: string, choices: readonly T[]): T {
    if (!choices.includes(value as T)) {
      this.fail(key, `expected ${choices.map((choice) => `"${choice}"`).join(' or ')}, got ${describeValue(value)}`)
    }
    return value as T
  }

  rate(value: unknown, key: string): number {
    try {
      return parseRate(value)
    } catch (error) {
      if (error instanceof RateSyntaxError) this.fail(key, error.message)
      throw error
    }
  }

  window(value: unknown, key: string): TimeWindow {
    try {
      return parseWindow(this.string(value, key))
    } catch (error) {
      if (error instanceof WindowSyntaxError) this.fail(key, error.message)
      throw error
    }
  }

  /**
   * Every configured duration is at least a second (shorter would hammer
   * upstream) and at most 24 days: Node runs a longer timer after 1 ms, which
   * would start prefetch passes back to back.
   */
  duration(value: unknown, key: string): number {
    let seconds: number
    try {
      seconds = parseDuration(value)
    } catch (error) {
      if (error instanceof DurationSyntaxError) {
        this.fail(key, error.message)
      }
      throw error
    }
    if (seconds < 1) {
      this.fail(key, `${describeValue(value)} is too short (at least 1s)`)
    }
    if (seconds > MAX_DURATION_SECONDS) {
      this.fail(key, `${describeValue(value)} is too long (at most 24d)`)
    }
    return seconds
  }
}
