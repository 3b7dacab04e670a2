import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import { ConfigError, loadConfig } from '../../src/config/load-config.js'

const examplePath = fileURLToPath(new URL('../../config.example.json', import.meta.url))
const schemaPath = fileURLToPath(new URL('../../config.schema.json', import.meta.url))

let validateSchema: ValidateFunction
let example: Record<string, unknown>
let dir: string

before(async () => {
  // strict: unknown keywords or types that contradict themselves are schema bugs, not annotations.
  const ajv = new Ajv2020({ strict: true, allErrors: true })
  validateSchema = ajv.compile(JSON.parse(await readFile(schemaPath, 'utf8')))
  example = JSON.parse(await readFile(examplePath, 'utf8'))
  dir = await mkdtemp(join(tmpdir(), 'sstream-config-schema-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** The example with one change made by `edit` to a deep copy. */
function variant(edit: (config: any) => void): Record<string, unknown> {
  const copy = structuredClone(example)
  edit(copy)
  return copy
}

async function load(config: unknown, name: string) {
  const path = join(dir, `${name.replace(/\W+/g, '-')}.json`)
  await writeFile(path, JSON.stringify(config))
  return loadConfig({ configPath: path, env: {}, cwd: dir })
}

describe('config.example.json', () => {
  test('points editors at the schema', () => {
    assert.equal(example.$schema, './config.schema.json')
  })

  test('validates against config.schema.json', () => {
    assert.equal(validateSchema(example), true, JSON.stringify(validateSchema.errors))
  })

  test('loads, with the values product.md documents', async () => {
    const config = await loadConfig({ configPath: examplePath, env: {}, cwd: dir })
    const root = fileURLToPath(new URL('../../', import.meta.url))
    assert.deepEqual(config.listen, { host: '0.0.0.0', port: 8080, allow: ['0.0.0.0/0', '::/0'] })
    assert.equal(config.dataDir, join(root, 'data'))
    assert.equal(config.signingKey, join(root, 'data', 'signing-key.asc'))
    assert.equal(config.metadataTtl, 600)
    assert.deepEqual(
      { ...config.prefetch, windows: config.prefetch.windows?.map((window) => window.text) },
      { onStart: true, interval: 3600, concurrency: 4, rate: 50_000_000, windows: ['00:00-24:00'] },
    )
    assert.deepEqual(config.limits, { pipelinedRequests: 32, metadataMaxBytes: 64 * 1024 * 1024, metadataTimeout: 120, readBufferMemory: 64 * 1024 * 1024, upstreamRate: 125_000_000 })
    const [stable] = config.mirrors
    assert.ok(stable)
    assert.equal(stable.name, 'stable')
    assert.equal(stable.path, '/maas/images/ephemeral-v3/stable/')
    assert.deepEqual(stable.upstreams, ['https://images.maas.io/ephemeral-v3/stable/'])
    assert.equal(stable.keyring, '/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg')
    assert.equal(stable.metadata, 'filtered')
    assert.equal(stable.publish, 'selected')
    assert.deepEqual(
      stable.selections.map((selection) => [selection.filters.map((filter) => filter.source), selection.max]),
      [
        [['arch=amd64', 'release~(jammy|noble)'], 1],
        [['os~(grub*|pxelinux)'], 1],
      ],
    )
  })

  test('shows every key the loader knows, but the site-specific proxy and ca', () => {
    // No value of `proxy` or `ca` suits every site: a proxy that is not there, or a CA file
    // that is not there, would break the example (the README shows them instead).
    const mirror = (example.mirrors as Record<string, unknown>[])[0] ?? {}
    assert.deepEqual(Object.keys(example), ['$schema', 'listen', 'dataDir', 'signingKey', 'metadataTtl', 'prefetch', 'limits', 'caMode', 'mirrors'])
    assert.deepEqual(Object.keys(mirror), ['name', 'path', 'upstream', 'upstreamCooldown', 'keyring', 'metadata', 'publish', 'missFailure', 'missWait', 'selections'])
  })
})

describe('the loader and the schema agree', () => {
  const accepted: [string, (config: any) => void][] = [
    ['only mirrors', (config) => {
      for (const key of ['listen', 'dataDir', 'signingKey', 'metadataTtl', 'prefetch', 'limits']) delete config[key]
      for (const key of ['keyring', 'metadata', 'publish', 'selections']) delete config.mirrors[0][key]
    }],
    ['durations as numbers of seconds', (config) => {
      config.metadataTtl = 30
      config.prefetch.interval = 7200
    }],
    ['an upstream without a trailing slash', (config) => (config.mirrors[0].upstream = 'http://images.example:8000/stable')],
    ['port 0', (config) => (config.listen.port = 0)],
    ['a metadata cap in bytes and a timeout in seconds', (config) => (config.limits = { metadataMaxBytes: 1048576, metadataTimeout: 90 })],
    ['an upstream with credentials', (config) => (config.mirrors[0].upstream = 'https://mirror:S3cret@images.example/stable/')],
    ['a directory upstream as a path', (config) => (config.mirrors[0].upstream = '/media/images/maas/')],
    ['a directory upstream as a file URL', (config) => (config.mirrors[0].upstream = 'file:///media/images/maas/')],
    ['a selection without max', (config) => delete config.mirrors[0].selections[0].max],
    ['a list of upstreams and a cool-down', (config) => Object.assign(config.mirrors[0], { upstream: ['http://local.example/stable/', 'https://images.example/stable/'], upstreamCooldown: '30s' })],
    ['a proxy with credentials, and none for one mirror', (config) => {
      config.proxy = 'http://user:p%40ss@proxy.corp.example:3128/'
      config.mirrors[0].proxy = false
    }],
    ['allowlists of both families', (config) => (config.listen = { allow: ['10.0.0.0/8', 'fd00::/8', '::ffff:10.0.0.1'], allowStatus: ['127.0.0.1'] })],
    ['rates in each unit family and as a number', (config) => {
      config.limits.upstreamRate = '2.5MiB/s'
      config.prefetch.rate = 1_000_000
    }],
    ['a rate in bits', (config) => (config.limits.upstreamRate = '800Mbit/s')],
    ['windows wrapping midnight and ending at 24:00', (config) => (config.prefetch.windows = ['22:00-06:00', '12:00-24:00'])],
    ['no windows', (config) => (config.prefetch.windows = [])],
  ]
  for (const [what, edit] of accepted) {
    test(`both accept ${what}`, async () => {
      const config = variant(edit)
      assert.equal(validateSchema(config), true, JSON.stringify(validateSchema.errors))
      await load(config, what)
    })
  }

  const rejected: [string, (config: any) => void, string][] = [
    ['an unknown top-level key', (config) => (config.listenPort = 8080), 'listenPort'],
    ['an unknown mirror key', (config) => (config.mirrors[0].filters = ['arch=amd64']), 'mirrors[0].filters'],
    ['an unknown selection key', (config) => (config.mirrors[0].selections[0].newest = 1), 'mirrors[0].selections[0].newest'],
    ['a bad duration', (config) => (config.metadataTtl = '10x'), 'metadataTtl'],
    ['a zero duration', (config) => (config.prefetch.interval = '0s'), 'prefetch.interval'],
    ['a bad filter operator', (config) => (config.mirrors[0].selections[1].filters[0] = 'arch>1'), 'mirrors[0].selections[1].filters[0]'],
    ['a filter without a key', (config) => (config.mirrors[0].selections[0].filters[0] = '~amd64'), 'mirrors[0].selections[0].filters[0]'],
    ['a path without a trailing slash', (config) => (config.mirrors[0].path = '/maas/images'), 'mirrors[0].path'],
    ['a path with ..', (config) => (config.mirrors[0].path = '/maas/../images/'), 'mirrors[0].path'],
    ['a path with //', (config) => (config.mirrors[0].path = '/maas//images/'), 'mirrors[0].path'],
    ['a path with %', (config) => (config.mirrors[0].path = '/maas%20images/'), 'mirrors[0].path'],
    ['the root path', (config) => (config.mirrors[0].path = '/'), 'mirrors[0].path'],
    ['a path under /status', (config) => (config.mirrors[0].path = '/status/'), 'mirrors[0].path'],
    ['a bad mirror name', (config) => (config.mirrors[0].name = 'my mirror'), 'mirrors[0].name'],
    ['a relative directory upstream', (config) => (config.mirrors[0].upstream = 'media/images/maas/'), 'mirrors[0].upstream'],
    ['an ftp upstream', (config) => (config.mirrors[0].upstream = 'ftp://images.example/stable/'), 'mirrors[0].upstream'],
    ['an empty list of upstreams', (config) => (config.mirrors[0].upstream = []), 'mirrors[0].upstream'],
    ['an ftp upstream in a list', (config) => (config.mirrors[0].upstream = ['https://images.example/stable/', 'ftp://images.example/stable/']), 'mirrors[0].upstream[1]'],
    ['a port out of range', (config) => (config.listen.port = 70000), 'listen.port'],
    ['a concurrency of 0', (config) => (config.prefetch.concurrency = 0), 'prefetch.concurrency'],
    ['a pipeline limit of 0', (config) => (config.limits.pipelinedRequests = 0), 'limits.pipelinedRequests'],
    ['an unknown limits key', (config) => (config.limits.pipelineDepth = 4), 'limits.pipelineDepth'],
    ['a max of 0', (config) => (config.mirrors[0].selections[0].max = 0), 'mirrors[0].selections[0].max'],
    ['an unknown metadata mode', (config) => (config.mirrors[0].metadata = 'signed'), 'mirrors[0].metadata'],
    ['an unknown publish mode', (config) => (config.mirrors[0].publish = 'newest'), 'mirrors[0].publish'],
    ['an unknown missFailure', (config) => (config.mirrors[0].missFailure = 'close'), 'mirrors[0].missFailure'],
    ['a missWait of 0', (config) => (config.mirrors[0].missWait = 0), 'mirrors[0].missWait'],
    ['no mirrors', (config) => (config.mirrors = []), 'mirrors'],
    ['an allow entry that is a host name', (config) => (config.listen.allow = ['maas.example']), 'listen.allow[0]'],
    ['tls without a key', (config) => (config.listen.tls = { cert: 'proxy.crt' }), 'listen.tls.key'],
    ['a metadata cap without a unit the loader knows', (config) => (config.limits.metadataMaxBytes = '64M'), 'limits.metadataMaxBytes'],
    ['a metadata cap below 64 KiB', (config) => (config.limits.metadataMaxBytes = 4096), 'limits.metadataMaxBytes'],
    ['a socks proxy', (config) => (config.proxy = 'socks5://proxy.corp.example:1080/'), 'proxy'],
    ['a proxy of true', (config) => (config.mirrors[0].proxy = true), 'mirrors[0].proxy'],
    ['an unknown caMode', (config) => (config.mirrors[0].caMode = 'append'), 'mirrors[0].caMode'],
    ['a rate that is a word', (config) => (config.limits.upstreamRate = 'fast'), 'limits.upstreamRate'],
    ['a rate of 0', (config) => (config.limits.upstreamRate = 0), 'limits.upstreamRate'],
    ['a prefetch rate without a unit', (config) => (config.prefetch.rate = '20M'), 'prefetch.rate'],
    ['an unknown limits key', (config) => (config.limits.downstreamRate = '1MB/s'), 'limits.downstreamRate'],
    ['a window starting at 25:00', (config) => (config.prefetch.windows = ['25:00-06:00']), 'prefetch.windows[0]'],
    ['a window without minutes', (config) => (config.prefetch.windows = ['22-06']), 'prefetch.windows[0]'],
  ]
  for (const [what, edit, key] of rejected) {
    test(`both reject ${what}`, async () => {
      const config = variant(edit)
      assert.equal(validateSchema(config), false, 'the schema accepted it')
      await assert.rejects(load(config, what), (error) => {
        assert.ok(error instanceof ConfigError)
        assert.equal(error.key, key)
        return true
      })
    })
  }
})
