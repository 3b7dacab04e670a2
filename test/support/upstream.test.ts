import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import type { IncomingHttpHeaders } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { productItems } from '../../src/streams/flatten.js'
import { SignatureError, readKeyring, verifyClearsigned } from '../../src/streams/signature.js'
import type { IndexDocument } from '../../src/streams/types.js'
import { gpgvFile } from './gpgv.js'
import { startUpstreamServer } from './upstream-server.js'
import type { UpstreamServer } from './upstream-server.js'
import { buildUpstreamTree } from './upstream-tree.js'
import type { UpstreamTree } from './upstream-tree.js'

const IMAGES = 'com.ubuntu.maas:stable:v3:download'
const BOOTLOADERS = 'com.ubuntu.maas:stable:1:bootloader-download'
const CENTOS = 'com.ubuntu.maas:stable:centos-bases-download'

let tree: UpstreamTree
let dir: string

before(async () => {
  tree = await buildUpstreamTree()
  dir = await mkdtemp(join(tmpdir(), 'upstream-tree-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

const text = (path: string) => {
  const content = tree.files.get(path)
  assert.ok(content !== undefined, `tree has ${path}`)
  return content.toString('utf8')
}
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

describe('buildUpstreamTree', () => {
  test('lists the three content ids in index.json and index.sjson with matching extensions', () => {
    assert.deepEqual(Object.keys(tree.index.index).sort(), [BOOTLOADERS, CENTOS, IMAGES])
    const signedIndex = JSON.parse(text('streams/v1/index.sjson').split('\n\n').slice(1).join('\n\n').split('-----BEGIN PGP SIGNATURE-----')[0]!) as IndexDocument
    for (const id of [IMAGES, BOOTLOADERS, CENTOS]) {
      assert.equal(tree.index.index[id]?.datatype, 'image-ids')
      assert.equal(tree.index.index[id]?.path, `streams/v1/${id}.json`)
      assert.equal(signedIndex.index[id]?.path, `streams/v1/${id}.sjson`)
      assert.equal(tree.productsPath(id, 'sjson'), `streams/v1/${id}.sjson`)
      assert.deepEqual(tree.index.index[id]?.products, Object.keys(tree.products.get(id)!.products).sort())
    }
    assert.deepEqual(JSON.parse(text('streams/v1/index.json')), tree.index)
  })

  test('signs every .sjson with its key, over exactly the .json text', async () => {
    for (const format of ['binary', 'armored'] as const) {
      const path = await tree.writeKeyring(join(dir, format), format)
      const keys = await readKeyring(await readFile(path), path)
      const products = [...tree.products.keys()].map((id) => `streams/v1/${id}`)
      for (const base of products) {
        assert.equal(await verifyClearsigned(text(`${base}.sjson`), keys), text(`${base}.json`))
      }
      const index = await verifyClearsigned(text('streams/v1/index.sjson'), keys)
      assert.deepEqual(JSON.parse(index).index[IMAGES].path, `streams/v1/${IMAGES}.sjson`)
    }
  })

  test('writes a keyring the real gpgv accepts the .sjson files with', async () => {
    const keyring = await tree.writeKeyring(join(dir, 'gpgv'))
    for (const path of ['streams/v1/index.sjson', tree.productsPath(IMAGES, 'sjson'), tree.productsPath(BOOTLOADERS, 'sjson')]) {
      const file = join(dir, 'gpgv', 'signed.sjson')
      await writeFile(file, text(path))
      const result = await gpgvFile(keyring, file)
      assert.ok(result.ok, `${path}: ${result.stderr}`)
    }
  })

  test('describes every item with the size and checksums of its file', () => {
    // Images: 2 releases x 2 arches x (ga, hwe) x 2 versions x 4 items; bootloaders: 4 items x 2 versions; centos: 2 versions x 2 items.
    assert.equal(tree.items.length, 2 * 2 * 2 * 2 * 4 + 4 * 2 + 2 * 2)
    for (const item of tree.items) {
      const content = tree.files.get(item.path)
      assert.ok(content !== undefined, item.path)
      assert.equal(content.length, item.size, item.path)
      assert.equal(sha256(content), item.sha256, item.path)
      const entry = tree.products.get(item.contentId)?.products[item.product]?.versions[item.version]?.items[item.item]
      assert.deepEqual(
        { ftype: entry?.ftype, path: entry?.path, size: entry?.size, sha256: entry?.sha256, md5: entry?.md5 },
        { ftype: item.ftype, path: item.path, size: item.size, sha256: item.sha256, md5: createHash('md5').update(content).digest('hex') },
      )
    }
    const itemPaths = new Set(tree.items.map((item) => item.path))
    const dataFiles = [...tree.files.keys()].filter((path) => !path.startsWith('streams/'))
    assert.deepEqual(dataFiles.sort(), [...itemPaths].sort())
    const flat = [...tree.products.values()].flatMap((doc) => Object.entries(doc.products).flatMap(([name, product]) => productItems(doc, name, product)))
    assert.equal(flat.length, tree.items.length)
  })

  test('shares squashfs and manifest between the ga and hwe products, not the kernels', () => {
    const squashfs = tree.items.filter((item) => item.path === 'noble/amd64/20250201/squashfs')
    assert.deepEqual(squashfs.map((item) => item.product).sort(), [
      'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04',
      'com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04',
    ])
    assert.ok(squashfs.every((item) => item.ftype === 'squashfs' && item.item === 'squashfs'))
    assert.equal(tree.items.filter((item) => item.path === 'noble/amd64/20250201/squashfs.manifest' && item.ftype === 'manifest').length, 2)
    const kernels = tree.items.filter((item) => item.ftype === 'boot-kernel' && item.path.startsWith('noble/amd64/20250201/'))
    assert.deepEqual(kernels.map((item) => item.path).sort(), [
      'noble/amd64/20250201/ga-24.04/generic/boot-kernel',
      'noble/amd64/20250201/hwe-24.04/generic/boot-kernel',
    ])
    assert.notEqual(kernels[0]?.sha256, kernels[1]?.sha256)
  })

  test('uses the attributes and names of the real MAAS streams', () => {
    const images = tree.products.get(IMAGES)!
    const { versions, ...hwe } = images.products['com.ubuntu.maas.stable:v3:boot:22.04:arm64:hwe-22.04']!
    assert.deepEqual(hwe, {
      arch: 'arm64',
      kflavor: 'generic',
      krel: 'jammy',
      label: 'stable',
      os: 'ubuntu',
      release: 'jammy',
      release_codename: 'Jammy Jellyfish',
      release_title: '22.04 LTS',
      subarch: 'hwe-22.04',
      subarches: 'generic,ga-22.04,hwe-22.04',
      support_eol: '2027-04-30',
      version: '22.04',
    })
    assert.deepEqual(Object.keys(versions), ['20250101', '20250201'])
    const bootloaders = tree.products.get(BOOTLOADERS)!
    assert.equal(bootloaders.content_id, BOOTLOADERS)
    const pxe = bootloaders.products['com.ubuntu.maas.stable:1:pxelinux:pxe:i386']!
    assert.equal(pxe.arches, 'amd64, i386')
    assert.equal(pxe.os, 'pxelinux')
    const grub = bootloaders.products['com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64']!
    assert.deepEqual([grub.os, grub.arch, grub.arches, grub['bootloader-type']], ['grub-efi-signed', 'amd64', 'amd64', 'uefi'])
    assert.deepEqual(Object.keys(grub.versions['20250201.0']?.items ?? {}), ['grub2-signed', 'shim-signed'])
    const item = grub.versions['20250201.0']?.items['grub2-signed']
    assert.equal(item?.path, 'bootloaders/uefi/amd64/20250201.0/grub2-signed.tar.xz')
    assert.equal(item?.ftype, 'archive.tar.xz')
    assert.deepEqual([item?.src_package, item?.src_release, typeof item?.src_version], ['grub2-signed', 'focal', 'string'])
    assert.deepEqual(Object.keys(bootloaders.products['com.ubuntu.maas.stable:1:grub-efi:uefi:arm64']!.versions['20250201.0']!.items), ['grub2'])
    assert.deepEqual(Object.keys(pxe.versions['20250201.0']!.items), ['syslinux'])
    for (const doc of tree.products.values()) assert.equal(doc.datatype, 'image-ids')
    const centos = tree.products.get(CENTOS)!
    const { versions: centosVersions, ...base } = centos.products['com.ubuntu.maas.stable:centos-bases:7.0:amd64']!
    assert.deepEqual(base, {
      arch: 'amd64',
      label: 'stable',
      os: 'centos',
      release: 'centos70',
      release_title: 'CentOS 7',
      subarch: 'generic',
      subarches: 'generic',
      support_eol: '2024-06-30',
      version: '7.0',
    })
    assert.deepEqual(Object.keys(centosVersions), ['20250101_01', '20250201_01'])
    const centosItems = centosVersions['20250201_01']!.items
    assert.deepEqual(Object.keys(centosItems), ['manifest', 'root-tgz'])
    assert.deepEqual([centosItems['root-tgz']?.ftype, centosItems['root-tgz']?.path], ['root-tgz', 'centos/centos70/amd64/20250201_01/root-tgz'])
  })

  test('rebuilds the same bytes from the same options and honours options', async () => {
    const small = { releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250301'], key: tree.key }
    const [a, b] = await Promise.all([buildUpstreamTree(small), buildUpstreamTree({ ...small, stream: 'candidate', sizes: { squashfs: 3_000_000 } })])
    assert.deepEqual(a.files.get('noble/amd64/20250301/ga-24.04/generic/boot-kernel'), b.files.get('noble/amd64/20250301/ga-24.04/generic/boot-kernel'))
    assert.equal(a.files.get('noble/amd64/20250301/squashfs')?.length, 65536)
    assert.equal(b.files.get('noble/amd64/20250301/squashfs')?.length, 3_000_000)
    assert.deepEqual(b.files.get('noble/amd64/20250301/squashfs')?.subarray(0, 65536), a.files.get('noble/amd64/20250301/squashfs'))
    assert.notDeepEqual(a.files.get('noble/amd64/20250301/squashfs'), a.files.get('noble/amd64/20250301/squashfs.manifest')?.subarray(0, 65536))
    assert.deepEqual([...b.products.keys()].sort(), ['com.ubuntu.maas:candidate:1:bootloader-download', 'com.ubuntu.maas:candidate:centos-bases-download', 'com.ubuntu.maas:candidate:v3:download'])
    assert.ok(b.files.has('streams/v1/com.ubuntu.maas:candidate:v3:download.sjson'))
    assert.ok('com.ubuntu.maas.candidate:v3:boot:24.04:amd64:ga-24.04' in b.products.get('com.ubuntu.maas:candidate:v3:download')!.products)
    assert.equal(a.items.length, 2 * 4 + 4 + 2)
    const armOnly = await buildUpstreamTree({ ...small, arches: ['arm64'] })
    // No amd64, no centos-bases product: the content is left out rather than published empty.
    assert.deepEqual([...armOnly.products.keys()].sort(), ['com.ubuntu.maas:stable:1:bootloader-download', 'com.ubuntu.maas:stable:v3:download'])
  })
})

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  /** The body arrived whole, as framed by the headers. */
  complete: boolean
  error?: string
}

/** One request on a fresh connection; `abortAfterMs` gives up on a silent body. */
function fetchRaw(url: string, options: { method?: string; headers?: Record<string, string>; abortAfterMs?: number } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false })
    const timer = options.abortAfterMs === undefined ? undefined : setTimeout(() => req.destroy(), options.abortAfterMs)
    let error: string | undefined
    let responded = false
    req.on('error', (e: NodeJS.ErrnoException) => {
      // After the headers, a broken connection shows on the answer as an incomplete body.
      if (responded) return void (error = e.code ?? e.message)
      clearTimeout(timer)
      reject(e)
    })
    req.on('response', (res) => {
      responded = true
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message))
      res.on('close', () => {
        clearTimeout(timer)
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete, ...(error === undefined ? {} : { error }) })
      })
    })
    req.end()
  })
}

/** A GET over a bare socket, to tell a clean end of connection (FIN) from a reset (RST). */
function rawGet(url: string): Promise<{ head: string; body: Buffer; ending: 'end' | 'reset' }> {
  const { hostname, port, pathname } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    const chunks: Buffer[] = []
    const finish = (ending: 'end' | 'reset') => {
      const all = Buffer.concat(chunks)
      const split = all.indexOf('\r\n\r\n')
      resolve({ head: all.subarray(0, split).toString(), body: all.subarray(split + 4), ending })
    }
    socket.on('data', (chunk) => chunks.push(chunk))
    socket.on('end', () => finish('end'))
    socket.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? finish('reset') : reject(error)))
    socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`)
  })
}

describe('startUpstreamServer', () => {
  const kernel = 'noble/amd64/20250201/ga-24.04/generic/boot-kernel'
  const squashfs = 'noble/amd64/20250201/squashfs'
  let server: UpstreamServer
  const url = (path: string) => `${server.url}${path}`
  const content = (path: string) => server.tree.files.get(path)!

  before(async () => {
    server = await startUpstreamServer(tree)
  })
  after(async () => {
    await server.close()
  })

  test('serves files with length, type, ETag and Last-Modified, and counts requests', async () => {
    server.resetCounters()
    const answer = await fetchRaw(url(kernel))
    assert.equal(answer.status, 200)
    assert.deepEqual(answer.body, content(kernel))
    assert.equal(answer.headers['content-length'], String(content(kernel).length))
    assert.equal(answer.headers['content-type'], 'application/octet-stream')
    assert.equal(answer.headers.etag, `"${sha256(content(kernel))}"`)
    assert.ok(!Number.isNaN(Date.parse(answer.headers['last-modified'] ?? '')))
    assert.equal((await fetchRaw(url('streams/v1/index.json'))).headers['content-type'], 'application/json')
    const sjson = await fetchRaw(url(encodeURI(tree.productsPath(IMAGES, 'sjson')).replaceAll(':', '%3A')))
    assert.equal(sjson.headers['content-type'], 'text/plain')
    assert.equal(sjson.body.toString(), text(tree.productsPath(IMAGES, 'sjson')))
    assert.equal(server.requestCount(kernel), 1)
    assert.equal(server.requestCount(), 3)
    assert.equal(server.bytesSent(kernel), content(kernel).length)
  })

  test('answers HEAD with headers only, counted as a request', async () => {
    server.resetCounters()
    const answer = await fetchRaw(url(squashfs), { method: 'HEAD' })
    assert.equal(answer.status, 200)
    assert.equal(answer.headers['content-length'], '65536')
    assert.equal(answer.body.length, 0)
    assert.equal(server.requestCount(squashfs), 1)
    assert.equal(server.bytesSent(squashfs), 0)
  })

  test('answers byte ranges with 206 and out-of-range ones with 416', async () => {
    server.resetCounters()
    const open = await fetchRaw(url(squashfs), { headers: { range: 'bytes=60000-' } })
    assert.equal(open.status, 206)
    assert.equal(open.headers['content-range'], 'bytes 60000-65535/65536')
    assert.deepEqual(open.body, content(squashfs).subarray(60000))
    const closed = await fetchRaw(url(squashfs), { headers: { range: 'bytes=10-19' } })
    assert.equal(closed.status, 206)
    assert.equal(closed.headers['content-length'], '10')
    assert.deepEqual(closed.body, content(squashfs).subarray(10, 20))
    const outside = await fetchRaw(url(squashfs), { headers: { range: 'bytes=65536-' } })
    assert.equal(outside.status, 416)
    assert.equal(outside.headers['content-range'], 'bytes */65536')
    assert.deepEqual(server.rangeRequests(squashfs), ['bytes=60000-', 'bytes=10-19', 'bytes=65536-'])
    assert.equal(server.bytesSent(squashfs), 65536 - 60000 + 10)
  })

  test('answers 304 to a matching If-None-Match or a recent If-Modified-Since', async () => {
    const first = await fetchRaw(url(kernel))
    const etag = first.headers.etag!
    const modified = first.headers['last-modified']!
    assert.equal((await fetchRaw(url(kernel), { headers: { 'if-none-match': etag } })).status, 304)
    assert.equal((await fetchRaw(url(kernel), { headers: { 'if-none-match': `"other", ${etag}` } })).status, 304)
    assert.equal((await fetchRaw(url(kernel), { headers: { 'if-none-match': '"other"' } })).status, 200)
    assert.equal((await fetchRaw(url(kernel), { headers: { 'if-modified-since': modified } })).status, 304)
    const earlier = new Date(Date.parse(modified) - 1000).toUTCString()
    assert.equal((await fetchRaw(url(kernel), { headers: { 'if-modified-since': earlier } })).status, 200)
  })

  test('answers 404 for unknown paths, counting them', async () => {
    server.resetCounters()
    const answer = await fetchRaw(url('noble/amd64/19990101/squashfs'))
    assert.equal(answer.status, 404)
    assert.equal(server.requestCount('noble/amd64/19990101/squashfs'), 1)
  })

  test('serves under a prefix and 404s outside it', async () => {
    const prefixed = await startUpstreamServer(tree, { prefix: '/maas/images/ephemeral-v3/stable' })
    try {
      assert.match(prefixed.url, /^http:\/\/127\.0\.0\.1:\d+\/maas\/images\/ephemeral-v3\/stable\/$/)
      assert.equal((await fetchRaw(`${prefixed.url}streams/v1/index.sjson`)).status, 200)
      const origin = new URL(prefixed.url).origin
      assert.equal((await fetchRaw(`${origin}/streams/v1/index.sjson`)).status, 404)
      // The old simplestreams client's missing slash must be a 404.
      assert.equal((await fetchRaw(`${origin}/maas/images/ephemeral-v3/stablestreams/v1/index.sjson`)).status, 404)
    } finally {
      await prefixed.close()
    }
  })

  test('swaps trees at run time and moves Last-Modified forward', async () => {
    const before_ = await fetchRaw(url('streams/v1/index.json'))
    const newer = await buildUpstreamTree({ key: tree.key, versions: ['20250201', '20250301'] })
    server.setTree(newer)
    try {
      assert.equal(server.tree, newer)
      assert.equal((await fetchRaw(url('noble/amd64/20250301/squashfs'))).status, 200)
      assert.equal((await fetchRaw(url('noble/amd64/20250101/squashfs'))).status, 404)
      const after_ = await fetchRaw(url('streams/v1/index.json'), { headers: { 'if-modified-since': before_.headers['last-modified']! } })
      assert.equal(after_.status, 200)
      assert.ok(Date.parse(after_.headers['last-modified']!) > Date.parse(before_.headers['last-modified']!))
    } finally {
      server.setTree(tree)
    }
  })

  describe('faults', () => {
    const withFault = async <T>(path: string, fault: Parameters<UpstreamServer['setFault']>[1], run: () => Promise<T>): Promise<T> => {
      server.setFault(path, fault)
      try {
        return await run()
      } finally {
        server.setFault(path, undefined)
      }
    }

    test('delay holds the headers back', async () => {
      const started = Date.now()
      const answer = await withFault(kernel, { kind: 'delay', ms: 300 }, () => fetchRaw(url(kernel)))
      assert.ok(Date.now() - started >= 290)
      assert.deepEqual(answer.body, content(kernel))
    })

    test('rate throttles the body', async () => {
      const started = Date.now()
      const answer = await withFault(squashfs, { kind: 'rate', bytesPerSecond: 128 * 1024 }, () => fetchRaw(url(squashfs)))
      const elapsed = Date.now() - started
      assert.deepEqual(answer.body, content(squashfs))
      // 64 KiB at 128 KiB/s: about half a second, less the last chunk.
      assert.ok(elapsed >= 400 && elapsed < 2000, `took ${elapsed} ms`)
    })

    test('setDefaultRate throttles every file without a rate fault', async () => {
      server.setDefaultRate(64 * 1024)
      try {
        const started = Date.now()
        await fetchRaw(url('noble/amd64/20250201/ga-24.04/generic/boot-initrd'))
        assert.ok(Date.now() - started >= 90)
      } finally {
        server.setDefaultRate(undefined)
      }
      const started = Date.now()
      await fetchRaw(url('noble/amd64/20250201/ga-24.04/generic/boot-initrd'))
      assert.ok(Date.now() - started < 90)
    })

    test('stall sends some bytes, then nothing while keeping the connection open', async () => {
      server.resetCounters()
      const answer = await withFault(squashfs, { kind: 'stall', afterBytes: 1000 }, () => fetchRaw(url(squashfs), { abortAfterMs: 400 }))
      assert.equal(answer.status, 200)
      assert.equal(answer.headers['content-length'], '65536')
      assert.deepEqual(answer.body, content(squashfs).subarray(0, 1000))
      assert.equal(answer.complete, false)
      assert.equal(server.bytesSent(squashfs), 1000)
    })

    test('stall with no bytes still sends the headers', async () => {
      const answer = await withFault(squashfs, { kind: 'stall', afterBytes: 0 }, () => fetchRaw(url(squashfs), { abortAfterMs: 200 }))
      assert.equal(answer.status, 200)
      assert.equal(answer.body.length, 0)
    })

    test('status answers with the given status', async () => {
      for (const status of [404, 500, 503]) {
        const answer = await withFault(kernel, { kind: 'status', status }, () => fetchRaw(url(kernel)))
        assert.equal(answer.status, status)
      }
    })

    test('truncate advertises the full length, then ends the connection cleanly', async () => {
      const answer = await withFault(squashfs, { kind: 'truncate', afterBytes: 5000 }, () => rawGet(url(squashfs)))
      assert.match(answer.head, /^HTTP\/1\.1 200/)
      assert.match(answer.head, /content-length: 65536/i)
      assert.equal(answer.ending, 'end')
      assert.deepEqual(answer.body, content(squashfs).subarray(0, 5000))
    })

    test('reset sends some bytes, then resets the connection', async () => {
      const answer = await withFault(squashfs, { kind: 'reset', afterBytes: 5000 }, () => rawGet(url(squashfs)))
      assert.equal(answer.ending, 'reset')
      assert.ok(answer.body.length <= 5000)
      assert.deepEqual(answer.body, content(squashfs).subarray(0, answer.body.length))
      const viaHttp = await withFault(squashfs, { kind: 'reset', afterBytes: 5000 }, () => fetchRaw(url(squashfs)))
      assert.equal(viaHttp.complete, false)
      assert.equal(viaHttp.error, 'ECONNRESET')
    })

    test('corrupt flips exactly one byte', async () => {
      const answer = await withFault(kernel, { kind: 'corrupt', offset: 100 }, () => fetchRaw(url(kernel)))
      assert.equal(answer.body.length, content(kernel).length)
      const differing = [...answer.body.keys()].filter((i) => answer.body[i] !== content(kernel)[i])
      assert.deepEqual(differing, [100])
      assert.equal(answer.headers.etag, `"${sha256(content(kernel))}"`)
    })

    test('extra sends more than the file, chunked without Content-Length', async () => {
      const answer = await withFault(kernel, { kind: 'extra', bytes: 300 }, () => fetchRaw(url(kernel)))
      assert.equal(answer.headers['content-length'], undefined)
      assert.equal(answer.headers['transfer-encoding'], 'chunked')
      assert.equal(answer.body.length, content(kernel).length + 300)
      assert.deepEqual(answer.body.subarray(0, content(kernel).length), content(kernel))
    })

    test('tamper changes the signed text of a .sjson but keeps it readable', async () => {
      const path = tree.productsPath(IMAGES, 'sjson')
      const answer = await withFault(path, { kind: 'tamper' }, () => fetchRaw(url(path)))
      const original = text(path)
      const served = answer.body.toString()
      assert.equal(served.length, original.length)
      assert.notEqual(served, original)
      assert.equal(served.slice(served.indexOf('-----BEGIN PGP SIGNATURE-----')), original.slice(original.indexOf('-----BEGIN PGP SIGNATURE-----')))
      const signedJson = served.split('\n\n').slice(1).join('\n\n').split('-----BEGIN PGP SIGNATURE-----')[0]!
      assert.doesNotThrow(() => JSON.parse(signedJson))
      await assert.rejects(verifyClearsigned(served, [tree.key.publicKey]), (error: unknown) => error instanceof SignatureError && error.reason === 'bad-signature')
    })

    test('unconditional answers a matching If-None-Match with 200 and the same bytes', async () => {
      const etag = (await fetchRaw(url(kernel))).headers.etag as string
      const answer = await withFault(kernel, { kind: 'unconditional' }, () => fetchRaw(url(kernel), { headers: { 'if-none-match': etag } }))
      assert.equal(answer.status, 200)
      assert.deepEqual(answer.body, content(kernel))
      assert.equal(answer.headers.etag, etag)
    })

    test('a * fault covers every path; a path of its own takes precedence', async () => {
      server.setFault('*', { kind: 'status', status: 503 })
      server.setFault(kernel, { kind: 'corrupt', offset: 0 })
      try {
        assert.equal((await fetchRaw(url('streams/v1/index.sjson'))).status, 503)
        assert.equal((await fetchRaw(url(kernel))).status, 200)
      } finally {
        server.setFault('*', undefined)
        server.setFault(kernel, undefined)
      }
      assert.equal((await fetchRaw(url('streams/v1/index.sjson'))).status, 200)
    })
  })

  test('down refuses connections and drops stalled ones; up listens on the same port', async () => {
    server.setFault(squashfs, { kind: 'stall', afterBytes: 10 })
    try {
      const stalled = fetchRaw(url(squashfs))
      await new Promise((resolve) => setTimeout(resolve, 100))
      await server.down()
      const answer = await stalled
      assert.equal(answer.complete, false)
      await assert.rejects(fetchRaw(url(kernel)), { code: 'ECONNREFUSED' })
      await server.up()
      assert.equal((await fetchRaw(url(kernel))).status, 200)
    } finally {
      server.setFault(squashfs, undefined)
    }
  })

  test('close ends stalled and delayed responses instead of hanging', async () => {
    const closing = await startUpstreamServer(tree)
    closing.setFault(squashfs, { kind: 'stall', afterBytes: 10 })
    closing.setFault(kernel, { kind: 'delay', ms: 60_000 })
    const stalled = fetchRaw(`${closing.url}${squashfs}`)
    const delayed = fetchRaw(`${closing.url}${kernel}`).then(
      () => 'answered',
      (error: NodeJS.ErrnoException) => error.code,
    )
    await new Promise((resolve) => setTimeout(resolve, 100))
    const started = Date.now()
    await closing.close()
    assert.ok(Date.now() - started < 1000)
    assert.equal((await stalled).complete, false)
    assert.equal(await delayed, 'ECONNRESET')
  })
})
