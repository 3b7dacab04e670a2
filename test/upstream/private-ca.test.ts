/**
 * A private CA (issue 14 item 2): an https upstream whose certificate a CA
 * made by the test signed is trusted through `ca` (added to Node's roots, or
 * replacing them) and refused without it; each TLS failure (unknown CA, name
 * mismatch, expired) is named in plain words, with the upstream, on /status
 * and in the log. A `ca` file that is not PEM is a one-line config error.
 */

import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { ConfigError, loadConfig } from '../../src/config/load-config.js'
import type { MirrorConfig } from '../../src/config/types.js'
import { createLogger } from '../../src/log/logger.js'
import { rawRequest } from '../support/http.js'
import { DEFAULT_SELECTIONS, MIRROR_PATH, selections, startHarness, type Harness } from '../support/proxy-harness.js'
import { createTestCa, type TestCa } from '../support/test-ca.js'
import { buildUpstreamTree, type UpstreamTree } from '../support/upstream-tree.js'
import { startUpstreamServer, type UpstreamServer } from '../support/upstream-server.js'

describe('an https upstream signed by a private CA', () => {
  let dir: string
  let ca: TestCa
  let tree: UpstreamTree
  let mismatched: UpstreamServer
  let expired: UpstreamServer
  let h: Harness
  const lines: string[] = []

  const tlsOf = async (pair: { cert: string; key: string }) => ({ cert: await readFile(pair.cert), key: await readFile(pair.key) })

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sstream-proxy-private-ca-'))
    ca = await createTestCa(dir)
    tree = await buildUpstreamTree()
    mismatched = await startUpstreamServer(tree, { tls: await tlsOf(await ca.issue('elsewhere', { altNames: ['DNS:mirror.other.example'] })) })
    expired = await startUpstreamServer(tree, { tls: await tlsOf(await ca.issue('expired', { expired: true })) })
    const dataDir = join(dir, 'data')
    const keyring = await tree.writeKeyring(dir)
    const trusted = { path: ca.certPath, mode: 'add', key: 'ca' } as const
    const mirror = (name: string, upstream: string, fields: Partial<MirrorConfig> = {}): MirrorConfig => ({
      name,
      path: `/${name}/`,
      upstreams: [upstream],
      upstreamCooldown: 300,
      keyring,
      keyringIsDefault: false,
      metadata: 'filtered',
      publish: 'selected',
      missFailure: 'reset',
      missWait: 1,
      selections: selections(DEFAULT_SELECTIONS),
      ...fields,
    })
    const good = await ca.issue('upstream')
    h = await startHarness({
      dataDir,
      tree: { key: tree.key },
      upstream: { tls: await tlsOf(good) },
      log: createLogger({ json: true, write: (line) => lines.push(line) }),
      mirror: { ca: trusted },
    })
    // Added by a reload, once the harness's upstream has a port (a reload also puts a new ca in force):
    // the same upstream without the CA, and with only the CA (replacing Node's roots).
    await h.proxy.reload({
      ...h.config,
      mirrors: [
        ...h.config.mirrors,
        mirror('untrusted', h.upstream.url),
        mirror('replaced', h.upstream.url, { ca: { ...trusted, mode: 'replace' } }),
        mirror('mismatched', mismatched.url, { ca: trusted }),
        mirror('expired', expired.url, { ca: trusted }),
      ],
    })
    await Promise.all(h.proxy.core.mirrors.map((each) => each.publication()))
  })
  after(async () => {
    await h.close()
    await mismatched.close()
    await expired.close()
    await rm(dir, { recursive: true, force: true })
  })

  async function metadataError(name: string): Promise<string | null> {
    const status = (await (await fetch(`${h.proxy.url}/status`)).json()) as { mirrors: Array<{ name: string; metadataError: string | null }> }
    return status.mirrors.find((each) => each.name === name)!.metadataError
  }

  test('trusted through ca: metadata and a miss are served', async () => {
    assert.match(h.upstream.url, /^https:\/\/127\.0\.0\.1:/)
    assert.equal(await metadataError('stable'), null)
    const item = tree.items.find((entry) => entry.path.startsWith('noble/amd64/20250201/') && entry.item === 'boot-kernel')!
    const file = await rawRequest(h.proxy.url, MIRROR_PATH + item.path)
    assert.equal(file.status, 200)
    assert.equal(file.body.length, item.size)
  })

  test('caMode "replace" trusts the file alone, which is enough for this upstream', async () => {
    assert.equal(await metadataError('replaced'), null)
  })

  test('without ca: "unknown CA" on /status and in the log, naming the upstream', async () => {
    const error = await metadataError('untrusted')
    assert.ok(error?.startsWith(`${h.upstream.url}streams/v1/index.sjson: TLS: unknown CA (UNABLE_TO_VERIFY_LEAF_SIGNATURE`), String(error))
    assert.match(String(error), /the "ca" key or NODE_EXTRA_CA_CERTS/)
    assert.ok(lines.some((line) => line.includes('"mirror":"untrusted"') && line.includes('TLS: unknown CA')))
  })

  test('a certificate for another name: "certificate name mismatch"', async () => {
    const error = await metadataError('mismatched')
    assert.ok(error?.startsWith(`${mismatched.url}streams/v1/index.sjson: TLS: certificate name mismatch (ERR_TLS_CERT_ALTNAME_INVALID`), String(error))
    assert.ok(lines.some((line) => line.includes('"mirror":"mismatched"') && line.includes('certificate name mismatch')))
  })

  test('an expired certificate: "certificate expired"', async () => {
    const error = await metadataError('expired')
    assert.ok(error?.startsWith(`${expired.url}streams/v1/index.sjson: TLS: certificate expired (CERT_HAS_EXPIRED`), String(error))
    assert.ok(lines.some((line) => line.includes('"mirror":"expired"') && line.includes('certificate expired')))
  })
})

describe('a ca file that cannot be used', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sstream-proxy-ca-file-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  async function rejection(config: Record<string, unknown>): Promise<string> {
    const path = join(dir, 'config.json')
    await writeFile(path, JSON.stringify({ mirrors: [{ name: 'stable', path: '/stable/', upstream: 'https://images.example/stable/' }], ...config }))
    try {
      await loadConfig({ configPath: path, cwd: dir })
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error))
      assert.doesNotMatch(error.message, /\n/)
      return error.message
    }
    assert.fail('accepted')
  }

  test('a file that is not PEM is a one-line error naming the key', async () => {
    await writeFile(join(dir, 'corp.pem'), 'just some text\n')
    assert.equal(await rejection({ ca: 'corp.pem' }), `config.json: ca: ${join(dir, 'corp.pem')} is not a PEM file of certificates (no "-----BEGIN CERTIFICATE-----" block)`)
  })

  test('a missing file names the mirror key it was given by', async () => {
    const message = await rejection({ mirrors: [{ name: 'stable', path: '/stable/', upstream: 'https://images.example/stable/', ca: 'missing.pem' }] })
    assert.equal(message, `config.json: mirrors[0].ca: cannot read ${join(dir, 'missing.pem')}: ENOENT`)
  })

  test('a PEM block that is not a certificate is named too', async () => {
    await writeFile(join(dir, 'broken.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')
    assert.match(await rejection({ ca: 'broken.pem' }), /^config\.json: ca: .*broken\.pem: certificate 1 cannot be read: /)
  })
})
