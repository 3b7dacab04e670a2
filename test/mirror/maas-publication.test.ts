import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { runCli } from '../../src/cli/run-cli.js'
import { createLogger } from '../../src/log/logger.js'
import { checkMaasCompatibility, describeMaasProblem } from '../../src/streams/maas-compatibility.js'
import type { IndexDocument, ProductsDocument } from '../../src/streams/types.js'
import { gpgvFile } from '../support/gpgv.js'
import { MIRROR_PATH, startHarness, type Harness, type HarnessOptions } from '../support/proxy-harness.js'

const IMAGES = 'com.ubuntu.maas:stable:v3:download'
const BOOTLOADERS = 'com.ubuntu.maas:stable:1:bootloader-download'
const GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04'
const HWE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04'
const GRUB = 'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64'
const BOOTLOADER_GROUP = { filters: ['os~(grub*|pxelinux)'], max: 1 }

/** The JSON of a clearsigned file, cut as MAAS 3.8 cuts it: from the first `{` to the signature block. */
function signedJson(text: string): unknown {
  return JSON.parse(text.slice(text.indexOf('{'), text.indexOf('-----BEGIN PGP SIGNATURE-----')))
}

async function get(h: Harness, path: string): Promise<string> {
  const response = await fetch(h.url(path))
  assert.equal(response.status, 200, path)
  return response.text()
}

/** The keyring MAAS is given for this mirror: the proxy's, or with upstream metadata upstream's. */
async function maasKeyring(h: Harness): Promise<string> {
  if (h.config.mirrors[0]?.metadata === 'upstream') return h.keyringPath
  const path = join(h.dataDir, 'maas-keyring.gpg')
  await writeFile(path, Buffer.from(await (await fetch(`${h.proxy.url}/keyring.gpg`)).arrayBuffer()))
  return path
}

/** A signed document as MAAS checks it: the real gpgv, with the keyring it was given. */
async function assertGpgvAccepts(h: Harness, keyring: string, path: string, text: string): Promise<void> {
  const file = join(h.dataDir, 'maas-check.sjson')
  await writeFile(file, text)
  const result = await gpgvFile(keyring, file)
  assert.ok(result.ok, `gpgv rejects ${path}: ${result.stderr}`)
}

/**
 * Every document the proxy serves, read as MAAS reads it (the signed index,
 * then every products file it lists, each checked by gpgv), and the same
 * through the plain index.
 */
async function servedDocuments(h: Harness) {
  const keyring = await maasKeyring(h)
  const sets = []
  for (const [indexPath, parse] of [
    ['streams/v1/index.sjson', signedJson],
    ['streams/v1/index.json', JSON.parse],
  ] as const) {
    const read = async (path: string) => {
      const text = await get(h, path)
      if (path.endsWith('.sjson')) await assertGpgvAccepts(h, keyring, path, text)
      return parse(text)
    }
    const index = (await read(indexPath)) as IndexDocument
    const products = new Map<string, ProductsDocument>()
    for (const [contentId, entry] of Object.entries(index.index)) products.set(contentId, (await read(entry.path)) as ProductsDocument)
    sets.push({ index, products })
  }
  return sets
}

/** What MAAS 3.8 would reject in everything the proxy serves. */
async function problemsServed(h: Harness): Promise<string[]> {
  return (await servedDocuments(h)).flatMap((documents) => checkMaasCompatibility(documents).map(describeMaasProblem))
}

async function statusProblems(h: Harness): Promise<string[]> {
  const report = (await (await fetch(`${h.proxy.url}/status`)).json()) as { mirrors: Array<{ maasProblems: string[] }> }
  return report.mirrors[0]?.maasProblems as string[]
}

async function problemsGauge(h: Harness): Promise<number> {
  const text = await (await fetch(`${h.proxy.url}/metrics`)).text()
  const line = text.split('\n').find((candidate) => candidate.startsWith('sstream_proxy_maas_problems{mirror="stable"} '))
  assert.ok(line !== undefined, 'sstream_proxy_maas_problems exposed')
  return Number(line.split(' ')[1])
}

async function imagesServed(h: Harness): Promise<ProductsDocument> {
  return signedJson(await get(h, `streams/v1/${IMAGES}.sjson`)) as ProductsDocument
}

/** A proxy on the test upstream whose every served document MAAS accepts, with nothing on /status or /metrics. */
function servesValidMetadata(name: string, options: HarnessOptions, more?: (h: () => Harness) => void) {
  describe(name, () => {
    let h: Harness
    before(async () => {
      h = await startHarness(options)
    })
    after(() => h.close())

    test('MAAS 3.8 accepts every document served, and /status and /metrics say so', async () => {
      assert.deepEqual(await problemsServed(h), [])
      assert.deepEqual(await statusProblems(h), [])
      assert.equal(await problemsGauge(h), 0)
    })
    more?.(() => h)
  })
}

describe('what the proxy publishes passes MAAS 3.8', () => {
  servesValidMetadata('default selections', {})

  servesValidMetadata('metadata: "upstream"', { mirror: { metadata: 'upstream' } })

  servesValidMetadata('everything upstream (no selections)', { mirror: { selections: [] } })

  servesValidMetadata(
    'a selection without manifests (ftype!=manifest)',
    { mirror: { selections: [{ filters: ['arch=amd64', 'release=noble', 'ftype!=manifest'], max: 1 }, BOOTLOADER_GROUP] } },
    (harness) => {
      test('keeps the manifest in the metadata of every version, never prefetches it, and serves it on demand', async () => {
        const h = harness()
        const images = await imagesServed(h)
        for (const product of [GA, HWE]) assert.deepEqual(Object.keys(images.products[product]?.versions['20250201']?.items ?? {}).sort(), ['boot-initrd', 'boot-kernel', 'manifest', 'squashfs'])
        const manifest = 'noble/amd64/20250201/squashfs.manifest'
        assert.equal((await h.proxy.core.prefetcher.run('stable')).result, 'ok')
        assert.equal(h.upstream.requestCount(manifest), 0, 'the manifest is not prefetched')
        const response = await fetch(h.url(manifest))
        assert.equal(response.status, 200)
        assert.equal(response.headers.get('x-cache'), 'MISS')
        assert.equal(createHash('sha256').update(Buffer.from(await response.arrayBuffer())).digest('hex'), h.tree.items.find((item) => item.path === manifest)?.sha256)
      })
    },
  )

  servesValidMetadata(
    'a kernel-only selection of the hwe product (its squashfs is the ga product\'s)',
    { mirror: { selections: [{ filters: ['arch=amd64', 'release=noble', 'subarch=hwe-24.04', 'ftype~^boot-'], max: 1 }] } },
    (harness) => {
      test('publishes the shared squashfs and the manifest, and prefetches only the kernel and initrd', async () => {
        const h = harness()
        const images = await imagesServed(h)
        assert.deepEqual(Object.keys(images.products), [HWE])
        assert.deepEqual(Object.keys(images.products[HWE]?.versions['20250201']?.items ?? {}).sort(), ['boot-initrd', 'boot-kernel', 'manifest', 'squashfs'])
        const outcome = await h.proxy.core.prefetcher.run('stable')
        assert.deepEqual([outcome.result, outcome.counts.filesTotal], ['ok', 2])
        assert.equal((await fetch(h.url('noble/amd64/20250201/squashfs'))).status, 200, 'the squashfs is served on demand')
      })
    },
  )

  servesValidMetadata('publish: "cached", cold then warm', { mirror: { publish: 'cached' } }, (harness) => {
    test('with nothing stored, publishes the newest selected version of each product, filled on demand', async () => {
      const h = harness()
      const index = signedJson(await get(h, 'streams/v1/index.sjson')) as IndexDocument
      assert.deepEqual(Object.keys(index.index).sort(), [BOOTLOADERS, IMAGES])
      const images = await imagesServed(h)
      assert.deepEqual(Object.keys(images.products[GA]?.versions ?? {}), ['20250201'])
      assert.equal(h.proxy.core.mirrors[0]?.current()?.pending.length, 5, 'every selected version still waits for its files')
      assert.equal((await fetch(h.url('noble/amd64/20250201/ga-24.04/generic/boot-kernel'))).headers.get('x-cache'), 'MISS')
    })

    test('once warm, the same versions are published, complete, and MAAS still accepts everything', async () => {
      const h = harness()
      assert.equal((await h.proxy.core.prefetcher.run('stable')).result, 'ok')
      await h.proxy.core.mirrors[0]?.republished()
      assert.equal(h.proxy.core.mirrors[0]?.current()?.pending.length, 0)
      assert.deepEqual(Object.keys((await imagesServed(h)).products[GA]?.versions ?? {}), ['20250201'])
      assert.deepEqual(await problemsServed(h), [])
      assert.deepEqual(await statusProblems(h), [])
    })
  })
})

describe('an upstream document MAAS 3.8 rejects', () => {
  /** Upstream drops the manifest of the noble ga product and keys the signed grub by its file name, as this proxy's demo once did. */
  const breakDocuments = (contentId: string, document: ProductsDocument) => {
    if (contentId === IMAGES) {
      for (const version of Object.values(document.products[GA]?.versions ?? {})) delete version.items.manifest
    }
    if (contentId === BOOTLOADERS) {
      for (const version of Object.values(document.products[GRUB]?.versions ?? {})) {
        version.items = { 'grub2-signed.tar.xz': version.items['grub2-signed'] as NonNullable<(typeof version.items)[string]> }
      }
    }
  }
  const expected = [
    `${BOOTLOADERS} product ${GRUB} version 20250201.0: bootloader version needs an item keyed grub2-signed, shim-signed, grub2 or syslinux; has grub2-signed.tar.xz`,
    `${IMAGES} product ${GA} version 20250201: multi-file version needs items boot-initrd, boot-kernel, manifest; missing manifest`,
  ]
  const warnings: string[] = []
  let h: Harness
  before(async () => {
    const log = createLogger({ json: true, write: (line) => void warnings.push(line) })
    h = await startHarness({ tree: { editProducts: breakDocuments }, log })
  })
  after(() => h.close())

  const logged = () =>
    warnings
      .map((line) => JSON.parse(line) as { level: string; problem?: string })
      .filter((entry) => entry.problem !== undefined)
      .map((entry) => `${entry.level} ${entry.problem}`)

  test('names each problem on /status, in the log once, and in the count', async () => {
    assert.deepEqual(await statusProblems(h), expected)
    assert.equal(await problemsGauge(h), 2)
    assert.deepEqual(logged(), expected.map((problem) => `warn ${problem}`))
    const html = await (await fetch(`${h.proxy.url}/status`, { headers: { accept: 'text/html' } })).text()
    assert.match(html, /MAAS 3\.8 would reject this mirror&#39;s metadata|MAAS 3\.8 would reject this mirror's metadata/)
    for (const problem of expected) assert.ok(html.includes(problem.replace(/"/g, '&quot;')), `the page shows: ${problem}`)
  })

  test('a rebuild with the same problems logs nothing new', async () => {
    // Upstream adds a release: the publication is rebuilt, its problems unchanged.
    const { buildUpstreamTree } = await import('../support/upstream-tree.js')
    const next = await buildUpstreamTree({
      key: h.tree.key,
      releases: [{ release: 'focal', version: '20.04' }, { release: 'jammy', version: '22.04' }, { release: 'noble', version: '24.04' }],
      editProducts: breakDocuments,
    })
    h.upstream.setTree(next)
    await h.proxy.core.mirrors[0]?.refresh()
    assert.ok(h.proxy.core.mirrors[0]?.current()?.source.index.signed.includes('"com.ubuntu.maas.stable:v3:boot:20.04:'), 'rebuilt from the new upstream index')
    assert.deepEqual(await statusProblems(h), expected)
    assert.deepEqual(logged(), expected.map((problem) => `warn ${problem}`))
  })

  test('metadata: "upstream" reports the same problems, and prefetch --dry-run warns of them', async () => {
    await h.stopProxy()
    const configPath = join(h.dataDir, 'config.json')
    await writeFile(
      configPath,
      JSON.stringify({
        dataDir: h.dataDir,
        signingKey: h.config.signingKey,
        mirrors: [{ name: 'stable', path: MIRROR_PATH, upstream: h.upstream.url, keyring: h.keyringPath, metadata: 'upstream', selections: [] }],
      }),
    )
    let stdout = ''
    let stderr = ''
    const code = await runCli(['prefetch', '--dry-run', '--json', '--config', configPath], {
      cwd: h.dataDir,
      env: {},
      stdout: { write: (chunk) => (stdout += String(chunk)) },
      stderr: { write: (chunk) => (stderr += String(chunk)) },
    })
    assert.equal(code, 0, stderr)
    const reported = (JSON.parse(stdout) as { maasProblems: Record<string, string[]> }).maasProblems.stable ?? []
    // Upstream's document holds every version, each with the same problem.
    for (const problem of expected) assert.ok(reported.includes(problem), problem)
    for (const problem of reported) assert.match(stderr, new RegExp(`warning: mirror stable: MAAS 3\\.8 would reject the metadata it serves: ${problem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`))
  })
})
