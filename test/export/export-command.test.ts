/**
 * `sstream-proxy export` end to end: a proxy filled from the test upstream
 * exports its selection; the tree verifies with the real gpgv against the
 * exported keyring, every item matches the metadata, and a second proxy whose
 * upstream is a plain static web server serving the folder works. Later
 * exports copy only what changed and never remove a file they did not write.
 */

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { spawn } from 'node:child_process'
import { join, relative } from 'node:path'
import { runCli } from '../../src/cli/run-cli.js'
import type { ExportSummary } from '../../src/export/export-tree.js'
import { formatBytes } from '../../src/prefetch/progress-display.js'
import { silentLogger } from '../../src/log/logger.js'
import { startProxy, type RunningProxy } from '../../src/runtime.js'
import { parseIndex, parseProducts } from '../../src/streams/documents.js'
import { loadSigningKey } from '../../src/streams/signing-key.js'
import { gpgvFile } from '../support/gpgv.js'
import { rawRequest, sha256 } from '../support/http.js'
import { DEFAULT_SELECTIONS, MIRROR_PATH, selectedFiles, startHarness, type Harness } from '../support/proxy-harness.js'
import { buildUpstreamTree, type TreeItem } from '../support/upstream-tree.js'

let h: Harness
let configPath: string
let work: string

before(async () => {
  h = await startHarness()
  await h.stopProxy()
  work = await mkdtemp(join(tmpdir(), 'sstream-proxy-export-'))
  configPath = join(h.dataDir, 'config.json')
  await writeConfig([{ name: 'stable', path: MIRROR_PATH, upstream: h.upstream.url, keyring: h.keyringPath, selections: DEFAULT_SELECTIONS }])
})
after(async () => {
  await h.close()
  await rm(work, { recursive: true, force: true })
})

async function writeConfig(mirrors: object[]): Promise<void> {
  await writeFile(configPath, JSON.stringify({ dataDir: h.dataDir, signingKey: h.config.signingKey, mirrors }))
}

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await runCli([...args, '--config', configPath], {
    cwd: work,
    env: {},
    stdout: { write: (chunk) => (stdout += String(chunk)) },
    stderr: { write: (chunk) => (stderr += String(chunk)) },
  })
  return { code, stdout, stderr }
}

async function exportJson(args: string[]): Promise<ExportSummary> {
  const result = await cli(['export', ...args, '--json'])
  assert.equal(result.code, 0, result.stderr)
  return (JSON.parse(result.stdout) as { export: ExportSummary }).export
}

/** Every file below `dir`, as relative paths, sorted. */
async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort()
}

/** Checks what a client of the static tree checks (signatures with gpgv, each index entry, each item's size and sha256); resolves to the distinct item paths, sorted. */
async function assertTreeVerifies(dir: string): Promise<string[]> {
  const keyring = join(dir, 'keyring.gpg')
  const index = await gpgvFile(keyring, join(dir, 'streams/v1/index.sjson'))
  assert.ok(index.ok, index.stderr)
  const items = new Set<string>()
  for (const [contentId, entry] of Object.entries(parseIndex(index.output, 'index').index)) {
    const signed = await gpgvFile(keyring, join(dir, entry.path))
    assert.ok(signed.ok, `${entry.path}: ${signed.stderr}`)
    // The plain twin is the same document.
    assert.equal(await readFile(join(dir, entry.path.replace(/\.sjson$/, '.json')), 'utf8'), signed.output, contentId)
    for (const product of Object.values(parseProducts(signed.output, entry.path).products)) {
      for (const version of Object.values(product.versions)) {
        for (const item of Object.values(version.items)) {
          assert.ok(item.path !== undefined && item.sha256 !== undefined)
          const bytes = await readFile(join(dir, item.path))
          assert.equal(bytes.length, item.size, item.path)
          assert.equal(sha256(bytes), item.sha256, item.path)
          items.add(item.path)
        }
      }
    }
  }
  return [...items].sort()
}

/** The selection of the test upstream whose newest version is `version` (see selectedFiles). */
const selectionOf = (version: string) => selectedFiles(h.upstream.tree.items, version)
const pathsOf = (files: readonly TreeItem[]) => files.map((file) => file.path)

/** How the command prints a number of files, as a regular expression source: `10 files \(96\.5 KiB\)`. */
function filesText(files: readonly TreeItem[]): string {
  const text = `${files.length} files (${formatBytes(files.reduce((sum, file) => sum + file.size, 0))})`
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** The keyring, and the signed and plain index and products documents of each content id the selection draws from. */
const metadataFileCount = (files: readonly TreeItem[]) => 1 + 2 * (1 + new Set(files.map((file) => file.contentId)).size)

/** A plain static file server: what nginx or any web server does with the folder. */
async function serveStatic(root: string): Promise<{ url: string; server: Server }> {
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname)
    readFile(join(root, path))
      .then((body) => response.writeHead(200, { 'content-length': body.length }).end(body))
      .catch(() => response.writeHead(404).end())
  })
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server }
}

async function startSecondProxy(upstream: string, keyring: string): Promise<RunningProxy> {
  const dataDir = await mkdtemp(join(work, 'second-'))
  const [mirror] = h.config.mirrors
  assert.ok(mirror)
  return startProxy(
    { ...h.config, dataDir, signingKey: join(dataDir, 'signing-key.asc'), mirrors: [{ ...mirror, upstreams: [upstream], keyring }], source: 'export test' },
    { log: silentLogger, version: 'test', fillAttempts: 1 },
  )
}

const itemRequests = () =>
  [...h.upstream.tree.files.keys()].filter((path) => !path.startsWith('streams/')).reduce((sum, path) => sum + h.upstream.requestCount(path), 0)

test('--dry-run fetches nothing and writes nothing, and says what would be done', async () => {
  const dir = join(work, 'dry')
  const selected = selectionOf('20250201')
  h.upstream.resetCounters()
  const result = await cli(['export', dir, '--dry-run'])
  assert.equal(result.code, 0, result.stderr)
  assert.match(result.stdout, new RegExp(`^would fetch into the store first: ${filesText(selected)}$`, 'm'))
  assert.match(result.stdout, /^would write streams\/v1\/index\.sjson$/m)
  assert.match(
    result.stdout,
    new RegExp(`would place ${filesText(selected)}, re-use 0 files \\(0 B\\), write ${metadataFileCount(selected)} metadata files, remove 0 files \\(0 B\\)$`, 'm'),
  )
  assert.equal(itemRequests(), 0)
  await assert.rejects(stat(dir), { code: 'ENOENT' })
})

test('exports a tree that gpgv verifies with DIR/keyring.gpg and a second proxy uses through a static web server', async () => {
  const dir = join(work, 'tree')
  const selected = selectionOf('20250201')
  const result = await cli(['export', dir])
  assert.equal(result.code, 0, result.stderr)
  const files = filesText(selected)
  const metadataFiles = metadataFileCount(selected)
  assert.match(
    result.stdout,
    new RegExp(`^stable to .*: ${files}; linked ${files}, copied 0 files \\(0 B\\), re-used 0 files \\(0 B\\); wrote ${metadataFiles} metadata files; removed 0 files \\(0 B\\); [\\d.]+ s$`, 'm'),
  )
  const count = selected.length
  assert.match(result.stderr, new RegExp(`^stable fetch: 100% ${count}/${count} files`, 'm'), 'the fill shows progress as prefetch does')
  assert.match(result.stderr, new RegExp(`^stable export: 100% ${count}/${count} files`, 'm'))
  assert.deepEqual(await assertTreeVerifies(dir), pathsOf(selected))
  assert.deepEqual(await readFile(join(dir, 'keyring.gpg')), Buffer.from((await loadSigningKey(h.config.signingKey)).publicBinary))
  const manifest = JSON.parse(await readFile(join(dir, '.sstream-proxy-export.json'), 'utf8')) as { files: Record<string, unknown> }
  assert.equal(Object.keys(manifest.files).length, count + metadataFiles, 'the items, the keyring and the metadata documents')
  assert.deepEqual(await readdir(dir).then((names) => names.filter((name) => name.startsWith('.'))), ['.sstream-proxy-export.json'], 'no temp folder or lock left')

  const { url, server } = await serveStatic(dir)
  const second = await startSecondProxy(url, join(dir, 'keyring.gpg'))
  try {
    const mirror = second.core.mirrors[0]
    assert.ok(mirror)
    await mirror.publication()
    assert.equal(mirror.metadataStatus().metadataError, null)
    const served = await second.core.prefetcher.run('stable', { gc: false })
    assert.equal(served.result, 'ok', served.counts.errors.join('; '))
    assert.equal(served.counts.filesDone, count)
    const kernel = h.upstream.tree.items.find((item) => item.item === 'boot-kernel' && item.path.startsWith('noble/amd64/20250201/'))
    assert.ok(kernel)
    const response = await rawRequest(second.url, MIRROR_PATH + kernel.path)
    assert.equal(response.status, 200)
    assert.equal(sha256(response.body), kernel.sha256)
  } finally {
    await second.close(0)
    server.close()
  }
})

test('a second export copies only the new files, removes the old ones it wrote, and keeps files it did not write', async () => {
  const dir = join(work, 'tree')
  const old = pathsOf(selectionOf('20250201'))
  const unchanged = await exportJson([dir])
  assert.deepEqual([unchanged.linked.files, unchanged.copied.files, unchanged.reused.files, unchanged.removed.files], [0, 0, old.length, 0])

  const before = JSON.parse(await readFile(join(dir, '.sstream-proxy-export.json'), 'utf8')) as { files: Record<string, { sha256: string }> }
  await writeFile(join(dir, 'README.txt'), 'the site operator wrote this\n')
  await mkdir(join(dir, 'noble/amd64/20250201'), { recursive: true })
  await writeFile(join(dir, 'noble/amd64/20250201/NOTES'), 'and this\n')
  h.upstream.setTree(await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301'] }))
  const beforeDry = await listTree(dir)
  const dry = await cli(['export', dir, '--dry-run'])
  assert.equal(dry.code, 0, dry.stderr)
  assert.deepEqual(await listTree(dir), beforeDry, '--dry-run leaves the folder as it was')

  const second = await exportJson([dir])
  const after = JSON.parse(await readFile(join(dir, '.sstream-proxy-export.json'), 'utf8')) as { files: Record<string, { sha256: string }> }
  const added = Object.keys(after.files).filter((path) => !path.startsWith('streams/') && path !== 'keyring.gpg' && before.files[path] === undefined)
  const gone = Object.keys(before.files).filter((path) => after.files[path] === undefined)
  const current = pathsOf(selectionOf('20250301'))
  assert.deepEqual(added.sort(), current, 'every item of the new versions')
  assert.equal(second.linked.files + second.copied.files, added.length, 'only the new files are placed')
  assert.equal(second.reused.files, 0)
  assert.deepEqual(second.removed.paths.sort(), gone.sort())
  assert.deepEqual(gone, old, 'every item of the old versions')
  for (const path of gone) await assert.rejects(stat(join(dir, path)), { code: 'ENOENT' }, path)
  assert.equal(await readFile(join(dir, 'README.txt'), 'utf8'), 'the site operator wrote this\n')
  assert.equal(await readFile(join(dir, 'noble/amd64/20250201/NOTES'), 'utf8'), 'and this\n')
  assert.deepEqual(await assertTreeVerifies(dir), current)
})

test('--copy copies and verifies; a tampered file is found by --verify and written again', async () => {
  const dir = join(work, 'copied')
  const selected = pathsOf(selectionOf('20250301'))
  const summary = await exportJson([dir, '--copy'])
  assert.deepEqual([summary.linked.files, summary.copied.files], [0, selected.length])
  const [first] = Object.keys((JSON.parse(await readFile(join(dir, '.sstream-proxy-export.json'), 'utf8')) as { files: object }).files).filter((path) => !path.startsWith('streams/') && path !== 'keyring.gpg')
  assert.ok(first)
  assert.equal((await stat(join(dir, first))).nlink, 1, 'a copy, not a link to the store')

  await overwrite(join(dir, first), 'tampered')
  const cheap = await exportJson([dir, '--copy'])
  assert.equal(cheap.reused.files, selected.length, 'without --verify the same size and record count as a match (documented)')
  const verified = await cli(['export', dir, '--copy', '--verify'])
  assert.equal(verified.code, 0, verified.stderr)
  assert.match(verified.stdout, new RegExp(`^replaced ${first}: it no longer matched the export record$`, 'm'))
  assert.deepEqual(await assertTreeVerifies(dir), selected)
})

test('a proxy using a served export refuses a tampered file and a tampered products document, naming each', async () => {
  const dir = join(work, 'tampered')
  await exportJson([dir, '--copy'])
  const item = 'noble/amd64/20250301/boot-kernel'
  const kernel = h.upstream.tree.items.find((entry) => entry.path.endsWith(item.slice(item.lastIndexOf('/'))) && entry.path.startsWith('noble/amd64/20250301/'))
  assert.ok(kernel)
  await overwrite(join(dir, kernel.path), 'tampered')
  const { url, server } = await serveStatic(dir)
  const second = await startSecondProxy(url, join(dir, 'keyring.gpg'))
  try {
    const pass = await second.core.prefetcher.run('stable', { gc: false })
    assert.equal(pass.result, 'failed')
    assert.deepEqual(pass.counts.errors.map((error) => error.split(':')[0]), [kernel.path])
    assert.match(pass.counts.errors[0] as string, /sha256/)
    assert.equal(second.core.store.index.get(kernel.sha256), undefined, 'never stored')

  } finally {
    await second.close(0)
  }
  // A proxy reads a products document only when the index changes: a fresh one reads them all.
  const products = 'streams/v1/com.ubuntu.maas:stable:v3:download.sjson'
  const text = await readFile(join(dir, products), 'utf8')
  await writeFile(join(dir, products), text.replace('"20250301"', '"20250399"'))
  const third = await startSecondProxy(url, join(dir, 'keyring.gpg'))
  try {
    const mirror = third.core.mirrors[0]
    assert.ok(mirror)
    assert.equal(await mirror.publication(), undefined)
    assert.match(mirror.metadataStatus().metadataError ?? '', /download\.sjson: signature does not match the text/)
  } finally {
    await third.close(0)
    server.close()
  }
  // The next export puts both right: the document by content, the item once asked to verify.
  assert.equal((await cli(['export', dir, '--copy', '--verify'])).code, 0)
  assert.deepEqual(await assertTreeVerifies(dir), pathsOf(selectionOf('20250301')))
})

async function overwrite(path: string, text: string): Promise<void> {
  const handle = await open(path, 'r+')
  await handle.write(Buffer.from(text), 0, text.length, 0)
  await handle.close()
}

test('one export per folder: a running one is refused, a crashed one\'s lock is taken over', async () => {
  const dir = join(work, 'tree')
  await writeFile(join(dir, '.sstream-proxy-export.lock'), `${hostname()}:${process.pid}`)
  const refused = await cli(['export', dir])
  assert.equal(refused.code, 1)
  assert.match(refused.stderr, /another export is running \(.*\); if none is, remove .*\.sstream-proxy-export\.lock$/m)
  const child = spawn(process.execPath, ['-e', ''])
  await new Promise((done) => child.on('exit', done))
  await writeFile(join(dir, '.sstream-proxy-export.lock'), `${hostname()}:${child.pid}`)
  const taken = await cli(['export', dir])
  assert.equal(taken.code, 0, taken.stderr)
  await assert.rejects(stat(join(dir, '.sstream-proxy-export.lock')), { code: 'ENOENT' })
})

test('a manifest naming a path outside the folder is refused whole', async () => {
  const dir = join(work, 'hostile')
  await mkdir(dir, { recursive: true })
  await writeFile(join(work, 'precious'), 'keep me\n')
  await writeFile(join(dir, '.sstream-proxy-export.json'), JSON.stringify({ files: { '../precious': { sha256: '0'.repeat(64), size: 8 } } }))
  const result = await cli(['export', dir])
  assert.equal(result.code, 1)
  assert.match(result.stderr, /\.sstream-proxy-export\.json: files: path "\.\.\/precious" has a "\.\." segment \(move it away to start a fresh export\)$/m)
  assert.equal(await readFile(join(work, 'precious'), 'utf8'), 'keep me\n')
})

test('a file missing from the store and not fetchable stops the export before anything is written', async () => {
  const tree = await buildUpstreamTree({ key: h.tree.key, versions: ['20250101', '20250201', '20250301', '20250401'] })
  h.upstream.setTree(tree)
  const missing = tree.items.find((item) => item.path === 'noble/amd64/20250401/squashfs')
  assert.ok(missing)
  h.upstream.setFault(missing.path, { kind: 'status', status: 404 })
  const dir = join(work, 'tree')
  const before = await readFile(join(dir, 'streams/v1/index.sjson'))
  try {
    const result = await cli(['export', dir])
    assert.equal(result.code, 1)
    assert.match(result.stderr, new RegExp(`fetch failed: ${missing.path}: .*HTTP 404`))
    assert.match(result.stderr, new RegExp(`^sstream-proxy export: 1 files of the selection are not stored \\(64\\.0 KiB\\): ${missing.path}$`, 'm'))
    assert.deepEqual(await readFile(join(dir, 'streams/v1/index.sjson')), before, 'the served metadata is untouched')
    for (const item of tree.items.filter((entry) => entry.version === '20250401')) await assert.rejects(stat(join(dir, item.path)), { code: 'ENOENT' })
  } finally {
    h.upstream.setFault(missing.path, undefined)
  }
})

test('a symlink inside DIR is never followed out of it', async () => {
  const dir = join(work, 'linked')
  const outside = join(work, 'outside')
  await mkdir(dir, { recursive: true })
  await mkdir(outside, { recursive: true })
  await symlink(outside, join(dir, 'noble'))
  const result = await cli(['export', dir])
  assert.equal(result.code, 1)
  assert.match(result.stderr, /^sstream-proxy export: .*linked\/noble is a symlink; an export never writes through one$/m)
  assert.deepEqual(await readdir(outside), [])
})

test('usage errors exit 2: no DIR, several mirrors without --mirror, an unknown mirror', async () => {
  const missingDir = await cli(['export'])
  assert.equal(missingDir.code, 2)
  assert.match(missingDir.stderr, /^sstream-proxy: export: missing DIR \(see sstream-proxy export --help\)$/m)
  const extra = await cli(['export', 'a', 'b'])
  assert.equal(extra.code, 2)
  assert.match(extra.stderr, /^sstream-proxy: export: unexpected argument "b" \(see sstream-proxy export --help\)$/m)
  const help = await cli(['export', '--help'])
  assert.equal(help.code, 0)
  assert.match(help.stdout, /^Arguments:\n {2}DIR {2}the folder to write/m)
  const mirror = { path: MIRROR_PATH, upstream: h.upstream.url, keyring: h.keyringPath, selections: DEFAULT_SELECTIONS }
  await writeConfig([{ ...mirror, name: 'stable' }, { ...mirror, name: 'other', path: '/other/' }])
  try {
    const several = await cli(['export', join(work, 'x')])
    assert.equal(several.code, 2)
    assert.match(several.stderr, /there are several mirrors \(stable, other\): choose one with --mirror NAME/)
    const unknown = await cli(['export', join(work, 'x'), '--mirror', 'nope'])
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /no mirror named nope \(mirrors: stable, other\)/)
    await assert.rejects(stat(join(work, 'x')), { code: 'ENOENT' })
  } finally {
    await writeConfig([{ ...mirror, name: 'stable' }])
  }
})

test('with publish: "cached" the export holds what the proxy publishes: a version with a file that cannot be fetched is left out, and the exit is 1', async () => {
  h.upstream.setTree(await buildUpstreamTree({ key: h.tree.key, versions: ['20250401'] }))
  assert.equal((await cli(['prefetch'])).code, 0)
  h.upstream.setTree(await buildUpstreamTree({ key: h.tree.key, versions: ['20250401', '20250501'] }))
  const broken = 'noble/amd64/20250501/squashfs'
  h.upstream.setFault(broken, { kind: 'status', status: 404 })
  const mirror = { name: 'stable', path: MIRROR_PATH, upstream: h.upstream.url, keyring: h.keyringPath, selections: DEFAULT_SELECTIONS }
  await writeConfig([{ ...mirror, publish: 'cached' }])
  const dir = join(work, 'cached')
  try {
    const result = await cli(['export', dir])
    assert.equal(result.code, 1, result.stderr)
    assert.match(result.stderr, new RegExp(`fetch failed: ${broken}: .*HTTP 404`))
    // Versions are published one by one: the images stay at the older complete version, the bootloaders move on.
    const isImage = (file: TreeItem) => file.contentId.endsWith(':v3:download')
    const published = [...selectionOf('20250401').filter(isImage), ...selectionOf('20250501').filter((file) => !isImage(file))]
    assert.deepEqual(await assertTreeVerifies(dir), pathsOf(published).sort())
    const written = await listTree(dir)
    assert.ok(written.includes('noble/amd64/20250401/squashfs'), 'the older complete version')
    assert.ok(!written.some((path) => path.startsWith('noble/amd64/20250501/')), 'nothing of the incomplete one')
  } finally {
    h.upstream.setFault(broken, undefined)
    await writeConfig([mirror])
  }
})
