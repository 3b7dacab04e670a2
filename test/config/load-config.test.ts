import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, loadConfig } from '../../src/config/load-config.js'
import { STOCK_KEYRING } from '../../src/config/defaults.js'

let root: string

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'sstream-load-config-'))
})
after(async () => {
  await rm(root, { recursive: true, force: true })
})

/** A fresh directory under the test's temporary root. */
async function directory(name: string): Promise<string> {
  const path = join(root, name)
  await mkdir(path, { recursive: true })
  return path
}

/** Writes a minimal valid configuration whose one mirror is called `name`. */
async function writeConfig(path: string, name: string, extra: Record<string, unknown> = {}): Promise<void> {
  const config = { mirrors: [{ name, path: '/stable/', upstream: 'https://images.example/stable/' }], ...extra }
  await writeFile(path, JSON.stringify(config, null, 2))
}

async function rejection(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    assert.ok(error instanceof ConfigError, `threw ${String(error)}`)
    assert.doesNotMatch(error.message, /\n/)
    return error.message
  }
  assert.fail('the configuration was accepted')
}

describe('loadConfig source order', () => {
  test('--config wins over $SSTREAM_PROXY_CONFIG, which wins over ./config.json, which wins over the built-in default', async () => {
    const cwd = await directory('order')
    await writeConfig(join(cwd, 'config.json'), 'local')
    await writeConfig(join(cwd, 'from-env.json'), 'env')
    await writeConfig(join(cwd, 'from-flag.json'), 'flag')
    const env = { SSTREAM_PROXY_CONFIG: 'from-env.json' }

    const fromFlag = await loadConfig({ configPath: 'from-flag.json', env, cwd })
    assert.equal(fromFlag.mirrors[0]?.name, 'flag')
    assert.equal(fromFlag.source, 'from-flag.json')

    const fromEnv = await loadConfig({ env, cwd })
    assert.equal(fromEnv.mirrors[0]?.name, 'env')
    assert.equal(fromEnv.source, 'from-env.json')

    const local = await loadConfig({ env: {}, cwd })
    assert.equal(local.mirrors[0]?.name, 'local')
    assert.equal(local.source, 'config.json')

    await rm(join(cwd, 'config.json'))
    const builtIn = await loadConfig({ env: {}, cwd })
    assert.equal(builtIn.source, 'built-in default')
  })

  test('an empty $SSTREAM_PROXY_CONFIG counts as unset', async () => {
    const cwd = await directory('empty-env')
    await writeConfig(join(cwd, 'config.json'), 'local')
    assert.equal((await loadConfig({ env: { SSTREAM_PROXY_CONFIG: '' }, cwd })).mirrors[0]?.name, 'local')
  })
})

describe('loadConfig built-in default', () => {
  test('is the documented default, with paths under the working directory', async () => {
    const cwd = await directory('built-in')
    const config = await loadConfig({ env: {}, cwd })
    assert.equal(config.source, 'built-in default')
    assert.deepEqual(config.listen, { host: '0.0.0.0', port: 8080 })
    assert.equal(config.dataDir, join(cwd, 'data'))
    assert.equal(config.signingKey, join(cwd, 'data', 'signing-key.asc'))
    assert.equal(config.metadataTtl, 600)
    assert.deepEqual(config.prefetch, { onStart: true, interval: 3600, concurrency: 4, windows: [] })
    assert.equal(config.mirrors.length, 1)
    const [stable] = config.mirrors
    assert.ok(stable)
    assert.equal(stable.name, 'stable')
    assert.equal(stable.path, '/maas/images/ephemeral-v3/stable/')
    assert.deepEqual(stable.upstreams, ['https://images.maas.io/ephemeral-v3/stable/'])
    assert.equal(stable.keyring, STOCK_KEYRING)
    assert.equal(stable.keyringIsDefault, true, 'the stock keyring may be missing')
    assert.equal(stable.metadata, 'filtered')
    assert.equal(stable.publish, 'selected')
    assert.deepEqual(
      stable.selections.map((selection) => ({ filters: selection.filters.map((filter) => filter.source), max: selection.max })),
      [
        { filters: ['arch=amd64', 'release~(jammy|noble)'], max: 1 },
        { filters: ['os~(grub*|pxelinux)'], max: 1 },
      ],
    )
  })
})

describe('loadConfig paths', () => {
  test('relative paths resolve against the configuration file, not the working directory', async () => {
    const cwd = await directory('paths/cwd')
    const etc = await directory('paths/etc')
    await writeFile(join(etc, 'upstream.gpg'), 'not checked for content here')
    await writeConfig(join(etc, 'proxy.json'), 'stable', { dataDir: 'cache', signingKey: '../keys/proxy.asc' })
    const raw = { dataDir: 'cache', mirrors: [{ name: 'stable', path: '/stable/', upstream: 'https://images.example/stable/', keyring: 'upstream.gpg' }] }
    await writeFile(join(etc, 'with-keyring.json'), JSON.stringify(raw))

    const config = await loadConfig({ configPath: '../etc/proxy.json', env: {}, cwd })
    assert.equal(config.dataDir, join(etc, 'cache'))
    assert.equal(config.signingKey, join(root, 'paths', 'keys', 'proxy.asc'))
    assert.equal(config.source, join(etc, 'proxy.json'), 'a file outside the working directory is named absolutely')

    const withKeyring = await loadConfig({ configPath: join(etc, 'with-keyring.json'), env: {}, cwd })
    assert.equal(withKeyring.mirrors[0]?.keyring, join(etc, 'upstream.gpg'))
    assert.equal(withKeyring.mirrors[0]?.keyringIsDefault, false)
    assert.equal(withKeyring.signingKey, join(etc, 'cache', 'signing-key.asc'))
  })

  test('$SSTREAM_PROXY_CONFIG resolves against the working directory', async () => {
    const cwd = await directory('env-relative')
    await writeConfig(join(cwd, 'sub.json'), 'sub')
    assert.equal((await loadConfig({ env: { SSTREAM_PROXY_CONFIG: './sub.json' }, cwd })).mirrors[0]?.name, 'sub')
  })
})

describe('loadConfig errors', () => {
  test('a missing --config file names the path and the flag', async () => {
    const cwd = await directory('missing')
    assert.equal(
      await rejection(loadConfig({ configPath: 'nope.json', env: {}, cwd })),
      'nope.json: cannot read the configuration file (named by --config): no such file',
    )
  })

  test('a missing $SSTREAM_PROXY_CONFIG file names the variable', async () => {
    const cwd = await directory('missing-env')
    assert.equal(
      await rejection(loadConfig({ env: { SSTREAM_PROXY_CONFIG: '/nonexistent/proxy.json' }, cwd })),
      '/nonexistent/proxy.json: cannot read the configuration file (named by $SSTREAM_PROXY_CONFIG): no such file',
    )
  })

  test('a directory given as the configuration is an error', async () => {
    const cwd = await directory('dir-config')
    await mkdir(join(cwd, 'conf.d'))
    assert.equal(
      await rejection(loadConfig({ configPath: 'conf.d', env: {}, cwd })),
      'conf.d: cannot read the configuration file (named by --config): is a directory',
    )
  })

  test('invalid JSON names the file, line and column', async () => {
    const cwd = await directory('bad-json')
    await writeFile(join(cwd, 'config.json'), '{\n  "dataDir": "./data"\n  "mirrors": []\n}\n')
    assert.match(await rejection(loadConfig({ env: {}, cwd })), /^config\.json: invalid JSON at line 3, column 3: \S/)
  })

  test('trailing garbage and an empty file are invalid JSON too', async () => {
    const cwd = await directory('bad-json-2')
    await writeFile(join(cwd, 'trailing.json'), '{"mirrors": []}\n}')
    assert.match(await rejection(loadConfig({ configPath: 'trailing.json', env: {}, cwd })), /^trailing\.json: invalid JSON at line 2, column 1: /)
    await writeFile(join(cwd, 'empty.json'), '')
    assert.equal(
      await rejection(loadConfig({ configPath: 'empty.json', env: {}, cwd })),
      'empty.json: invalid JSON at line 1, column 1: Unexpected end of JSON input',
    )
  })

  test('a byte-order mark is accepted', async () => {
    const cwd = await directory('bom')
    const text = JSON.stringify({ mirrors: [{ name: 'bom', path: '/stable/', upstream: 'https://images.example/stable/' }] })
    await writeFile(join(cwd, 'config.json'), `\uFEFF${text}`)
    assert.equal((await loadConfig({ env: {}, cwd })).mirrors[0]?.name, 'bom')
  })

  test('a validation error names the file as found and the key', async () => {
    const cwd = await directory('invalid')
    await writeConfig(join(cwd, 'config.json'), 'stable', { listen: { port: 99999 } })
    assert.equal(await rejection(loadConfig({ env: {}, cwd })), 'config.json: listen.port: expected an integer from 0 to 65535, got 99999')
  })

  test('an explicit keyring that does not exist is an error naming it', async () => {
    const cwd = await directory('no-keyring')
    const raw = { mirrors: [{ name: 'a', path: '/a/', upstream: 'https://images.example/a/', keyring: 'missing.gpg' }] }
    await writeFile(join(cwd, 'config.json'), JSON.stringify(raw))
    assert.equal(
      await rejection(loadConfig({ env: {}, cwd })),
      `config.json: mirrors[0].keyring: cannot read ${join(cwd, 'missing.gpg')}: no such file ` +
        '(set it to an OpenPGP public keyring, or leave it out to use the stock one from the ubuntu-cloudimage-keyring package)',
    )
  })

  test('an explicit keyring that is a directory is an error naming it', async () => {
    const cwd = await directory('keyring-dir')
    const raw = { mirrors: [{ name: 'a', path: '/a/', upstream: 'https://images.example/a/', keyring: '.' }] }
    await writeFile(join(cwd, 'config.json'), JSON.stringify(raw))
    assert.equal(await rejection(loadConfig({ env: {}, cwd })), `config.json: mirrors[0].keyring: ${cwd} is not a file`)
  })

  test('the stock keyring, left out or named, is not checked at load time', async () => {
    const cwd = await directory('stock-keyring')
    const raw = {
      mirrors: [
        { name: 'a', path: '/a/', upstream: 'https://images.example/a/' },
        { name: 'b', path: '/b/', upstream: 'https://images.example/b/', keyring: STOCK_KEYRING },
      ],
    }
    await writeFile(join(cwd, 'config.json'), JSON.stringify(raw))
    const config = await loadConfig({ env: {}, cwd })
    assert.deepEqual(config.mirrors.map((mirror) => mirror.keyringIsDefault), [true, true])
  })
})

describe('loadConfig fleet secret', () => {
  const fleetConfig = { store: { type: 's3', endpoint: 'http://rgw.example:7480', bucket: 'cache' }, fleet: { advertise: 'http://10.0.0.11:8080/', secretFile: 'fleet.secret' } }

  test('a missing or short secret file stops the load naming fleet.secretFile', async () => {
    const cwd = await directory('fleet-secret')
    await writeConfig(join(cwd, 'config.json'), 'stable', fleetConfig)
    assert.equal(await rejection(loadConfig({ env: {}, cwd })), `config.json: fleet.secretFile: cannot read ${join(cwd, 'fleet.secret')}: ENOENT`)
    await writeFile(join(cwd, 'fleet.secret'), 'short\n')
    assert.match(await rejection(loadConfig({ env: {}, cwd })), /^config\.json: fleet\.secretFile: .*fleet\.secret holds 5 characters; the secret needs at least 16/)
    await writeFile(join(cwd, 'fleet.secret'), `${'0123456789abcdef'.repeat(4)}\n`)
    assert.equal((await loadConfig({ env: {}, cwd })).fleet?.secretFile, join(cwd, 'fleet.secret'))
  })
})
