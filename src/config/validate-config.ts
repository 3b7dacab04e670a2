/**
 * Turns a parsed configuration file (or the built-in default) into a `Config`.
 * `config.schema.json` is the single source of truth for the file's shape: it
 * is checked with ajv first, and its first error becomes a one-line
 * `ConfigError` naming the source and the key. What a schema cannot say is
 * checked after it, in small functions: durations a timer can hold, regular
 * expressions in filters, CIDR syntax, mirrors that do not clash. The same
 * functions explain a value that fails a schema pattern, so that a bad path or
 * duration gets a specific reason rather than the pattern it missed. Files
 * that must exist (keyrings, TLS files, CA files) are checked by `loadConfig`.
 */

import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js'
import { FilterSyntaxError, parseFilter, type Filter } from '../streams/filter.js'
import { AddressRuleError, parseAddressRule } from '../server/access-control.js'
import type { CaConfig, Config, FleetConfig, MetadataMode, MirrorConfig, MissFailure, PublishMode, SelectionConfig, StoreConfig } from './types.js'
import { DEFAULTS, SIGNING_KEY_FILE, STOCK_KEYRING } from './defaults.js'
import { ByteSizeSyntaxError, parseByteSize } from './byte-size.js'
import { DurationSyntaxError, describeValue, parseDuration } from './duration.js'
import { redactUrl } from '../upstream/redact-url.js'
import { proxyUrlProblem } from '../upstream/outbound-transport.js'
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
  /** Relative paths (dataDir, signingKey, keyring, TLS files) resolve against it. */
  baseDir: string
}

/** The file's shape once the schema has accepted it. */
interface ConfigFile {
  listen?: { host?: string; port?: number; tls?: { cert: string; key: string }; allow?: string[]; allowStatus?: string[] }
  dataDir?: string
  store?: StoreFile
  fleet?: { advertise: string; secretFile: string; claimTtl?: string | number; leaseTtl?: string | number }
  signingKey?: string
  metadataTtl?: string | number
  prefetch?: { onStart?: boolean; interval?: string | number; concurrency?: number; rate?: string | number; windows?: string[] }
  limits?: { pipelinedRequests?: number; metadataMaxBytes?: string | number; metadataTimeout?: string | number; readBufferMemory?: string | number; upstreamRate?: string | number }
  proxy?: string | false
  ca?: string
  caMode?: CaConfig['mode']
  mirrors: MirrorFile[]
}

type StoreFile =
  | { type: 'filesystem' }
  | { type: 's3'; endpoint: string; bucket: string; prefix?: string; region?: string; forcePathStyle?: boolean; abandonedUploadAge?: string | number }

/** The keys that say how upstream requests leave the machine, at the top level and per mirror. */
type OutboundFile = Pick<ConfigFile, 'proxy' | 'ca' | 'caMode'>

interface MirrorFile extends OutboundFile {
  name: string
  path: string
  upstream: string | string[]
  upstreamCooldown?: string | number
  keyring?: string
  metadata?: MetadataMode
  publish?: PublishMode
  missFailure?: MissFailure
  missWait?: string | number
  selections?: Array<{ filters: string[]; max?: number }>
}

/** A node of the schema, as far as error messages read it. */
interface SchemaNode {
  type?: string
  properties?: Record<string, SchemaNode>
  enum?: unknown[]
  minimum?: number
  maximum?: number
  minLength?: number
  minItems?: number
  $defs?: Record<string, SchemaNode>
  items?: SchemaNode
}

type Fail = (key: string, problem: string) => never

// The schema sits next to package.json, both in a checkout (src/config/) and once built (dist/config/).
const SCHEMA = JSON.parse(readFileSync(new URL('../../config.schema.json', import.meta.url), 'utf8')) as SchemaNode
// verbose: errors carry the failing value and the schema node, which the messages quote.
// Without allErrors ajv stops at the first problem, as the messages report one.
const matchesSchema = new Ajv2020({ strict: true, verbose: true }).compile<ConfigFile>(SCHEMA)

// Node's timers hold at most 2^31 - 1 ms (24.8 days).
const MAX_DURATION_SECONDS = 24 * 86_400

/** Routes of the proxy itself, which no mirror path may shadow; `/_fleet` is the replicas' internal endpoint (src/fleet/peer-fill.ts). */
export const RESERVED_ROUTES = ['/status', '/metrics', '/keyring.gpg', '/keyring.asc', '/_fleet']

const MIRROR_NAME = /^[A-Za-z0-9._-]+$/
// Segments of URL-unreserved characters only: nothing that needs escaping, so the
// path a client sends is the path configured, byte for byte.
const MIRROR_PATH_CHARS = /^[A-Za-z0-9._~/-]+$/
// A host name or an IPv4/IPv6 literal (checked with isIP); no scheme, port or path.
const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/

/** Validates a parsed configuration, throwing `ConfigError` at the first problem. */
export function validateConfig(raw: unknown, options: ValidateConfigOptions): Config {
  const fail: Fail = (key, problem) => {
    throw new ConfigError(options.source, key, problem)
  }
  if (!matchesSchema(raw)) explainSchemaError(matchesSchema.errors?.at(-1), fail)
  const file = raw as ConfigFile

  const listen = file.listen ?? {}
  const host = listen.host ?? DEFAULTS.listen.host
  if (isIP(host) === 0 && !HOST_NAME.test(host)) fail('listen.host', `${describeValue(host)} is not a host name or IP address`)
  const port = listen.port ?? DEFAULTS.listen.port
  listen.allow?.forEach((rule, index) => checkAddressRule(rule, `listen.allow[${index}]`, fail))
  listen.allowStatus?.forEach((rule, index) => checkAddressRule(rule, `listen.allowStatus[${index}]`, fail))
  const tls = listen.tls && { cert: resolve(options.baseDir, listen.tls.cert), key: resolve(options.baseDir, listen.tls.key) }

  const dataDir = resolve(options.baseDir, file.dataDir ?? DEFAULTS.dataDir)
  const signingKey = file.signingKey === undefined ? resolve(dataDir, SIGNING_KEY_FILE) : resolve(options.baseDir, file.signingKey)
  const store = convertStore(file.store ?? { type: 'filesystem' }, fail)
  const fleet = file.fleet && convertFleet(file.fleet, store, options.baseDir, fail)
  const metadataTtl = checkDuration(file.metadataTtl ?? DEFAULTS.metadataTtl, 'metadataTtl', fail)

  const prefetch = file.prefetch ?? {}
  const onStart = prefetch.onStart ?? DEFAULTS.prefetch.onStart
  const interval = checkDuration(prefetch.interval ?? DEFAULTS.prefetch.interval, 'prefetch.interval', fail)
  const concurrency = prefetch.concurrency ?? DEFAULTS.prefetch.concurrency
  const windows = (prefetch.windows ?? DEFAULTS.prefetch.windows).map((window, index) => checkWindow(window, `prefetch.windows[${index}]`, fail))
  const upstreamRate = file.limits?.upstreamRate === undefined ? undefined : checkRate(file.limits.upstreamRate, 'limits.upstreamRate', fail)
  const prefetchRate = prefetch.rate === undefined ? undefined : checkRate(prefetch.rate, 'prefetch.rate', fail)
  if (prefetchRate !== undefined && upstreamRate !== undefined && prefetchRate > upstreamRate) {
    fail('prefetch.rate', `${describeValue(prefetch.rate)} exceeds limits.upstreamRate ${describeValue(file.limits?.upstreamRate)}`)
  }

  const pipelinedRequests = file.limits?.pipelinedRequests ?? DEFAULTS.limits.pipelinedRequests
  const metadataMaxBytes = checkMetadataMaxBytes(file.limits?.metadataMaxBytes ?? DEFAULTS.limits.metadataMaxBytes, 'limits.metadataMaxBytes', fail)
  const metadataTimeout = checkDuration(file.limits?.metadataTimeout ?? DEFAULTS.limits.metadataTimeout, 'limits.metadataTimeout', fail)
  const readBufferMemory = checkReadBufferMemory(file.limits?.readBufferMemory ?? DEFAULTS.limits.readBufferMemory, 'limits.readBufferMemory', fail)

  if (typeof file.proxy === 'string') checkProxy(file.proxy, 'proxy', fail)
  const mirrors = file.mirrors.map((mirror, index) => convertMirror(mirror, `mirrors[${index}]`, file, options.baseDir, fail))
  checkMirrorsApart(mirrors, fail)

  return {
    listen: {
      host,
      port,
      ...(tls && { tls }),
      ...(listen.allow && { allow: listen.allow }),
      ...(listen.allowStatus && { allowStatus: listen.allowStatus }),
    },
    dataDir,
    store,
    ...(fleet && { fleet }),
    signingKey,
    metadataTtl,
    prefetch: { onStart, interval, concurrency, ...(prefetchRate !== undefined && { rate: prefetchRate }), windows },
    limits: { pipelinedRequests, metadataMaxBytes, metadataTimeout, readBufferMemory, ...(upstreamRate !== undefined && { upstreamRate }) },
    mirrors,
    source: options.source,
  }
}

function convertStore(store: StoreFile, fail: Fail): StoreConfig {
  if (store.type === 'filesystem') return { type: 'filesystem' }
  const { endpoint, bucket } = store
  const url = URL.canParse(endpoint) ? new URL(endpoint) : undefined
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) fail('store.endpoint', `${describeValue(endpoint)} is not an http(s) URL`)
  if (url?.username !== '' || url?.password !== '') fail('store.endpoint', 'credentials do not go in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY')
  const prefix = store.prefix ?? DEFAULTS.store.prefix
  if (prefix !== '' && !prefix.endsWith('/')) fail('store.prefix', `${describeValue(prefix)} must be empty or end with "/"`)
  return {
    type: 's3',
    endpoint,
    bucket,
    prefix,
    region: store.region ?? DEFAULTS.store.region,
    forcePathStyle: store.forcePathStyle ?? DEFAULTS.store.forcePathStyle,
    abandonedUploadAge: checkDuration(store.abandonedUploadAge ?? DEFAULTS.store.abandonedUploadAge, 'store.abandonedUploadAge', fail),
  }
}

// A claim or lease renewed every third of its life needs a second or so between renewals.
const MIN_FLEET_TTL_SECONDS = 2

function convertFleet(fleet: NonNullable<ConfigFile['fleet']>, store: StoreConfig, baseDir: string, fail: Fail): FleetConfig {
  if (store.type !== 's3') fail('fleet', 'the replicas of a fleet share an S3 store: set store.type to "s3"')
  const url = URL.canParse(fleet.advertise) ? new URL(fleet.advertise) : undefined
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) fail('fleet.advertise', `${describeValue(fleet.advertise)} is not an http(s) URL`)
  if (url?.username !== '' || url?.password !== '' || url?.search !== '' || url?.hash !== '') {
    fail('fleet.advertise', `${describeValue(fleet.advertise)} must be a plain base URL, without credentials, query or fragment`)
  }
  const ttl = (value: string | number, key: string) => {
    const seconds = checkDuration(value, key, fail)
    if (seconds < MIN_FLEET_TTL_SECONDS) fail(key, `${describeValue(value)} is shorter than ${MIN_FLEET_TTL_SECONDS}s`)
    return seconds
  }
  return {
    advertise: (url as URL).href.endsWith('/') ? (url as URL).href : `${(url as URL).href}/`,
    secretFile: resolve(baseDir, fleet.secretFile),
    claimTtl: ttl(fleet.claimTtl ?? DEFAULTS.fleet.claimTtl, 'fleet.claimTtl'),
    leaseTtl: ttl(fleet.leaseTtl ?? DEFAULTS.fleet.leaseTtl, 'fleet.leaseTtl'),
  }
}

function convertMirror(mirror: MirrorFile, key: string, global: OutboundFile, baseDir: string, fail: Fail): MirrorConfig {
  const keyring = mirror.keyring === undefined ? STOCK_KEYRING : resolve(baseDir, mirror.keyring)
  const selections = (mirror.selections ?? []).map((selection, index): SelectionConfig => {
    const filters = selection.filters.map((filter, at) => checkFilter(filter, `${key}.selections[${index}].filters[${at}]`, fail))
    return selection.max === undefined ? { filters } : { filters, max: selection.max }
  })
  return {
    name: mirror.name,
    path: mirror.path,
    upstreams: checkUpstreams(mirror.upstream, `${key}.upstream`, fail),
    upstreamCooldown: checkDuration(mirror.upstreamCooldown ?? DEFAULTS.mirror.upstreamCooldown, `${key}.upstreamCooldown`, fail),
    ...outbound(mirror, key, global, baseDir, fail),
    keyring,
    // The stock keyring may be missing even when named explicitly (config.example.json
    // names it): the server then says how to install it instead of refusing to start.
    keyringIsDefault: keyring === STOCK_KEYRING,
    metadata: mirror.metadata ?? DEFAULTS.mirror.metadata,
    publish: mirror.publish ?? DEFAULTS.mirror.publish,
    missFailure: mirror.missFailure ?? DEFAULTS.mirror.missFailure,
    missWait: checkDuration(mirror.missWait ?? DEFAULTS.mirror.missWait, `${key}.missWait`, fail),
    selections,
  }
}

/** A mirror's own `proxy`, `ca` and `caMode`, else the top-level ones; left out when neither says. */
function outbound(mirror: OutboundFile, key: string, global: OutboundFile, baseDir: string, fail: Fail): Pick<MirrorConfig, 'proxy' | 'ca'> {
  if (typeof mirror.proxy === 'string') checkProxy(mirror.proxy, `${key}.proxy`, fail)
  const proxy = mirror.proxy ?? global.proxy
  const ca = mirror.ca ?? global.ca
  const mode = mirror.caMode ?? global.caMode ?? 'add'
  const caKey = mirror.ca === undefined ? 'ca' : `${key}.ca`
  return { ...(proxy !== undefined && { proxy }), ...(ca !== undefined && { ca: { path: resolve(baseDir, ca), mode, key: caKey } }) }
}

/** A proxy URL the transport can use: http or https, a host, no path; shown redacted, as it may carry a password. */
function checkProxy(value: unknown, key: string, fail: Fail): void {
  if (typeof value !== 'string') fail(key, `expected a proxy URL such as "http://proxy.example:3128/", or false for none, got ${describeValue(value)}`)
  const problem = proxyUrlProblem(value)
  if (problem !== undefined) fail(key, `${describeValue(redactUrl(value))} ${problem}`)
}

/**
 * Every configured duration is at least a second (shorter would hammer
 * upstream) and at most 24 days: Node runs a longer timer after 1 ms, which
 * would start prefetch passes back to back.
 */
function checkDuration(value: unknown, key: string, fail: Fail): number {
  const seconds = parsed(parseDuration, DurationSyntaxError, value, key, fail)
  if (seconds < 1) fail(key, `${describeValue(value)} is too short (at least 1s)`)
  if (seconds > MAX_DURATION_SECONDS) fail(key, `${describeValue(value)} is too long (at most 24d)`)
  return seconds
}

// A metadata document smaller than this cannot hold a real index.
const MIN_METADATA_BYTES = 64 * 1024
const MIN_READ_BUFFER_BYTES = 1024 * 1024

function checkByteSize(value: unknown, key: string, fail: Fail): number {
  return parsed(parseByteSize, ByteSizeSyntaxError, value, key, fail)
}

function checkMetadataMaxBytes(value: unknown, key: string, fail: Fail): number {
  const bytes = checkByteSize(value, key, fail)
  if (bytes < MIN_METADATA_BYTES) fail(key, `${describeValue(value)} is too small (at least ${MIN_METADATA_BYTES} bytes)`)
  return bytes
}

/** Read buffers are cut from 1 MiB pages: a smaller budget could hold none. */
function checkReadBufferMemory(value: unknown, key: string, fail: Fail): number {
  const bytes = checkByteSize(value, key, fail)
  if (bytes < MIN_READ_BUFFER_BYTES) fail(key, `${describeValue(value)} is too small (at least 1MiB)`)
  return bytes
}

function checkRate(value: unknown, key: string, fail: Fail): number {
  return parsed(parseRate, RateSyntaxError, value, key, fail)
}

function checkWindow(value: unknown, key: string, fail: Fail): TimeWindow {
  return parsed((text) => parseWindow(String(text)), WindowSyntaxError, value, key, fail)
}

function checkFilter(value: unknown, key: string, fail: Fail): Filter {
  return parsed((text) => parseFilter(String(text)), FilterSyntaxError, value, key, fail)
}

function checkAddressRule(value: unknown, key: string, fail: Fail): void {
  parsed((text) => parseAddressRule(String(text)), AddressRuleError, value, key, fail)
}

/**
 * `parse(value)`, where the parser's own syntax error (an instance of
 * `syntax`) becomes the one-line error naming `key`; any other error is a bug
 * and goes up as it is.
 */
function parsed<T>(parse: (value: unknown) => T, syntax: abstract new (...args: never[]) => Error, value: unknown, key: string, fail: Fail): T {
  try {
    return parse(value)
  } catch (error) {
    if (error instanceof syntax) fail(key, error.message)
    throw error
  }
}

function checkMirrorName(value: unknown, key: string, fail: Fail): void {
  if (!MIRROR_NAME.test(String(value))) fail(key, `${describeValue(value)} may only contain letters, digits, ".", "_" and "-"`)
}

function checkMirrorPath(value: unknown, key: string, fail: Fail): void {
  const path = String(value)
  const quoted = describeValue(path)
  if (!path.startsWith('/') || !path.endsWith('/')) fail(key, `${quoted} must start and end with "/"`)
  if (path === '/') {
    fail(key, `"/" alone would hide the proxy's own routes; use a prefix such as "/maas/images/ephemeral-v3/stable/"`)
  }
  if (path.includes('//')) fail(key, `${quoted} must not contain "//"`)
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) fail(key, `${quoted} must not contain "." or ".." segments`)
  if (!MIRROR_PATH_CHARS.test(path)) {
    fail(key, `${quoted} may only contain letters, digits, ".", "_", "~", "-" and "/" (no "%", "\\" or spaces)`)
  }
  const reserved = RESERVED_ROUTES.find((route) => path.startsWith(`${route}/`))
  if (reserved !== undefined) fail(key, `${quoted} collides with the proxy's own route ${reserved}`)
}

/**
 * Returns the upstream URL ending with `/`: an http(s) URL, or a `file:` URL
 * for a directory, which an absolute path becomes. The directory need not
 * exist yet: a disk not mounted at start is a metadata error on /status
 * (retried on every refresh), not a configuration that refuses to start.
 */
function checkUpstream(value: unknown, key: string, fail: Fail): string {
  const text = String(value)
  // The URL may carry a password: messages show it redacted.
  const shown = describeValue(redactUrl(text))
  if (text.includes('?') || text.includes('#')) fail(key, `${shown} must not have a query or fragment (file paths are appended to it)`)
  let url: URL
  if (text.startsWith('/')) {
    url = pathToFileURL(text)
  } else {
    try {
      url = new URL(text)
    } catch {
      fail(key, `${shown} is not a URL or an absolute path`)
    }
  }
  if (url.protocol === 'file:') {
    if (url.host !== '') fail(key, `${shown} names a host; a directory upstream is file:///absolute/path/ or /absolute/path/`)
  } else if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    fail(key, `${shown} must be an http or https URL, a file:// URL or an absolute path`)
  }
  return url.href.endsWith('/') ? url.href : `${url.href}/`
}

/** A mirror's `upstream`, one URL or a non-empty list of distinct ones, as a list of URLs ending with `/`. */
function checkUpstreams(value: unknown, key: string, fail: Fail): string[] {
  if (!Array.isArray(value)) {
    if (typeof value !== 'string') fail(key, `expected a URL or a list of URLs, got ${describeValue(value)}`)
    return [checkUpstream(value, key, fail)]
  }
  if (value.length === 0) fail(key, 'empty (at least one upstream URL is required)')
  const urls: string[] = []
  value.forEach((entry: unknown, index) => {
    const url = checkUpstream(entry, `${key}[${index}]`, fail)
    const earlier = urls.indexOf(url)
    if (earlier !== -1) fail(`${key}[${index}]`, `${describeValue(redactUrl(url))} is already ${key}[${earlier}]`)
    urls.push(url)
  })
  return urls
}

/** Names and paths identify mirrors in URLs, status and storage, so no two may clash. */
function checkMirrorsApart(mirrors: MirrorConfig[], fail: Fail): void {
  mirrors.forEach((mirror, index) => {
    for (let other = 0; other < index; other++) {
      const earlier = mirrors[other] as MirrorConfig
      if (earlier.name === mirror.name) fail(`mirrors[${index}].name`, `${describeValue(mirror.name)} is already the name of mirrors[${other}]`)
      if (earlier.path === mirror.path) fail(`mirrors[${index}].path`, `${describeValue(mirror.path)} is already the path of mirrors[${other}]`)
      if (mirror.path.startsWith(earlier.path) || earlier.path.startsWith(mirror.path)) {
        fail(
          `mirrors[${index}].path`,
          `${describeValue(mirror.path)} overlaps mirrors[${other}].path ${describeValue(earlier.path)} (one may not be a prefix of the other)`,
        )
      }
    }
  })
}

/**
 * The checks that give a specific reason for a value that fails a pattern (or
 * a `oneOf`, `not`) of these schema nodes. A value with no explainer gets ajv's
 * own wording.
 */
const EXPLAINERS = new Map<SchemaNode | undefined, (value: unknown, key: string, fail: Fail) => unknown>([
  [SCHEMA.$defs?.duration, checkDuration],
  [SCHEMA.$defs?.rate, checkRate],
  [SCHEMA.properties?.prefetch?.properties?.windows?.items, checkWindow],
  // The schema's integer minimum is the metadata cap's, its only byte size so far.
  [SCHEMA.$defs?.byteSize, checkMetadataMaxBytes],
  [SCHEMA.$defs?.addressRule, checkAddressRule],
  [SCHEMA.$defs?.proxy, checkProxy],
  [SCHEMA.$defs?.mirror?.properties?.name, checkMirrorName],
  [SCHEMA.$defs?.mirror?.properties?.path, checkMirrorPath],
  [SCHEMA.$defs?.mirror?.properties?.upstream, checkUpstreams],
  [SCHEMA.$defs?.upstreamUrl, checkUpstream],
  [SCHEMA.$defs?.selection?.properties?.filters?.items, checkFilter],
])

/**
 * Throws the `ConfigError` for ajv's error: the last one reported, since a
 * failing `oneOf` or `not` comes after the errors of its branches.
 */
function explainSchemaError(error: ErrorObject | undefined, fail: Fail): never {
  if (error === undefined) return fail('', 'does not match config.schema.json')
  const key = keyOf(error.instancePath)
  const schema = error.parentSchema as SchemaNode
  const value: unknown = error.data
  const got = `got ${describeValue(value)}`
  switch (error.keyword) {
    case 'required': {
      const name = (error.params as { missingProperty: string }).missingProperty
      const listOf = schema.properties?.[name]?.minItems !== undefined
      return fail(childKey(key, name), listOf ? `missing (at least one ${singular(name)} is required)` : 'missing (required)')
    }
    case 'additionalProperties': {
      const name = (error.params as { additionalProperty: string }).additionalProperty
      return fail(childKey(key, name), `unknown key (expected one of ${Object.keys(schema.properties ?? {}).join(', ')})`)
    }
    case 'minItems':
      return fail(key, `empty (at least one ${singular(key)} is required)`)
    case 'enum':
      return fail(key, `expected ${(schema.enum ?? []).map((choice) => JSON.stringify(choice)).join(' or ')}, ${got}`)
    case 'type':
    case 'minLength':
    case 'minimum':
    case 'maximum':
      return fail(key, `${expectedType(schema)}, ${got}`)
  }
  EXPLAINERS.get(schema)?.(value, key, fail)
  return fail(key, `${describeValue(value)} ${error.message ?? 'is not valid'}`)
}

/** `expected an integer from 0 to 65535`, and the like, from a schema node. */
function expectedType(schema: SchemaNode): string {
  switch (schema.type) {
    case 'object':
      return 'expected an object'
    case 'array':
      return 'expected a list'
    case 'boolean':
      return 'expected true or false'
    case 'string':
      return schema.minLength === undefined ? 'expected a string' : 'expected a non-empty string'
    case 'integer':
    case 'number': {
      const { minimum, maximum } = schema
      const noun = schema.type === 'integer' ? 'an integer' : 'a number'
      if (minimum !== undefined && maximum !== undefined) return `expected ${noun} from ${minimum} to ${maximum}`
      if (minimum !== undefined) return `expected ${noun} of at least ${minimum}`
      if (maximum !== undefined) return `expected ${noun} of at most ${maximum}`
      return `expected ${noun}`
    }
  }
  return `expected ${schema.type ?? 'another value'}`
}

/** `/mirrors/0/selections/1` as the operator reads it: `mirrors[0].selections[1]`. */
function keyOf(instancePath: string): string {
  return instancePath
    .split('/')
    .slice(1)
    .map((segment) => segment.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce((key, segment) => (/^[0-9]+$/.test(segment) ? `${key}[${segment}]` : childKey(key, segment)), '')
}

function childKey(key: string, name: string): string {
  return key === '' ? name : `${key}.${name}`
}

/** `mirrors` → `mirror`, for "at least one mirror is required". */
function singular(key: string): string {
  const name = key.split('.').at(-1) ?? key
  return name.endsWith('s') ? name.slice(0, -1) : name
}
