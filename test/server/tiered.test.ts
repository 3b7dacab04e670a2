/**
 * Tiered use: a site proxy whose upstream is another sstream-proxy, verifying
 * the central proxy's re-signed metadata with the central proxy's key.
 */

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import { silentLogger } from '../../src/log/logger.js'
import { startProxy } from '../../src/runtime.js'
import { parseProducts } from '../../src/streams/documents.js'

/** A site proxy whose upstream is the central harness's proxy, verifying with `keyring` (default: the upstream's key). */
function startSite(central: Harness, keyring?: string) {
  const siteDir = join(central.dataDir, 'site')
  const [centralMirror] = central.config.mirrors
  assert.ok(centralMirror)
  return startProxy(
    {
      ...central.config,
      dataDir: siteDir,
      signingKey: join(siteDir, 'signing-key.asc'),
      mirrors: [{ ...centralMirror, upstreams: [`${central.proxy.url}${MIRROR_PATH}`], keyring: keyring ?? centralMirror.keyring }],
      source: 'tiered test',
    },
    { log: silentLogger, version: 'test' },
  )
}

test('a proxy whose upstream is another proxy serves its selection, verified with that proxy key', async () => {
  const central = await startHarness()
  const centralKeyring = join(central.dataDir, 'central-keyring.gpg')
  await writeFile(centralKeyring, central.proxy.core.signingKey.publicBinary)
  const site = await startSite(central, centralKeyring)
  try {
    const siteMirror = site.core.mirrors[0]
    assert.ok(siteMirror)
    await siteMirror.publication()
    assert.equal(siteMirror.metadataStatus().metadataError, null)
    const products = parseProducts(await (await fetch(`${site.url}${MIRROR_PATH}streams/v1/com.ubuntu.maas:stable:v3:download.json`)).text(), 'site')
    const centralProducts = parseProducts(await (await fetch(central.url('streams/v1/com.ubuntu.maas:stable:v3:download.json'))).text(), 'central')
    assert.deepEqual(Object.keys(products.products).sort(), Object.keys(centralProducts.products).sort())

    const kernel = central.tree.items.find((item) => item.item === 'boot-kernel' && item.path.startsWith('noble/amd64/20250201/'))
    assert.ok(kernel)
    const response = await rawRequest(site.url, MIRROR_PATH + kernel.path)
    assert.equal(response.status, 200)
    assert.equal(sha256(response.body), kernel.sha256)
    await site.core.store.fills.idle()
    await central.proxy.core.store.fills.idle()
    assert.ok(site.core.store.index.get(kernel.sha256), 'stored at the site')
    assert.ok(central.proxy.core.store.index.get(kernel.sha256), 'stored centrally on the way')
    assert.equal(central.upstream.requestCount(kernel.path), 1)
  } finally {
    await site.close(0)
    await central.close()
  }
})

test('a site proxy given the upstream key instead of the central proxy key refuses the metadata and says which key signed it', async () => {
  const central = await startHarness()
  const site = await startSite(central)
  try {
    const siteMirror = site.core.mirrors[0]
    assert.ok(siteMirror)
    assert.equal(await siteMirror.publication(), undefined)
    assert.match(siteMirror.metadataStatus().metadataError ?? '', /not in the keyring/)
    assert.equal((await rawRequest(site.url, `${MIRROR_PATH}streams/v1/index.sjson`)).status, 503)
  } finally {
    await site.close(0)
    await central.close()
  }
})
