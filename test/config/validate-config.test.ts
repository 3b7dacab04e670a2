import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, validateConfig } from '../../src/config/validate-config.js'
import { STOCK_KEYRING } from '../../src/config/defaults.js'

const options = { source: 'config.json', baseDir: '/srv/proxy' }

function mirror(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'stable', path: '/stable/', upstream: 'https://images.example/stable/', ...fields }
}

/** The message of the ConfigError that `raw` is rejected with. */
function rejection(raw: unknown): string {
  try {
    validateConfig(raw, options)
  } catch (error) {
    assert.ok(error instanceof ConfigError, `threw ${String(error)}`)
    assert.doesNotMatch(error.message, /\n/)
    return error.message
  }
  assert.fail(`accepted ${JSON.stringify(raw)}`)
}

describe('validateConfig defaults', () => {
  test('a file with only mirrors gets every documented default', () => {
    const config = validateConfig({ mirrors: [mirror()] }, options)
    assert.deepEqual(config.listen, { host: '0.0.0.0', port: 8080 })
    assert.equal(config.dataDir, '/srv/proxy/data')
    assert.equal(config.signingKey, '/srv/proxy/data/signing-key.asc')
    assert.equal(config.metadataTtl, 600)
    assert.deepEqual(config.prefetch, { onStart: true, interval: 3600, concurrency: 4, windows: [] })
    assert.deepEqual(config.limits, { pipelinedRequests: 32, metadataMaxBytes: 64 * 1024 * 1024, metadataTimeout: 120, readBufferMemory: 64 * 1024 * 1024 })
    assert.equal(config.source, 'config.json')
    const [only] = config.mirrors
    assert.ok(only)
    assert.equal(only.keyring, STOCK_KEYRING)
    assert.equal(only.keyringIsDefault, true)
    assert.equal(only.metadata, 'filtered')
    assert.equal(only.publish, 'selected')
    assert.equal(only.missFailure, 'reset')
    assert.equal(only.missWait, 8)
    assert.deepEqual(only.selections, [])
  })

  test('signingKey follows a configured dataDir', () => {
    assert.equal(validateConfig({ dataDir: '/var/cache/ssp', mirrors: [mirror()] }, options).signingKey, '/var/cache/ssp/signing-key.asc')
  })

  test('half-given listen and prefetch objects keep the defaults of the other keys', () => {
    const config = validateConfig({ listen: { port: 0 }, prefetch: { concurrency: 64 }, mirrors: [mirror()] }, options)
    assert.deepEqual(config.listen, { host: '0.0.0.0', port: 0 })
    assert.deepEqual(config.prefetch, { onStart: true, interval: 3600, concurrency: 64, windows: [] })
    assert.deepEqual(config.limits, { pipelinedRequests: 32, metadataMaxBytes: 64 * 1024 * 1024, metadataTimeout: 120, readBufferMemory: 64 * 1024 * 1024 })
  })

  test('listen.tls paths resolve against the file; allowlists are kept as written', () => {
    const config = validateConfig(
      { listen: { tls: { cert: 'tls/proxy.crt', key: '/etc/ssl/proxy.key' }, allow: ['10.0.0.0/8', '::1'], allowStatus: ['192.0.2.7'] }, mirrors: [mirror()] },
      options,
    )
    assert.deepEqual(config.listen, {
      host: '0.0.0.0',
      port: 8080,
      tls: { cert: '/srv/proxy/tls/proxy.crt', key: '/etc/ssl/proxy.key' },
      allow: ['10.0.0.0/8', '::1'],
      allowStatus: ['192.0.2.7'],
    })
  })

  test('every key given is kept, converted and resolved', () => {
    const config = validateConfig(
      {
        $schema: './config.schema.json',
        listen: { host: '::1', port: 9000 },
        dataDir: 'cache',
        signingKey: 'keys/proxy.asc',
        metadataTtl: 90,
        prefetch: { onStart: false, interval: '1d', concurrency: 8, rate: '160Mbit/s', windows: ['22:00-06:00'] },
        limits: { pipelinedRequests: 4, upstreamRate: '20MB/s' },
        mirrors: [
          mirror({
            upstream: 'http://mirror.example:8000/ephemeral-v3/stable',
            keyring: 'keys/upstream.gpg',
            metadata: 'upstream',
            publish: 'cached',
            selections: [{ filters: ['arch=amd64', 'release!~^(bionic|focal)$'], max: 2 }, { filters: [] }],
          }),
        ],
      },
      options,
    )
    assert.deepEqual(config.listen, { host: '::1', port: 9000 })
    assert.equal(config.dataDir, '/srv/proxy/cache')
    assert.equal(config.signingKey, '/srv/proxy/keys/proxy.asc')
    assert.equal(config.metadataTtl, 90)
    assert.deepEqual(config.prefetch, { onStart: false, interval: 86400, concurrency: 8, rate: 20_000_000, windows: [{ start: 22 * 60, end: 6 * 60, text: '22:00-06:00' }] })
    assert.deepEqual(config.limits, { pipelinedRequests: 4, metadataMaxBytes: 64 * 1024 * 1024, metadataTimeout: 120, readBufferMemory: 64 * 1024 * 1024, upstreamRate: 20_000_000 })
    const [only] = config.mirrors
    assert.ok(only)
    assert.deepEqual(only.upstreams, ['http://mirror.example:8000/ephemeral-v3/stable/'], 'a trailing slash is added')
    assert.equal(only.keyring, '/srv/proxy/keys/upstream.gpg')
    assert.equal(only.keyringIsDefault, false)
    assert.equal(only.metadata, 'upstream')
    assert.equal(only.publish, 'cached')
    assert.equal(only.selections.length, 2)
    assert.equal(only.selections[0]?.max, 2)
    assert.deepEqual(only.selections[0]?.filters.map((filter) => filter.source), ['arch=amd64', 'release!~^(bionic|focal)$'])
    assert.equal(only.selections[0]?.filters[1]?.matches(new Map([['release', 'noble']])), true)
    assert.equal(only.selections[1]?.max, undefined)
  })

  test('limits default to a 64 MiB metadata cap and a 2 minute metadata deadline, and take sizes with units or in bytes', () => {
    assert.deepEqual(validateConfig({ mirrors: [mirror()] }, options).limits, { pipelinedRequests: 32, metadataMaxBytes: 64 * 1024 * 1024, metadataTimeout: 120, readBufferMemory: 64 * 1024 * 1024 })
    assert.deepEqual(validateConfig({ limits: { metadataMaxBytes: '8MiB', metadataTimeout: '30s' }, mirrors: [mirror()] }, options).limits, { pipelinedRequests: 32, metadataMaxBytes: 8 * 1024 * 1024, metadataTimeout: 30, readBufferMemory: 64 * 1024 * 1024 })
    assert.equal(validateConfig({ limits: { metadataMaxBytes: 100_000 }, mirrors: [mirror()] }, options).limits.metadataMaxBytes, 100_000)
    assert.equal(validateConfig({ limits: { metadataMaxBytes: '20MB' }, mirrors: [mirror()] }, options).limits.metadataMaxBytes, 20_000_000)
    assert.equal(validateConfig({ limits: { readBufferMemory: '256MiB' }, mirrors: [mirror()] }, options).limits.readBufferMemory, 256 * 1024 * 1024)
  })

  test('an upstream with credentials keeps them for the request', () => {
    assert.deepEqual(validateConfig({ mirrors: [mirror({ upstream: 'https://mirror:S3cret@images.example/stable' })] }, options).mirrors[0]?.upstreams, ['https://mirror:S3cret@images.example/stable/'])
  })

  test('upstream may be a list of URLs, tried in order, with a cool-down of 5 minutes unless set', () => {
    const [single] = validateConfig({ mirrors: [mirror()] }, options).mirrors
    assert.deepEqual(single?.upstreams, ['https://images.example/stable/'])
    assert.equal(single?.upstreamCooldown, 300)
    const [listed] = validateConfig({ mirrors: [mirror({ upstream: ['http://local.example/stable', 'https://images.example/stable/'], upstreamCooldown: '1m' })] }, options).mirrors
    assert.deepEqual(listed?.upstreams, ['http://local.example/stable/', 'https://images.example/stable/'])
    assert.equal(listed?.upstreamCooldown, 60)
  })

  test('a directory upstream, as an absolute path or a file:// URL, becomes a file: URL ending with "/" and need not exist yet', () => {
    const upstreamOf = (upstream: string) => validateConfig({ mirrors: [mirror({ upstream })] }, options).mirrors[0]?.upstreams[0]
    assert.equal(upstreamOf('/media/images/maas'), 'file:///media/images/maas/', 'a disk not mounted at start is a metadata error, not a config error')
    assert.equal(upstreamOf('/media/images/maas/'), 'file:///media/images/maas/')
    assert.equal(upstreamOf('file:///media/images/maas'), 'file:///media/images/maas/')
    assert.equal(upstreamOf('/srv/boot images/'), 'file:///srv/boot%20images/')
    assert.throws(() => upstreamOf('file://fileserver/share/'), /mirrors\[0\]\.upstream: "file:\/\/fileserver\/share\/" names a host; a directory upstream is file:\/\/\/absolute\/path\/ or \/absolute\/path\/$/)
    assert.throws(() => upstreamOf('media/images/'), /is not a URL or an absolute path$/)
  })

  test('naming the stock keyring explicitly still lets it be missing', () => {
    assert.equal(validateConfig({ mirrors: [mirror({ keyring: STOCK_KEYRING })] }, options).mirrors[0]?.keyringIsDefault, true)
  })
})

describe('validateConfig rejections name the key', () => {
  const cases: [string, unknown, string][] = [
    ['a non-object file', [1], 'config.json: expected an object, got [1]'],
    ['an unknown top-level key', { mirrors: [mirror()], listn: {} }, 'config.json: listn: unknown key (expected one of $schema, listen, dataDir, store, fleet, signingKey, metadataTtl, prefetch, limits, proxy, ca, caMode, mirrors)'],
    ['an unknown listen key', { listen: { hots: 'x' }, mirrors: [mirror()] }, 'config.json: listen.hots: unknown key (expected one of host, port, tls, allow, allowStatus)'],
    ['an unknown prefetch key', { prefetch: { every: '1h' }, mirrors: [mirror()] }, 'config.json: prefetch.every: unknown key (expected one of onStart, interval, concurrency, rate, windows)'],
    ['an unknown mirror key', { mirrors: [mirror({ colour: 'red' })] }, 'config.json: mirrors[0].colour: unknown key (expected one of name, path, upstream, upstreamCooldown, proxy, ca, caMode, keyring, metadata, publish, missFailure, missWait, selections)'],
    ['a proxy with an unknown scheme', { proxy: 'socks5://user:pw@proxy.corp:1080/', mirrors: [mirror()] }, 'config.json: proxy: "socks5://user:***@proxy.corp:1080/" has the unsupported scheme socks5: (expected http: or https:)'],
    ['a mirror proxy with a path', { mirrors: [mirror({ proxy: 'http://proxy.corp:3128/squid' })] }, 'config.json: mirrors[0].proxy: "http://proxy.corp:3128/squid" must not have a path, query or fragment'],
    ['a proxy that is true', { proxy: true, mirrors: [mirror()] }, 'config.json: proxy: expected a proxy URL such as "http://proxy.example:3128/", or false for none, got true'],
    ['a proxy that is not a URL', { proxy: 'proxy.corp:3128', mirrors: [mirror()] }, 'config.json: proxy: "proxy.corp:3128" has the unsupported scheme proxy.corp: (expected http: or https:)'],
    ['an unknown caMode', { ca: 'corp.pem', caMode: 'merge', mirrors: [mirror()] }, 'config.json: caMode: expected "add" or "replace", got "merge"'],
    ['an unknown selection key', { mirrors: [mirror({ selections: [{ filters: [], keep: 1 }] })] }, 'config.json: mirrors[0].selections[0].keep: unknown key (expected one of filters, max)'],
    ['an allow entry that is not an address', { listen: { allow: ['10.0.0.0/8', 'maas.example'] }, mirrors: [mirror()] }, 'config.json: listen.allow[1]: "maas.example" is not an IP address or CIDR (such as "192.168.10.0/24" or "fd00::/8")'],
    ['an allow prefix out of range', { listen: { allow: ['10.0.0.0/33'] }, mirrors: [mirror()] }, 'config.json: listen.allow[0]: "10.0.0.0/33" has a prefix length out of range (0 to 32 for IPv4)'],
    ['an allowStatus address with a bad group', { listen: { allowStatus: ['fd00::zz'] }, mirrors: [mirror()] }, 'config.json: listen.allowStatus[0]: "fd00::zz" is not an IP address or CIDR (such as "192.168.10.0/24" or "fd00::/8")'],
    ['allow as a string', { listen: { allow: '10.0.0.0/8' }, mirrors: [mirror()] }, 'config.json: listen.allow: expected a list, got "10.0.0.0/8"'],
    ['tls without a key', { listen: { tls: { cert: 'proxy.crt' } }, mirrors: [mirror()] }, 'config.json: listen.tls.key: missing (required)'],
    ['an unknown tls key', { listen: { tls: { cert: 'proxy.crt', key: 'proxy.key', ca: 'ca.crt' } }, mirrors: [mirror()] }, 'config.json: listen.tls.ca: unknown key (expected one of cert, key)'],
    ['a non-string $schema', { $schema: 1, mirrors: [mirror()] }, 'config.json: $schema: expected a non-empty string, got 1'],
    ['listen as a string', { listen: '0.0.0.0:8080', mirrors: [mirror()] }, 'config.json: listen: expected an object, got "0.0.0.0:8080"'],
    ['listen null', { listen: null, mirrors: [mirror()] }, 'config.json: listen: expected an object, got null'],
    ['an empty host', { listen: { host: '' }, mirrors: [mirror()] }, 'config.json: listen.host: expected a non-empty string, got ""'],
    ['a host with a port', { listen: { host: 'localhost:80' }, mirrors: [mirror()] }, 'config.json: listen.host: "localhost:80" is not a host name or IP address'],
    ['a port out of range', { listen: { port: 65536 }, mirrors: [mirror()] }, 'config.json: listen.port: expected an integer from 0 to 65535, got 65536'],
    ['a negative port', { listen: { port: -1 }, mirrors: [mirror()] }, 'config.json: listen.port: expected an integer from 0 to 65535, got -1'],
    ['a port as a string', { listen: { port: '8080' }, mirrors: [mirror()] }, 'config.json: listen.port: expected an integer from 0 to 65535, got "8080"'],
    ['a fractional port', { listen: { port: 80.5 }, mirrors: [mirror()] }, 'config.json: listen.port: expected an integer from 0 to 65535, got 80.5'],
    ['a non-string dataDir', { dataDir: 5, mirrors: [mirror()] }, 'config.json: dataDir: expected a non-empty string, got 5'],
    ['an empty signingKey', { signingKey: '', mirrors: [mirror()] }, 'config.json: signingKey: expected a non-empty string, got ""'],
    ['a bad metadataTtl unit', { metadataTtl: '10x', mirrors: [mirror()] }, 'config.json: metadataTtl: "10x" is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)'],
    ['a metadataTtl under a second', { metadataTtl: 0.5, mirrors: [mirror()] }, 'config.json: metadataTtl: 0.5 is too short (at least 1s)'],
    ['a prefetch interval too long for a timer', { prefetch: { interval: '30d' }, mirrors: [mirror()] }, 'config.json: prefetch.interval: "30d" is too long (at most 24d)'],
    ['a metadataTtl too long for a timer', { metadataTtl: 1e308, mirrors: [mirror()] }, 'config.json: metadataTtl: 1e+308 is too long (at most 24d)'],
    ['a zero metadataTtl', { metadataTtl: 0, mirrors: [mirror()] }, 'config.json: metadataTtl: 0 is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)'],
    ['a bad prefetch interval', { prefetch: { interval: '1 hour' }, mirrors: [mirror()] }, 'config.json: prefetch.interval: "1 hour" is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)'],
    ['a non-boolean onStart', { prefetch: { onStart: 'yes' }, mirrors: [mirror()] }, 'config.json: prefetch.onStart: expected true or false, got "yes"'],
    ['a zero concurrency', { prefetch: { concurrency: 0 }, mirrors: [mirror()] }, 'config.json: prefetch.concurrency: expected an integer from 1 to 64, got 0'],
    ['a concurrency over 64', { prefetch: { concurrency: 65 }, mirrors: [mirror()] }, 'config.json: prefetch.concurrency: expected an integer from 1 to 64, got 65'],
    ['an empty list of upstreams', { mirrors: [mirror({ upstream: [] })] }, 'config.json: mirrors[0].upstream: empty (at least one upstream URL is required)'],
    ['an upstream that is neither a URL nor a list', { mirrors: [mirror({ upstream: 5 })] }, 'config.json: mirrors[0].upstream: expected a URL or a list of URLs, got 5'],
    ['an ftp upstream in a list, with a password the message hides', { mirrors: [mirror({ upstream: ['https://images.example/stable/', 'ftp://mirror:S3cret@images.example/stable/'] })] }, 'config.json: mirrors[0].upstream[1]: "ftp://mirror:***@images.example/stable/" must be an http or https URL, a file:// URL or an absolute path'],
    ['an upstream listed twice', { mirrors: [mirror({ upstream: ['https://images.example/stable', 'https://images.example/stable/'] })] }, 'config.json: mirrors[0].upstream[1]: "https://images.example/stable/" is already mirrors[0].upstream[0]'],
    ['an upstreamCooldown that is not a duration', { mirrors: [mirror({ upstreamCooldown: 'soon' })] }, 'config.json: mirrors[0].upstreamCooldown: "soon" is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)'],
    ['an unknown limits key', { limits: { pipeline: 4 }, mirrors: [mirror()] }, 'config.json: limits.pipeline: unknown key (expected one of metadataMaxBytes, metadataTimeout, readBufferMemory, pipelinedRequests, upstreamRate)'],
    ['a zero pipeline limit', { limits: { pipelinedRequests: 0 }, mirrors: [mirror()] }, 'config.json: limits.pipelinedRequests: expected an integer from 1 to 1000, got 0'],
    ['no mirrors', {}, 'config.json: mirrors: missing (at least one mirror is required)'],
    ['empty mirrors', { mirrors: [] }, 'config.json: mirrors: empty (at least one mirror is required)'],
    ['mirrors as an object', { mirrors: mirror() }, 'config.json: mirrors: expected a list, got {"name":"stable","path":"/stable/","upstream":"https://im...' /* long values are cut */],
    ['a mirror that is not an object', { mirrors: ['stable'] }, 'config.json: mirrors[0]: expected an object, got "stable"'],
    ['a mirror without a name', { mirrors: [mirror({ name: undefined })] }, 'config.json: mirrors[0].name: missing (required)'],
    ['a mirror name with a slash', { mirrors: [mirror({ name: 'a/b' })] }, 'config.json: mirrors[0].name: "a/b" may only contain letters, digits, ".", "_" and "-"'],
    ['a mirror without a path', { mirrors: [mirror({ path: undefined })] }, 'config.json: mirrors[0].path: missing (required)'],
    ['a path without a leading slash', { mirrors: [mirror({ path: 'stable/' })] }, 'config.json: mirrors[0].path: "stable/" must start and end with "/"'],
    ['a path without a trailing slash', { mirrors: [mirror({ path: '/stable' })] }, 'config.json: mirrors[0].path: "/stable" must start and end with "/"'],
    ['the root path', { mirrors: [mirror({ path: '/' })] }, 'config.json: mirrors[0].path: "/" alone would hide the proxy\'s own routes; use a prefix such as "/maas/images/ephemeral-v3/stable/"'],
    ['a path with //', { mirrors: [mirror({ path: '/a//b/' })] }, 'config.json: mirrors[0].path: "/a//b/" must not contain "//"'],
    ['a path with ..', { mirrors: [mirror({ path: '/a/../b/' })] }, 'config.json: mirrors[0].path: "/a/../b/" must not contain "." or ".." segments'],
    ['a path with .', { mirrors: [mirror({ path: '/./b/' })] }, 'config.json: mirrors[0].path: "/./b/" must not contain "." or ".." segments'],
    ['a path with %', { mirrors: [mirror({ path: '/a%2Fb/' })] }, 'config.json: mirrors[0].path: "/a%2Fb/" may only contain letters, digits, ".", "_", "~", "-" and "/" (no "%", "\\" or spaces)'],
    ['a path with a backslash', { mirrors: [mirror({ path: '/a\\b/' })] }, 'config.json: mirrors[0].path: "/a\\\\b/" may only contain letters, digits, ".", "_", "~", "-" and "/" (no "%", "\\" or spaces)'],
    ['a path under /status', { mirrors: [mirror({ path: '/status/' })] }, 'config.json: mirrors[0].path: "/status/" collides with the proxy\'s own route /status'],
    ['a path under /keyring.gpg', { mirrors: [mirror({ path: '/keyring.gpg/x/' })] }, 'config.json: mirrors[0].path: "/keyring.gpg/x/" collides with the proxy\'s own route /keyring.gpg'],
    ['a path under /metrics', { mirrors: [mirror({ path: '/metrics/' })] }, 'config.json: mirrors[0].path: "/metrics/" collides with the proxy\'s own route /metrics'],
    ['a path under /_fleet', { mirrors: [mirror({ path: '/_fleet/fills/' })] }, 'config.json: mirrors[0].path: "/_fleet/fills/" collides with the proxy\'s own route /_fleet'],
    ['a mirror without an upstream', { mirrors: [mirror({ upstream: undefined })] }, 'config.json: mirrors[0].upstream: missing (required)'],
    ['an upstream that is not a URL', { mirrors: [mirror({ upstream: 'images.maas.io/stable/' })] }, 'config.json: mirrors[0].upstream: "images.maas.io/stable/" is not a URL or an absolute path'],
    ['an ftp upstream', { mirrors: [mirror({ upstream: 'ftp://images.example/stable/' })] }, 'config.json: mirrors[0].upstream: "ftp://images.example/stable/" must be an http or https URL, a file:// URL or an absolute path'],
    ['an upstream with a query', { mirrors: [mirror({ upstream: 'https://images.example/stable/?x=1' })] }, 'config.json: mirrors[0].upstream: "https://images.example/stable/?x=1" must not have a query or fragment (file paths are appended to it)'],
    ['an ftp upstream with a password, which the message hides', { mirrors: [mirror({ upstream: 'ftp://mirror:S3cret@images.example/stable/' })] }, 'config.json: mirrors[0].upstream: "ftp://mirror:***@images.example/stable/" must be an http or https URL, a file:// URL or an absolute path'],
    ['an empty list of upstreams', { mirrors: [mirror({ upstream: [] })] }, 'config.json: mirrors[0].upstream: empty (at least one upstream URL is required)'],
    ['an upstream that is neither a URL nor a list', { mirrors: [mirror({ upstream: 5 })] }, 'config.json: mirrors[0].upstream: expected a URL or a list of URLs, got 5'],
    ['an ftp upstream in a list, with a password the message hides', { mirrors: [mirror({ upstream: ['https://images.example/stable/', 'ftp://mirror:S3cret@images.example/stable/'] })] }, 'config.json: mirrors[0].upstream[1]: "ftp://mirror:***@images.example/stable/" must be an http or https URL, a file:// URL or an absolute path'],
    ['an upstream listed twice', { mirrors: [mirror({ upstream: ['https://images.example/stable', 'https://images.example/stable/'] })] }, 'config.json: mirrors[0].upstream[1]: "https://images.example/stable/" is already mirrors[0].upstream[0]'],
    ['an upstreamCooldown that is not a duration', { mirrors: [mirror({ upstreamCooldown: 'soon' })] }, 'config.json: mirrors[0].upstreamCooldown: "soon" is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)'],
    ['an unknown limits key', { limits: { metadataSize: '1MiB' }, mirrors: [mirror()] }, 'config.json: limits.metadataSize: unknown key (expected one of metadataMaxBytes, metadataTimeout, readBufferMemory, pipelinedRequests, upstreamRate)'],
    ['a metadata cap that is not a size', { limits: { metadataMaxBytes: '64 megs' }, mirrors: [mirror()] }, 'config.json: limits.metadataMaxBytes: "64 megs" is not a size (use a number of bytes or a number with KiB, MiB, GiB, KB, MB or GB, e.g. "64MiB")'],
    ['a read buffer budget under one 1 MiB page', { limits: { readBufferMemory: '512KiB' }, mirrors: [mirror()] }, 'config.json: limits.readBufferMemory: "512KiB" is too small (at least 1MiB)'],
    ['a metadata cap too small for any index', { limits: { metadataMaxBytes: 1000 }, mirrors: [mirror()] }, 'config.json: limits.metadataMaxBytes: 1000 is too small (at least 65536 bytes)'],
    ['a metadata timeout that is not a duration', { limits: { metadataTimeout: '2 minutes' }, mirrors: [mirror()] }, 'config.json: limits.metadataTimeout: "2 minutes" is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)'],
    ['an empty keyring', { mirrors: [mirror({ keyring: '' })] }, 'config.json: mirrors[0].keyring: expected a non-empty string, got ""'],
    ['an unknown metadata mode', { mirrors: [mirror({ metadata: 'signed' })] }, 'config.json: mirrors[0].metadata: expected "filtered" or "upstream", got "signed"'],
    ['an unknown publish mode', { mirrors: [mirror({ publish: 'all' })] }, 'config.json: mirrors[0].publish: expected "selected" or "cached", got "all"'],
    ['an unknown missFailure', { mirrors: [mirror({ missFailure: '502' })] }, 'config.json: mirrors[0].missFailure: expected "reset" or "503", got "502"'],
    ['a missWait under a second', { mirrors: [mirror({ missWait: '500ms' })] }, 'config.json: mirrors[0].missWait: "500ms" is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)'],
    ['selections as an object', { mirrors: [mirror({ selections: { filters: [] } })] }, 'config.json: mirrors[0].selections: expected a list, got {"filters":[]}'],
    ['a selection without filters', { mirrors: [mirror({ selections: [{ max: 1 }] })] }, 'config.json: mirrors[0].selections[0].filters: missing (required)'],
    ['filters as a string', { mirrors: [mirror({ selections: [{ filters: 'arch=amd64' }] })] }, 'config.json: mirrors[0].selections[0].filters: expected a list, got "arch=amd64"'],
    ['a bad filter operator', { mirrors: [mirror({ selections: [{ filters: ['arch=amd64'] }, { filters: ['arch>1'] }] })] }, 'config.json: mirrors[0].selections[1].filters[0]: unknown operator in "arch>1" (use =, !=, ~ or !~)'],
    ['a filter without a key', { mirrors: [mirror({ selections: [{ filters: ['=amd64'] }] })] }, 'config.json: mirrors[0].selections[0].filters[0]: missing key in "=amd64" (expected KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX)'],
    ['a filter with a bad regular expression', { mirrors: [mirror({ selections: [{ filters: ['arch=amd64', 'release~(jammy'] }] })] }, 'config.json: mirrors[0].selections[0].filters[1]: invalid regular expression in "release~(jammy": Invalid regular expression: /(jammy/: Unterminated group'],
    ['a non-string filter', { mirrors: [mirror({ selections: [{ filters: [{ arch: 'amd64' }] }] })] }, 'config.json: mirrors[0].selections[0].filters[0]: expected a non-empty string, got {"arch":"amd64"}'],
    ['a zero max', { mirrors: [mirror({ selections: [{ filters: [], max: 0 }] })] }, 'config.json: mirrors[0].selections[0].max: expected an integer of at least 1, got 0'],
    ['a fractional max', { mirrors: [mirror({ selections: [{ filters: [], max: 1.5 }] })] }, 'config.json: mirrors[0].selections[0].max: expected an integer of at least 1, got 1.5'],
    ['a duplicate mirror name', { mirrors: [mirror(), mirror({ path: '/candidate/' })] }, 'config.json: mirrors[1].name: "stable" is already the name of mirrors[0]'],
    ['a duplicate mirror path', { mirrors: [mirror(), mirror({ name: 'candidate' })] }, 'config.json: mirrors[1].path: "/stable/" is already the path of mirrors[0]'],
    ['a path inside another', { mirrors: [mirror({ path: '/maas/' }), mirror({ name: 'candidate', path: '/maas/candidate/' })] }, 'config.json: mirrors[1].path: "/maas/candidate/" overlaps mirrors[0].path "/maas/" (one may not be a prefix of the other)'],
    ['a path containing a later one', { mirrors: [mirror({ path: '/maas/stable/' }), mirror({ name: 'all', path: '/maas/' })] }, 'config.json: mirrors[1].path: "/maas/" overlaps mirrors[0].path "/maas/stable/" (one may not be a prefix of the other)'],
    ['a problem in the second mirror', { mirrors: [mirror(), mirror({ name: 'candidate', path: '/candidate/', publish: 'newest' })] }, 'config.json: mirrors[1].publish: expected "selected" or "cached", got "newest"'],
    ['an unknown limits key', { limits: { rate: '1MB/s' }, mirrors: [mirror()] }, 'config.json: limits.rate: unknown key (expected one of metadataMaxBytes, metadataTimeout, readBufferMemory, pipelinedRequests, upstreamRate)'],
    ['a rate that is a word', { limits: { upstreamRate: 'fast' }, mirrors: [mirror()] }, 'config.json: limits.upstreamRate: "fast" is not a rate (use e.g. "20MB/s", "160Mbit/s", "512KiB/s" or a number of bytes per second)'],
    ['a rate of 0', { limits: { upstreamRate: 0 }, mirrors: [mirror()] }, 'config.json: limits.upstreamRate: 0 is too low (at least 1kB/s; leave the key out for no limit)'],
    ['a rate of "0MB/s"', { limits: { upstreamRate: '0MB/s' }, mirrors: [mirror()] }, 'config.json: limits.upstreamRate: "0MB/s" is too low (at least 1kB/s; leave the key out for no limit)'],
    ['a rate without "/s"', { limits: { upstreamRate: '20MB' }, mirrors: [mirror()] }, 'config.json: limits.upstreamRate: "20MB" is not a rate (use e.g. "20MB/s", "160Mbit/s", "512KiB/s" or a number of bytes per second)'],
    ['a negative rate', { limits: { upstreamRate: -5e6 }, mirrors: [mirror()] }, 'config.json: limits.upstreamRate: -5000000 is too low (at least 1kB/s; leave the key out for no limit)'],
    ['a bad prefetch rate', { prefetch: { rate: 'fast' }, mirrors: [mirror()] }, 'config.json: prefetch.rate: "fast" is not a rate (use e.g. "20MB/s", "160Mbit/s", "512KiB/s" or a number of bytes per second)'],
    ['a prefetch rate above the upstream rate', { prefetch: { rate: '30MB/s' }, limits: { upstreamRate: '20MB/s' }, mirrors: [mirror()] }, 'config.json: prefetch.rate: "30MB/s" exceeds limits.upstreamRate "20MB/s"'],
    ['windows as a string', { prefetch: { windows: '22:00-06:00' }, mirrors: [mirror()] }, 'config.json: prefetch.windows: expected a list, got "22:00-06:00"'],
    ['a window starting at 25:00', { prefetch: { windows: ['25:00-06:00'] }, mirrors: [mirror()] }, 'config.json: prefetch.windows[0]: "25:00-06:00" has a start that is not a time of day (00:00 to 23:59)'],
    ['a window ending at 06:60', { prefetch: { windows: ['22:00-06:00', '12:00-06:60'] }, mirrors: [mirror()] }, 'config.json: prefetch.windows[1]: "12:00-06:60" has an end that is not a time of day (00:00 to 24:00)'],
    ['a window in another shape', { prefetch: { windows: ['10pm-6am'] }, mirrors: [mirror()] }, 'config.json: prefetch.windows[0]: "10pm-6am" is not a window (use "HH:MM-HH:MM" in local time, e.g. "22:00-06:00")'],
    ['an empty window', { prefetch: { windows: ['06:00-06:00'] }, mirrors: [mirror()] }, 'config.json: prefetch.windows[0]: "06:00-06:00" starts where it ends (use "00:00-24:00" for the whole day)'],
    ['a window that is not a string', { prefetch: { windows: [22] }, mirrors: [mirror()] }, 'config.json: prefetch.windows[0]: expected a string, got 22'],
  ]
  for (const [what, raw, message] of cases) {
    test(what, () => assert.equal(rejection(raw), message))
  }

  test('paths that share a prefix string but not a segment are apart', () => {
    const config = validateConfig({ mirrors: [mirror({ path: '/stable/' }), mirror({ name: 'stable-2', path: '/stable-2/' })] }, options)
    assert.deepEqual(config.mirrors.map((each) => each.path), ['/stable/', '/stable-2/'])
  })

  test('ConfigError keeps the source, key and problem apart', () => {
    const error = new ConfigError('config.json', 'listen.port', 'bad')
    assert.equal(error.message, 'config.json: listen.port: bad')
    assert.equal(error.key, 'listen.port')
    assert.equal(error.problem, 'bad')
    assert.equal(error.source, 'config.json')
  })
})

describe('validateConfig outbound keys', () => {
  test('a top-level proxy and ca apply to every mirror; a mirror overrides them or says false', () => {
    const config = validateConfig(
      {
        proxy: 'http://user:pw@proxy.corp:3128/',
        ca: 'corp-ca.pem',
        mirrors: [
          mirror(),
          mirror({ name: 'local', path: '/local/', proxy: false, ca: '/etc/ssl/lab.pem', caMode: 'replace' }),
        ],
      },
      options,
    )
    const [stable, local] = config.mirrors
    assert.equal(stable?.proxy, 'http://user:pw@proxy.corp:3128/')
    assert.deepEqual(stable?.ca, { path: '/srv/proxy/corp-ca.pem', mode: 'add', key: 'ca' })
    assert.equal(local?.proxy, false)
    assert.deepEqual(local?.ca, { path: '/etc/ssl/lab.pem', mode: 'replace', key: 'mirrors[1].ca' })
  })

  test('without them a mirror follows the environment and Node\'s roots', () => {
    const [only] = validateConfig({ mirrors: [mirror()] }, options).mirrors
    assert.equal(only?.proxy, undefined)
    assert.equal(only?.ca, undefined)
  })
})

describe('validateConfig store', () => {
  test('the store is the filesystem unless the file says otherwise', () => {
    assert.deepEqual(validateConfig({ mirrors: [mirror()] }, options).store, { type: 'filesystem' })
  })

  test('an s3 store gets path style, us-east-1, no prefix and a 24 h upload age by default', () => {
    const config = validateConfig({ store: { type: 's3', endpoint: 'http://rgw.example:7480', bucket: 'maas-cache' }, mirrors: [mirror()] }, options)
    assert.deepEqual(config.store, {
      type: 's3',
      endpoint: 'http://rgw.example:7480',
      bucket: 'maas-cache',
      prefix: '',
      region: 'us-east-1',
      forcePathStyle: true,
      abandonedUploadAge: 86_400,
    })
  })

  test('store mistakes are refused naming the key', () => {
    const s3 = (fields: Record<string, unknown>) => ({ store: { type: 's3', endpoint: 'http://rgw.example', bucket: 'cache', ...fields }, mirrors: [mirror()] })
    assert.match(rejection({ store: { type: 's3', endpoint: 'http://rgw.example' }, mirrors: [mirror()] }), /store.*bucket/)
    assert.match(rejection(s3({ endpoint: 'rgw.example' })), /^config\.json: store\.endpoint: "rgw\.example" is not an http\(s\) URL$/)
    assert.match(rejection(s3({ endpoint: 'http://key:secret@rgw.example' })), /^config\.json: store\.endpoint: credentials do not go in the URL/)
    assert.match(rejection(s3({ prefix: 'cache' })), /^config\.json: store\.prefix: "cache" must be empty or end with "\/"$/)
    assert.match(rejection(s3({ abandonedUploadAge: 'soon' })), /^config\.json: store\.abandonedUploadAge: /)
    assert.match(rejection({ store: { type: 'tape' }, mirrors: [mirror()] }), /^config\.json: store\.type: /)
    assert.match(rejection({ store: { type: 'filesystem', bucket: 'cache' }, mirrors: [mirror()] }), /^config\.json: store\.bucket: unknown key/)
  })
})

describe('validateConfig fleet', () => {
  const s3 = { type: 's3', endpoint: 'http://rgw.example:7480', bucket: 'maas-cache' }

  test('a replica names where the others reach it and its secret file; the TTLs default to 5 s and 30 s', () => {
    const config = validateConfig({ store: s3, fleet: { advertise: 'http://10.0.0.11:8080', secretFile: 'fleet.secret' }, mirrors: [mirror()] }, options)
    assert.deepEqual(config.fleet, { advertise: 'http://10.0.0.11:8080/', secretFile: '/srv/proxy/fleet.secret', claimTtl: 5, leaseTtl: 30 })
    assert.equal(validateConfig({ mirrors: [mirror()] }, options).fleet, undefined)
  })

  test('fleet mistakes are refused naming the key', () => {
    const fleet = (fields: Record<string, unknown>, store: unknown = s3) => ({ store, fleet: { advertise: 'http://a:8080/', secretFile: 's', ...fields }, mirrors: [mirror()] })
    assert.match(rejection(fleet({}, { type: 'filesystem' })), /^config\.json: fleet: the replicas of a fleet share an S3 store: set store\.type to "s3"$/)
    assert.match(rejection({ fleet: { advertise: 'http://a:8080/', secretFile: 's' }, mirrors: [mirror()] }), /^config\.json: fleet: .*store\.type/)
    assert.match(rejection(fleet({ advertise: 'a:8080' })), /^config\.json: fleet\.advertise: "a:8080" is not an http\(s\) URL$/)
    assert.match(rejection(fleet({ advertise: 'http://u:p@a:8080/' })), /^config\.json: fleet\.advertise: .*without credentials/)
    assert.match(rejection(fleet({ claimTtl: '1s' })), /^config\.json: fleet\.claimTtl: "1s" is shorter than 2s$/)
    assert.match(rejection(fleet({ leaseTtl: 'often' })), /^config\.json: fleet\.leaseTtl: /)
    assert.match(rejection({ store: s3, fleet: { advertise: 'http://a/' }, mirrors: [mirror()] }), /fleet.*secretFile/)
    assert.match(rejection(fleet({ peers: [] })), /^config\.json: fleet\.peers: unknown key/)
  })
})
