/**
 * The air gap, end to end: a proxy fills from the test upstream and exports
 * its selection to a folder (the disk carried in); a second proxy with no
 * network upstream at all reads that folder through a `file://` upstream with
 * the first proxy's key, and a client behaving as MAAS (the real gpgv,
 * every file at once, sha256 checked) syncs through it. A tampered products
 * document and a tampered file on the disk are refused and named, the last
 * good metadata still served; a second export after upstream moved on copies
 * only the new files, and the second proxy takes the new version on refresh.
 * A proxy pointed at a disk, or running `prefetch` from it, stores only what
 * it does not have yet.
 */

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { runCli } from '../../src/cli/run-cli.js'
import { validateConfig } from '../../src/config/validate-config.js'
import type { ExportSummary } from '../../src/export/export-tree.js'
import { createLogger } from '../../src/log/logger.js'
import { startProxy, type RunningProxy } from '../../src/runtime.js'
import { rawRequest, sha256 } from '../support/http.js'
import { createMaasClient, type SyncResult } from '../support/maas-client.js'
import { DEFAULT_SELECTIONS, MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { buildUpstreamTree } from '../support/upstream-tree.js'

const PRODUCTS = 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson'

let h: Harness
let work: string
let configPath: string
/** The carried folder, and how the second proxy names it. */
let disk: string
let diskUrl: string
let second: AirGapped

before(async () => {
  h = await startHarness()
  work = await mkdtemp(join(tmpdir(), 'sstream-proxy-airgap-'))
  disk = join(work, 'disk')
  diskUrl = `${pathToFileURL(disk).href}/`
  configPath = join(h.dataDir, 'config.json')
  const mirror = { name: 'stable', path: MIRROR_PATH, upstream: h.upstream.url, keyring: h.keyringPath, selections: DEFAULT_SELECTIONS }
  await writeFile(configPath, JSON.stringify({ dataDir: h.dataDir, signingKey: h.config.signingKey, mirrors: [mirror] }))
})
after(async () => {
  await second?.proxy.close(0)
  await h.close()
  await rm(work, { recursive: true, force: true })
})

async function exportTo(dir: string): Promise<ExportSummary> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(['export', dir, '--json', '--config', configPath], {
    cwd: work,
    env: {},
    stdout: { write: (chunk) => (stdout += String(chunk)) },
    stderr: { write: (chunk) => (stderr += String(chunk)) },
  })
  assert.equal(code, 0, stderr)
  return (JSON.parse(stdout) as { export: ExportSummary }).export
}

interface AirGapped {
  proxy: RunningProxy
  /** The JSON log entries written so far. */
  logged(message: string): Array<Record<string, unknown>>
}

/**
 * A proxy whose only upstream is `upstream` (a folder, as the operator writes
 * it in the configuration file), verifying with the keyring on that disk.
 */
async function startAirGapped(upstream: string): Promise<AirGapped> {
  const dataDir = await mkdtemp(join(work, 'site-'))
  const lines: string[] = []
  const config = validateConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      dataDir,
      prefetch: { onStart: false },
      mirrors: [{ name: 'stable', path: MIRROR_PATH, upstream, keyring: join(disk, 'keyring.gpg'), missWait: '3s', selections: DEFAULT_SELECTIONS }],
    },
    { source: 'air-gapped site', baseDir: dataDir },
  )
  const proxy = await startProxy(config, { log: createLogger({ json: true, write: (line) => lines.push(line) }), version: 'test', fillAttempts: 1 })
  return {
    proxy,
    logged: (message) => lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => entry.message === message),
  }
}

/** A MAAS sync through `proxy`, with the keyring MAAS is given for it. */
async function maasSync(proxy: RunningProxy): Promise<SyncResult> {
  const keyring = new Uint8Array(await (await fetch(`${proxy.url}/keyring.gpg`)).arrayBuffer())
  const client = createMaasClient({ url: `${proxy.url}${MIRROR_PATH}`, keyring, heartbeatMs: 5_000, backoffMs: 100, maxBackoffMs: 500, giveUpAfterMs: 3_000 })
  return client.sync()
}

function assertAllVerified(result: SyncResult): void {
  assert.equal(result.ok, true, result.failure)
  assert.ok(result.files.length >= 5, `a MAAS-sized selection (${result.files.length} files)`)
  for (const file of result.files) assert.equal(file.outcome, 'verified', `${file.path}: ${file.errors.join('; ')}`)
}

/** The item paths the export's manifest records. */
async function exportedItems(): Promise<string[]> {
  const manifest = JSON.parse(await readFile(join(disk, '.sstream-proxy-export.json'), 'utf8')) as { files: Record<string, unknown> }
  return Object.keys(manifest.files).filter((path) => !path.startsWith('streams/') && path !== 'keyring.gpg')
}

async function overwrite(path: string, text: string): Promise<Buffer> {
  const original = await readFile(path)
  await writeFile(path, Buffer.concat([Buffer.from(text), original.subarray(text.length)]))
  return original
}

test('exported to a folder, the selection is served by a proxy with no network upstream, and a MAAS sync through it verifies everything', async () => {
  assertAllVerified(await maasSync(h.proxy))
  await h.stopProxy()
  const summary = await exportTo(disk)
  assert.ok(summary.files >= 8)
  assert.equal(summary.linked.files + summary.copied.files, summary.files)

  // From here on there is no network: the upstream refuses every connection.
  await h.upstream.down()
  h.upstream.resetCounters()
  // Written as an operator writes it: a plain absolute path.
  second = await startAirGapped(disk)
  const mirror = second.proxy.core.mirrors[0]
  assert.ok(mirror)
  assert.equal(mirror.upstream.describe(), diskUrl)
  const sync = await maasSync(second.proxy)
  assertAllVerified(sync)
  assert.equal(mirror.metadataStatus().metadataError, null)
  const status = (await (await fetch(`${second.proxy.url}/status`)).json()) as { mirrors: Array<{ upstream: string; upstreamReachable: boolean }> }
  assert.deepEqual([status.mirrors[0]?.upstream, status.mirrors[0]?.upstreamReachable], [diskUrl, true])
  // A client has its last byte once the file is verified; the commit follows.
  await second.proxy.core.store.fills.idle()
  assert.equal(second.logged('stored').length, sync.files.length, 'every file MAAS asked for read from the folder and stored')
  assert.equal(h.upstream.requestCount(), 0)
})

test('a second export copies only the new files; a tampered products document and a tampered file are refused and named; put right, the new version is served', async () => {
  await h.upstream.up()
  h.upstream.setTree(await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] }))
  const before = await exportedItems()
  const update = await exportTo(disk)
  const after = await exportedItems()
  const added = after.filter((path) => !before.includes(path))
  assert.ok(added.length > 0 && added.every((path) => path.includes('/20250301')), added.join(' '))
  assert.equal(update.linked.files + update.copied.files, added.length, 'only the new files are copied')
  assert.equal(update.removed.files, before.filter((path) => !after.includes(path)).length, 'the version that left the selection')
  await h.upstream.down()

  const kernel = h.upstream.tree.items.find((item) => item.path === 'noble/amd64/20250301/ga-24.04/generic/boot-kernel')
  assert.ok(kernel)
  const goodProducts = await readFile(join(disk, PRODUCTS))
  await writeFile(join(disk, PRODUCTS), goodProducts.toString().replace('"20250301"', '"20250399"'))
  const goodKernel = await overwrite(join(disk, kernel.path), 'tampered')

  const mirror = second.proxy.core.mirrors[0]
  assert.ok(mirror)
  await mirror.refresh()
  const error = mirror.metadataStatus().metadataError ?? ''
  assert.ok(error.startsWith(`${diskUrl}${PRODUCTS}: signature does not match the text`), error)
  const served = await rawRequest(second.proxy.url, `${MIRROR_PATH}${PRODUCTS.replace(/\.sjson$/, '.json')}`)
  assert.equal(served.status, 200)
  assert.ok(served.body.toString().includes('"20250201"') && !served.body.toString().includes('"20250301"'), 'the last good metadata is still served')

  await writeFile(join(disk, PRODUCTS), goodProducts)
  await mirror.refresh()
  assert.equal(mirror.metadataStatus().metadataError, null)
  assert.ok(mirror.current()?.files.has(kernel.path), 'the new version is published')

  // The tampered file: a miss reads it, sha256 refuses it, the client never gets a complete body.
  const response = await rawRequest(second.proxy.url, `${MIRROR_PATH}${kernel.path}`)
  assert.equal(response.complete, false)
  const failed = second.logged('fill failed').map((entry) => String(entry.error))
  assert.ok(
    failed.some((message) => message.startsWith(`${kernel.path}: sha256 `) && message.endsWith(`does not match the signed metadata (${kernel.sha256}); read from ${diskUrl}${kernel.path}`)),
    failed.join('\n'),
  )
  const pass = await second.proxy.core.prefetcher.run('stable', { gc: false })
  assert.equal(pass.result, 'failed')
  assert.equal(pass.counts.errors.length, 1)
  assert.ok(pass.counts.errors[0]?.includes(`read from ${diskUrl}${kernel.path}`), pass.counts.errors[0])
  assert.equal(second.proxy.core.store.index.get(kernel.sha256), undefined, 'never stored')

  await writeFile(join(disk, kernel.path), goodKernel)
  const sync = await maasSync(second.proxy)
  assertAllVerified(sync)
  assert.ok(sync.files.some((file) => file.path === kernel.path))
  assert.ok(sync.files.every((file) => !file.path.includes('/20250201/')), 'the new version replaced the old one')
  assert.equal(sha256(await readFile(join(disk, kernel.path))), kernel.sha256)
})

test('pointed at a disk, or prefetching from it, a proxy stores only what it does not have; a file missing on the disk is named', async () => {
  const site = await startAirGapped(diskUrl)
  try {
    const mirror = site.proxy.core.mirrors[0]
    assert.ok(mirror)
    const publication = await mirror.publication()
    assert.ok(publication)
    const paths = [...publication.files.keys()]
    // Two files already there (asked for by a client); one missing from the disk.
    for (const path of paths.slice(0, 2)) assert.equal((await rawRequest(site.proxy.url, `${MIRROR_PATH}${path}`)).complete, true, path)
    const missing = paths[2] as string
    await rename(join(disk, missing), join(work, 'moved-away'))
    const first = await site.proxy.core.prefetcher.run('stable', { gc: false })
    assert.equal(first.result, 'failed')
    assert.deepEqual(first.counts.errors, [`${missing}: ${diskUrl}${missing}: no such file on disk`])
    const storedPaths = () => site.logged('stored').map((entry) => String(entry.path))
    assert.deepEqual(storedPaths().sort(), paths.filter((path) => path !== missing).sort(), 'the two asked for once, then what the disk has and the store had not')

    await rename(join(work, 'moved-away'), join(disk, missing))
    const second = await site.proxy.core.prefetcher.run('stable', { gc: false })
    assert.equal(second.result, 'ok', second.counts.errors.join('; '))
    assert.deepEqual(storedPaths().slice(paths.length - 1), [missing], 'then only the file that was missing')
  } finally {
    await site.proxy.close(0)
  }
})

test('a disk not mounted at start is no configuration error: the mirror says so and takes the tree once it is there', async () => {
  const mountPoint = join(work, 'not-mounted')
  const site = await startAirGapped(mountPoint)
  try {
    const mirror = site.proxy.core.mirrors[0]
    assert.ok(mirror)
    assert.equal(await mirror.publication(), undefined)
    assert.deepEqual(mirror.metadataStatus(), {
      upstreamReachable: false,
      metadataUpdated: null,
      metadataError: `${pathToFileURL(mountPoint).href}/: directory not found (is the disk mounted?)`,
      metadataWarnings: [],
    })
    await symlink(disk, mountPoint)
    assert.ok(await mirror.refresh())
    assert.equal(mirror.metadataStatus().metadataError, null)
  } finally {
    await site.proxy.close(0)
  }
})
