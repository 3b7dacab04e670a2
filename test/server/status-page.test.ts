/**
 * `/status` for people: content negotiation, escaping, and the page as
 * Debian's headless Chromium renders it, including that it updates itself
 * from the server without a reload.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { IDLE_PREFETCH, UNLIMITED_BANDWIDTH, type StatusReport } from '../../src/server/status-report.js'
import { prefersHtml, renderStatusPage, versionRows } from '../../src/server/status-page.js'
import { startHarness, type Harness } from '../support/proxy-harness.js'

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path))

/** Runs headless Chromium with a fresh profile; resolves to its stdout. */
async function chromium(args: string[]): Promise<string> {
  const profile = await mkdtemp(join(tmpdir(), 'status-page-chromium-'))
  try {
    return await new Promise((resolve, reject) => {
      execFile(
        CHROMIUM as string,
        ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, ...args],
        { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) => (error === null ? resolve(stdout) : reject(new Error(`chromium failed: ${error.message}\n${stderr}`))),
      )
    })
  } finally {
    await rm(profile, { recursive: true, force: true })
  }
}

describe('prefersHtml', () => {
  test('a browser gets HTML; curl, JSON clients and no Accept get JSON', () => {
    assert.equal(prefersHtml('text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'), true)
    assert.equal(prefersHtml('*/*'), false)
    assert.equal(prefersHtml(undefined), false)
    assert.equal(prefersHtml('application/json'), false)
    assert.equal(prefersHtml('application/json, text/html;q=0.5'), false)
    assert.equal(prefersHtml('text/html;q=0'), false)
    assert.equal(prefersHtml('TEXT/HTML'), true)
  })
})

describe('renderStatusPage', () => {
  const report = (name: string, error: string): StatusReport => ({
    version: '1.0.0',
    uptimeSeconds: 90,
    configLoaded: '2026-01-01T00:00:00.000Z',
    cache: { files: 1, bytes: 2048, hits: 3, misses: 1, upstreamBytes: 4096, servedBytes: 8192, activeFills: 0 },
    bandwidth: UNLIMITED_BANDWIDTH,
    store: { type: 'filesystem', location: '/var/cache/blobs', state: 'ok', lastError: null, since: null, errors: 0 },
    memory: { readBufferBudget: 64 * 2 ** 20, readBufferHeldBytes: 0, readBufferAllocatedBytes: 0, downloadsReading: 0, downloadsWaiting: 0 },
    mirrors: [
      {
        name,
        path: '/m/',
        upstream: 'http://upstream.example/"x"/, http://second.example/',
        upstreams: [
          { url: 'http://upstream.example/"x"/', state: 'cooling', coolingUntil: '2026-01-01T00:05:00.000Z', lastError: `upstream: ${error}`, lastErrorAt: '2026-01-01T00:00:00.000Z' },
          { url: 'http://second.example/', state: 'ok', coolingUntil: null, lastError: null, lastErrorAt: null },
        ],
        upstreamReachable: false,
        maasProblems: [],
        metadataUpdated: null,
        metadataError: error,
        metadataWarnings: [`inconsistent signed metadata: ${error}`],
        selection: { products: 1, versions: 1, files: 2, bytes: 3072, cachedFiles: 1, cachedBytes: 2048 },
        prefetch: { ...IDLE_PREFETCH, state: 'running', filesDone: 1, filesTotal: 2, bytesDone: 2048, bytesTotal: 3072, errors: ['<b>boom</b>'] },
      },
    ],
  })

  test('escapes every value taken from configuration, upstream or errors', () => {
    const html = renderStatusPage({
      report: report('<script>alert(1)</script>', 'bad "sig" & <img src=x onerror=alert(2)>'),
      versions: () => [{ product: 'p"><svg onload=alert(3)>', label: "o'neil", version: '<v>', files: 2, bytes: 3072, cachedFiles: 1, cachedBytes: 2048 }],
    })
    assert.ok(!html.includes('<script>alert'), 'no injected script element')
    assert.ok(!html.includes('<img src=x'), 'no injected img element')
    assert.ok(!html.includes('<svg'), 'no injected svg element')
    assert.ok(!html.includes('<b>boom'), 'no injected markup from prefetch errors')
    assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'))
    assert.ok(html.includes('bad &quot;sig&quot; &amp; &lt;img'))
    assert.ok(html.includes('inconsistent signed metadata: bad &quot;sig&quot;'), 'warnings are shown, escaped')
    assert.ok(html.includes('upstream: bad &quot;sig&quot; &amp; &lt;img'), "an upstream's last error is shown, escaped")
    assert.ok(html.includes('href="http://upstream.example/&quot;x&quot;/"'))
    assert.ok(html.includes('o&#39;neil'))
  })

  test('shows hit ratio, a progress bar and a partly cached version', () => {
    const html = renderStatusPage({
      report: report('stable', 'upstream down'),
      versions: () => [{ product: 'p', label: 'ubuntu noble amd64', version: '20250201', files: 2, bytes: 3072, cachedFiles: 1, cachedBytes: 2048 }],
    })
    assert.match(html, /<dd>75\.0 %<\/dd>/)
    assert.match(html, /role="progressbar"[^>]*aria-valuenow="67"/)
    assert.match(html, /partly cached/)
    assert.match(html, /upstream unreachable/)
  })

  test('a replica of a fleet shows the fleet: replicas (a disagreeing one named), lease holders and fills, escaped', () => {
    const fleet = {
      replica: { id: 'r-1', advertise: 'http://10.0.0.1:8080/' },
      replicas: [
        { id: 'r-1', advertise: 'http://10.0.0.1:8080/', startedAt: '2026-01-01T00:00:00.000Z', version: '1.0.0', self: true, disagrees: null },
        { id: 'r-2', advertise: 'http://10.0.0.2:8080/"><script>x</script>', startedAt: '2026-01-01T00:00:00.000Z', version: '1.0.0', self: false, disagrees: 'signingKey: replica r-2 signs with key <B>' },
      ],
      leases: [
        { name: 'prefetch:stable', mirror: 'stable', holder: 'r-2', holderAdvertise: 'http://10.0.0.2:8080/', heldHere: false, expiresAt: '2026-01-01T00:00:30.000Z' },
        { name: 'gc', mirror: null, holder: 'r-1', holderAdvertise: 'http://10.0.0.1:8080/', heldHere: true, expiresAt: '2026-01-01T00:00:30.000Z' },
      ],
      fills: [{ sha256: 'a'.repeat(64), path: 'noble/<i>/squashfs', size: 4096, owner: 'http://10.0.0.2:8080/', since: '2026-01-01T00:00:00.000Z' }],
      checkedAt: '2026-01-01T00:00:00.000Z',
      error: 'cannot list <fills>',
    }
    const html = renderStatusPage({ report: { ...report('stable', 'none'), fleet }, versions: () => [], now: Date.parse('2026-01-01T00:01:00.000Z') })
    assert.ok(!html.includes('<script>x'), 'no injected script element')
    assert.match(html, /<section class="card" id="fleet">/)
    assert.match(html, /<span class="badge bad">2 replicas, 1 disagreeing<\/span>/)
    assert.match(html, /<tr data-replica="r-2">[\s\S]*?<span class="badge bad">disagrees<\/span><br><span class="small">signingKey: replica r-2 signs with key &lt;B&gt;<\/span>/)
    assert.match(html, /<tr data-lease="prefetch:stable">[\s\S]*?http:\/\/10\.0\.0\.2:8080\/<\/td>/)
    assert.match(html, /<tr data-lease="gc">[\s\S]*?this replica/)
    assert.match(html, /<code>noble\/&lt;i&gt;\/squashfs<\/code>/)
    assert.match(html, /Cannot read the fleet's records:<\/strong> cannot list &lt;fills&gt;/)
    // A proxy on its own has no fleet section.
    assert.ok(!renderStatusPage({ report: report('stable', 'none'), versions: () => [] }).includes('id="fleet"'))
  })

  test('says when the configuration in force was loaded', () => {
    const html = renderStatusPage({ report: report('stable', 'upstream down'), versions: () => [] })
    assert.match(html, /configuration loaded at <time datetime="2026-01-01T00:00:00\.000Z">2026-01-01T00:00:00\.000Z<\/time>/)
  })
})

describe('GET /status in a browser', () => {
  let h: Harness
  before(async () => {
    h = await startHarness()
  })
  after(async () => {
    await h.close()
  })

  test('answers HTML to a browser and JSON to curl, varying on Accept', async () => {
    const html = await fetch(`${h.proxy.url}/status`, { headers: { accept: 'text/html,*/*;q=0.8' } })
    assert.equal(html.status, 200)
    assert.match(html.headers.get('content-type') ?? '', /^text\/html/)
    assert.equal(html.headers.get('vary'), 'accept')
    const page = await html.text()
    assert.match(page, /<table class="versions">/)
    const json = await fetch(`${h.proxy.url}/status`, { headers: { accept: '*/*' } })
    assert.match(json.headers.get('content-type') ?? '', /^application\/json/)
    const report = (await json.json()) as { mirrors: unknown[]; configLoaded: string }
    assert.equal(report.mirrors.length, 1)
    assert.ok(page.includes(`configuration loaded at <time datetime="${report.configLoaded}">`), `the page shows configLoaded ${report.configLoaded}`)
  })

  test('lists one table row per selected version, with what is cached', () => {
    const publication = h.proxy.core.mirrors[0]?.current()
    const rows = versionRows(publication, h.proxy.core.store)
    // DEFAULT_SELECTIONS: noble amd64 ga and hwe, grub and pxelinux, newest version each.
    assert.deepEqual(rows.map((row) => `${row.label} ${row.version}`).sort(), [
      'grub-efi arm64 uefi 20250201.0',
      'grub-efi-signed amd64 uefi 20250201.0',
      'pxelinux i386 pxe 20250201.0',
      'ubuntu noble amd64 ga-24.04 20250201',
      'ubuntu noble amd64 hwe-24.04 20250201',
    ])
    for (const row of rows) {
      const expected = h.tree.items.filter((item) => item.product === row.product && item.version === row.version)
      assert.equal(row.files, expected.length)
      assert.equal(row.bytes, expected.reduce((sum, item) => sum + item.size, 0))
      assert.equal(row.cachedFiles, expected.filter((item) => h.proxy.core.store.index.get(item.sha256) !== undefined).length)
    }
  })

  test('renders in headless Chromium with the mirror and its versions, and updates itself', { skip: CHROMIUM === undefined && 'chromium is not installed (apt-get install chromium)' }, async () => {
    // A gate in front of the proxy: the page loads, the test changes what the
    // proxy reports, and only then is the page's own refresh let through.
    let requests = 0
    let release: () => void = () => undefined
    const released = new Promise<void>((resolve) => (release = resolve))
    let firstServed: () => void = () => undefined
    const served = new Promise<void>((resolve) => (firstServed = resolve))
    const target = new URL(h.proxy.url)
    const gate: Server = createServer((req, res) => {
      const n = ++requests
      void (n > 1 ? released : Promise.resolve()).then(() => {
        const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(res)
          answer.on('end', () => n === 1 && firstServed())
        })
        req.pipe(upstream)
      })
    })
    await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(gate.address() as AddressInfo).port}/status`
    try {
      const dumping = chromium(['--virtual-time-budget=30000', '--dump-dom', url])
      await served
      h.proxy.core.traffic.hits += 41
      h.proxy.core.traffic.misses += 1
      release()
      const dom = await dumping
      assert.match(dom, /<section class="card mirror" data-mirror="stable">/)
      for (const label of ['ubuntu noble amd64 ga-24.04', 'ubuntu noble amd64 hwe-24.04', 'grub-efi-signed amd64 uefi', 'pxelinux i386 pxe']) {
        assert.ok(dom.includes(`<span class="label">${label}</span>`), `row for ${label}`)
      }
      assert.ok(requests >= 2, 'the page fetched the status again by itself')
      assert.match(dom, /title="41 hits, 1 misses"/, 'the refreshed figures replaced the first ones')
      assert.match(dom, /id="live-text">live · /, 'the page says it is live')
    } finally {
      release()
      await new Promise<void>((resolve) => gate.close(() => resolve()))
      gate.closeAllConnections()
    }
  })

  test('takes a screenshot at phone width', { skip: CHROMIUM === undefined && 'chromium is not installed (apt-get install chromium)' }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'status-page-shot-'))
    try {
      const file = join(dir, 'status.png')
      await chromium(['--hide-scrollbars', '--window-size=390,1200', `--screenshot=${file}`, `${h.proxy.url}/status`])
      const png = await readFile(file)
      assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
      assert.equal(png.readUInt32BE(16), 390, 'rendered at phone width')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
