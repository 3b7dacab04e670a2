/**
 * `listen.tls`: the proxy serves https with a certificate from a CA made by the
 * test; clients that trust the CA (node, curl, and a MAAS 3.8 client given an
 * https boot source) fetch metadata and files. A
 * certificate replaced on disk and reloaded is what the next connection gets,
 * while a download that started before goes on to its last byte; a broken
 * file is refused and the certificate in use stays.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { get } from 'node:https'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pauseAfterFirstChunk } from '../support/http.js'
import { MIRROR_PATH, selectedFiles, startHarness, type Harness } from '../support/proxy-harness.js'
import { createMaasClient } from '../support/maas-client.js'
import { createTestCa, type TestCa } from '../support/test-ca.js'
import { ConfigError, loadConfig } from '../../src/config/load-config.js'

const run = promisify(execFile)
const INDEX = `${MIRROR_PATH}streams/v1/index.sjson`
// Larger than the socket buffers of both ends: a paused download cannot have arrived whole.
const BIG = 16 << 20

let dir: string
let ca: TestCa
let caPem: Buffer
let h: Harness
let served: { cert: string; key: string }

/** The fingerprint of the certificate a fresh connection is given. */
async function certificateOfNextConnection(): Promise<string> {
  const { port } = h.proxy.server.address() as AddressInfo
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: caPem }, () => {
      resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '')
      socket.end()
    })
    socket.on('error', reject)
  })
}

const fingerprintOf = async (path: string) => new X509Certificate(await readFile(path)).fingerprint256

function open(path: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => get(`${h.proxy.url}${path}`, { ca: caPem, agent: false }, resolve).on('error', reject))
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sstream-tls-'))
  ca = await createTestCa(dir)
  caPem = await readFile(ca.certPath)
  const first = await ca.issue('first')
  // The files the configuration names; tests replace their contents as an ACME client would.
  served = { cert: join(dir, 'served.crt'), key: join(dir, 'served.key') }
  await copyFile(first.cert, served.cert)
  await copyFile(first.key, served.key)
  h = await startHarness({
    tree: { releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], sizes: { squashfs: BIG } },
    config: { listen: { host: '127.0.0.1', port: 0, tls: served } },
  })
})
after(async () => {
  await h?.close()
  await rm(dir, { recursive: true, force: true })
})

describe('https listener', () => {
  test('serves https; node and curl trusting the test CA fetch signed metadata', async () => {
    assert.match(h.proxy.url, /^https:\/\/127\.0\.0\.1:\d+$/)
    const response = await open(INDEX)
    assert.equal(response.statusCode, 200)
    response.resume()
    const { stdout } = await run('curl', ['-sS', '--cacert', ca.certPath, '-o', '/dev/null', '-w', '%{http_code}', `${h.proxy.url}${INDEX}`])
    assert.equal(stdout, '200')
    await assert.rejects(run('curl', ['-sS', '-o', '/dev/null', `${h.proxy.url}${INDEX}`]), 'curl without the CA refuses the server')
    assert.equal(await certificateOfNextConnection(), await fingerprintOf(served.cert))
  })

  test('MAAS syncs from an https boot source trusting the test CA: every document passes gpgv, every file its sha256', async () => {
    const keyringResponse = await open('/keyring.gpg')
    assert.equal(keyringResponse.statusCode, 200)
    const chunks: Buffer[] = []
    for await (const chunk of keyringResponse) chunks.push(chunk as Buffer)
    const keyring = new Uint8Array(Buffer.concat(chunks))
    const maas = (ca?: Buffer) =>
      createMaasClient({ url: `${h.proxy.url}${MIRROR_PATH}`, keyring, ca, heartbeatMs: 5_000, backoffMs: 100, maxBackoffMs: 500, giveUpAfterMs: 60_000 })

    await assert.rejects(maas().fetchMetadata(), /unable to verify the first certificate|unable to get local issuer certificate|self-signed certificate/, 'without the CA the boot source is refused')

    const result = await maas(caPem).sync()
    assert.equal(result.ok, true, result.failure)
    // fetchMetadata ran gpgv on each document it kept: the index and every products file it lists.
    const index = result.metadata.documents.get('streams/v1/index.sjson') ?? ''
    const entries = JSON.parse(index.slice(index.indexOf('{'), index.indexOf('-----BEGIN PGP SIGNATURE-----'))).index as Record<string, { path: string }>
    const listed = Object.values(entries).map((entry) => entry.path)
    assert.ok(listed.length > 0)
    assert.deepEqual([...result.metadata.documents.keys()].sort(), ['streams/v1/index.sjson', ...listed].sort())
    const expected = new Set(selectedFiles(h.tree.items, '20250201').filter((item) => item.ftype !== 'manifest').map((item) => item.sha256))
    assert.deepEqual(new Set(result.files.map((file) => file.sha256)), expected)
    for (const file of result.files) assert.equal(file.outcome, 'verified', `${file.path}: ${file.errors.join('; ')}`)
  })

  test('a certificate replaced on disk is served after a reload, while a download begun before completes', async () => {
    const file = h.tree.items.find((item) => item.ftype === 'squashfs' && item.path.includes('/20250201/'))
    assert.ok(file)
    const download = await open(MIRROR_PATH + file.path)
    assert.equal(download.statusCode, 200)
    const paused = await pauseAfterFirstChunk(download)

    const second = await ca.issue('second')
    await copyFile(second.cert, served.cert)
    await copyFile(second.key, served.key)
    await h.proxy.reload(h.config)
    assert.equal(await certificateOfNextConnection(), await fingerprintOf(second.cert))

    assert.equal(download.complete, false, 'the download was still in progress during the reload')
    const whole = await paused.finish()
    assert.equal(whole.bytes, file.size)
    assert.equal(whole.sha256, file.sha256)
  })

  test('a broken certificate file is refused with the key named, and the one in use stays', async () => {
    const before = await certificateOfNextConnection()
    await writeFile(served.cert, 'not a certificate\n')
    await assert.rejects(h.proxy.reload(h.config), (error) => {
      assert.ok(error instanceof ConfigError)
      assert.equal(error.key, 'listen.tls.cert')
      assert.match(error.message, /listen\.tls\.cert: .*served\.crt is not a PEM file/)
      return true
    })
    assert.equal(await certificateOfNextConnection(), before)
    const response = await open(INDEX)
    assert.equal(response.statusCode, 200)
    response.resume()
  })
})

describe('listen.tls files at load time', () => {
  async function loadWith(tls: { cert: string; key: string }) {
    const path = join(dir, 'tls-config.json')
    await writeFile(path, JSON.stringify({ listen: { tls }, mirrors: [{ name: 's', path: '/s/', upstream: 'http://127.0.0.1:9/' }] }))
    return loadConfig({ configPath: path, env: {}, cwd: dir })
  }
  const rejection = async (tls: { cert: string; key: string }) => {
    try {
      await loadWith(tls)
    } catch (error) {
      assert.ok(error instanceof ConfigError)
      assert.doesNotMatch(error.message, /\n/)
      return error.message
    }
    assert.fail('accepted')
  }

  test('a good pair loads, paths resolved against the file', async () => {
    const pair = await ca.issue('load')
    const config = await loadWith({ cert: 'load.crt', key: 'load.key' })
    assert.deepEqual(config.listen.tls, pair)
  })

  test('a missing, non-PEM or mismatched file is one line naming the key', async () => {
    const pair = await ca.issue('pair')
    const other = await ca.issue('other')
    await writeFile(join(dir, 'garbage.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')
    assert.match(await rejection({ cert: 'missing.crt', key: pair.key }), /: listen\.tls\.cert: cannot read .*missing\.crt: ENOENT$/)
    assert.match(await rejection({ cert: pair.cert, key: ca.certPath }), /: listen\.tls\.key: .*ca\.crt holds no readable private key/)
    assert.match(await rejection({ cert: join(dir, 'garbage.pem'), key: pair.key }), /: listen\.tls\.cert: .*garbage\.pem holds no readable certificate/)
    assert.match(await rejection({ cert: pair.cert, key: other.key }), /: listen\.tls\.key: .*other\.key is not the key of the certificate in .*pair\.crt$/)
    assert.match(await rejection({ cert: pair.cert, key: join(dir, 'server.ext') }), /: listen\.tls\.key: .*server\.ext is not a PEM file/)
  })
})
