/**
 * Reload (SIGHUP's work, called in process): the configuration file is read
 * again and put in force on the running server. A selection change shows in
 * the metadata and the files served, a download begun before it runs to its
 * last byte, /status says when the configuration was loaded; a file with a
 * mistake is refused with its one-line message in the log and the running
 * configuration stays; keys that need a restart are named and kept.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { get, type IncomingMessage } from 'node:http'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { pauseAfterFirstChunk, rawRequest } from '../support/http.js'
import { loadConfig } from '../../src/config/load-config.js'
import { reloadConfig } from '../../src/runtime.js'
import { createLogger, type LogFields } from '../../src/log/logger.js'

// Larger than the socket buffers of both ends: a paused download cannot have arrived whole.
const BIG = 16 << 20
const AMD64_ONLY = [{ filters: ['arch=amd64'], max: 1 }]

let h: Harness
let configPath: string
const lines: Array<{ message: string; level: string } & LogFields> = []
const log = createLogger({ json: true, write: (line) => void lines.push(JSON.parse(line)) })

/** The harness's configuration as a file, with `edit` applied. */
async function writeConfig(edit: (file: Record<string, any>) => void = () => undefined): Promise<void> {
  const file: Record<string, any> = {
    listen: { host: '127.0.0.1', port: 0 },
    dataDir: h.dataDir,
    metadataTtl: '10m',
    prefetch: { onStart: false, interval: '1h', concurrency: 4 },
    mirrors: [{ name: 'stable', path: MIRROR_PATH, upstream: h.upstream.url, keyring: h.keyringPath, selections: AMD64_ONLY }],
  }
  edit(file)
  await writeFile(configPath, JSON.stringify(file, null, 2))
}

const reload = () => reloadConfig(h.proxy, () => loadConfig({ configPath, env: {}, cwd: h.dataDir }))

const squashfs = (arch: string) => {
  const found = h.tree.items.find((item) => item.ftype === 'squashfs' && item.path.startsWith(`noble/${arch}/20250201/`))
  assert.ok(found)
  return found
}

async function status(): Promise<{ configLoaded: string; mirrors: Array<{ selection: { products: number } }> }> {
  return JSON.parse((await rawRequest(h.proxy.url, '/status')).body.toString())
}

before(async () => {
  h = await startHarness({
    tree: { releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64', 'arm64'], sizes: { squashfs: BIG } },
    mirror: { selections: AMD64_ONLY },
    log,
  })
  configPath = join(h.dataDir, 'config.json')
})
after(() => h.close())

describe('reload', () => {
  test('a selection change is served at once, while a download begun before completes', async () => {
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + squashfs('arm64').path)).status, 404)
    const loadedAtStart = (await status()).configLoaded
    const file = squashfs('amd64')
    const download = await new Promise<IncomingMessage>((resolve, reject) => get(h.proxy.url + MIRROR_PATH + file.path, resolve).on('error', reject))
    const paused = await pauseAfterFirstChunk(download)

    await writeConfig((config) => (config.mirrors[0].selections = [{ filters: ['arch~(amd64|arm64)'], max: 1 }]))
    assert.equal(await reload(), true)

    const arm64 = await rawRequest(h.proxy.url, MIRROR_PATH + squashfs('arm64').path)
    assert.equal(arm64.status, 200)
    assert.equal(createHash('sha256').update(arm64.body).digest('hex'), squashfs('arm64').sha256)
    const index = JSON.parse((await rawRequest(h.proxy.url, `${MIRROR_PATH}streams/v1/index.json`)).body.toString())
    const products = Object.values(index.index as Record<string, { products: string[] }>).flatMap((entry) => entry.products)
    assert.ok(products.some((name) => name.includes('arm64')), `the index lists arm64 products: ${products.join(', ')}`)
    const after = await status()
    assert.ok(Date.parse(after.configLoaded) > Date.parse(loadedAtStart), `${after.configLoaded} after ${loadedAtStart}`)
    assert.ok(lines.some((line) => line.message === 'configuration reloaded'))

    assert.equal(download.complete, false, 'the download was still in progress during the reload')
    const whole = await paused.finish()
    assert.equal(whole.bytes, file.size)
    assert.equal(whole.sha256, file.sha256)
  })

  test('a file with a mistake is refused with its one-line message; the running configuration stays', async () => {
    const loaded = (await status()).configLoaded
    const mirrors = h.proxy.core.mirrors
    await writeConfig((config) => (config.mirrors[0].selections = [{ filters: ['release~(noble'] }]))
    assert.equal(await reload(), false)
    const refused = lines.filter((line) => line.message === 'configuration refused, the running one stays in force')
    assert.equal(refused.length, 1)
    assert.match(String(refused[0]?.error), /^\S*config\.json: mirrors\[0\]\.selections\[0\]\.filters\[0\]: invalid regular expression in "release~\(noble"/)
    assert.doesNotMatch(String(refused[0]?.error), /\n/)
    assert.equal(h.proxy.core.mirrors, mirrors)
    assert.equal((await status()).configLoaded, loaded)
    assert.equal((await rawRequest(h.proxy.url, MIRROR_PATH + squashfs('arm64').path)).status, 200, 'the reloaded selection is still served')
  })

  test('keys that need a restart are named in the log and keep their running values', async () => {
    await writeConfig((config) => {
      config.dataDir = join(h.dataDir, 'elsewhere')
      config.listen.port = 1
    })
    assert.equal(await reload(), true)
    const warning = lines.find((line) => line.message === 'restart needed to change')
    // signingKey defaults to a file in dataDir, so it moves with it.
    assert.equal(warning?.keys, 'listen.port,dataDir,signingKey')
    assert.equal(h.proxy.core.config.dataDir, h.dataDir)
    assert.equal(h.proxy.core.config.listen.port, 0)
    assert.equal((await rawRequest(h.proxy.url, `${MIRROR_PATH}streams/v1/index.json`)).status, 200)
  })
})
