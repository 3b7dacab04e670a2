/**
 * The proxy with its cache in a real Ceph RGW bucket: misses fill into the
 * bucket, hits stream from it, and the faults of issue 15 — the gateway
 * stopped mid-fill, down at start-up, down for hits — end as broken
 * connections (never bad bytes), with metadata still served, /status and
 * /metrics saying what the store answered, and recovery without a restart.
 */

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import type { Config } from '../../src/config/types.js'
import { MIRROR_PATH, startHarness, type Harness, type HarnessOptions } from '../support/proxy-harness.js'
import { rawRequest, sha256 } from '../support/http.js'
import { startCephRgw, type CephRgw } from '../support/ceph-rgw.js'
import type { TreeItem } from '../support/upstream-tree.js'
import type { ProductsDocument } from '../../src/streams/types.js'

const BUCKET = 'proxy-cache'
const MiB = 1024 * 1024
let rgw: CephRgw

before(async () => {
  rgw = await startCephRgw()
  process.stderr.write(`# Ceph RGW up in ${rgw.startMs} ms\n`)
  await rgw.createBucket(BUCKET)
})
after(async () => {
  await rgw?.down()
})

/** A proxy on its own prefix of the bucket, so tests never see each other's objects. */
async function startS3Proxy(options: HarnessOptions & { prefix?: string } = {}): Promise<{ h: Harness; prefix: string }> {
  const prefix = options.prefix ?? `${randomUUID()}/`
  const store: Config['store'] = { type: 's3', endpoint: rgw.endpoint, bucket: BUCKET, prefix, region: 'us-east-1', forcePathStyle: true, abandonedUploadAge: 86_400 }
  const h = await startHarness({
    tree: { releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250201'], sizes: { squashfs: 24 * MiB } },
    env: { AWS_ACCESS_KEY_ID: rgw.keys.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.keys.secretAccessKey },
    storeCheckIntervalMs: 200,
    ...options,
    config: { store, ...options.config },
  })
  return { h, prefix }
}

const item = (h: Harness, kind: string) => h.tree.items.find((i) => i.item === kind) as TreeItem
const get = (h: Harness, file: TreeItem, headers?: Record<string, string>) => rawRequest(h.proxy.url, `${MIRROR_PATH}${file.path}`, { headers })

async function objectKeys(prefix: string): Promise<string[]> {
  const page = await rgw.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }))
  return (page.Contents ?? []).map((object) => object.Key?.slice(prefix.length) ?? '')
}
async function uploads(prefix: string): Promise<number> {
  return (await rgw.client().send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: prefix }))).Uploads?.length ?? 0
}
async function status(h: Harness): Promise<{ store: { type: string; state: string; lastError: string | null; errors: number } }> {
  return (await fetch(`${h.proxy.url}/status`, { headers: { accept: 'application/json' } })).json() as never
}
async function metric(h: Harness, name: string): Promise<string | undefined> {
  const text = await (await fetch(`${h.proxy.url}/metrics`)).text()
  return new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]
}
async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

describe('the proxy on an S3 store (Ceph RGW)', () => {
  test('a fleet replica follows the bucket: a version another replica stores is published (publish: "cached") and served as hits, without an upstream transfer', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sstream-fleet-relist-'))
    const secretFile = join(dir, 'fleet-secret')
    await writeFile(secretFile, 'a-fleet-secret-for-this-test\n')
    const fleet = (port: number) => ({ advertise: `http://127.0.0.1:${port}/`, secretFile, claimTtl: 3, leaseTtl: 30 })
    const tree = { releases: [{ release: 'noble', version: '24.04' }], arches: ['amd64'], versions: ['20250101', '20250201'] }
    const noble = { filters: ['arch=amd64', 'release=noble'] }
    // The older version alone in the bucket first, as an earlier selection left it.
    const { h: seed, prefix } = await startS3Proxy({ tree, config: { fleet: fleet(1) }, mirror: { selections: [{ filters: [...noble.filters, 'version_name=20250101'] }] } })
    assert.equal((await seed.proxy.core.prefetcher.run('stable', { gc: false })).result, 'ok')
    await seed.close()
    const { h: filler } = await startS3Proxy({ prefix, tree, config: { fleet: fleet(2) }, mirror: { publish: 'cached', selections: [{ ...noble, max: 1 }] } })
    // Replicas of one bucket have the same mirrors and signing key (the fleet refuses others): the filler's.
    const { h: follower } = await startS3Proxy({ prefix, tree, config: { fleet: fleet(3), mirrors: filler.config.mirrors, signingKey: filler.config.signingKey } }).catch(
      async (error: unknown) => {
        await filler.close()
        throw error
      },
    )
    try {
      const GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04'
      const published = async () => {
        const document = (await (await fetch(follower.url('streams/v1/com.ubuntu.maas:stable:v3:download.json'))).json()) as ProductsDocument
        return Object.keys(document.products[GA]?.versions ?? {})
      }
      assert.deepEqual(await published(), ['20250101'])
      assert.equal((await filler.proxy.core.prefetcher.run('stable', { gc: false })).result, 'ok')
      // The other replica lists the bucket at every store check (every 200 ms here).
      await until(async () => (await published()).includes('20250201'), 'the new version to be published by the other replica')
      const squashfs = filler.tree.items.find((file) => file.path === 'noble/amd64/20250201/squashfs') as TreeItem
      const hit = await get(follower, squashfs)
      assert.equal(hit.headers['x-cache'], 'HIT')
      assert.equal(sha256(hit.body), squashfs.sha256)
      // The filler's pass fetched it; the other replica's hit fetched nothing.
      assert.equal(filler.upstream.requestCount(squashfs.path), 1)
    } finally {
      await follower.close()
      await filler.close()
    }
  })

  test('a miss fills into the bucket under its sha256, the next request is a hit streamed from it, ranges too', async () => {
    const { h, prefix } = await startS3Proxy()
    try {
      const squashfs = item(h, 'squashfs')
      const kernel = item(h, 'boot-kernel')
      for (const file of [squashfs, kernel]) {
        const miss = await get(h, file)
        assert.equal(miss.status, 200)
        assert.equal(miss.headers['x-cache'], 'MISS')
        assert.equal(sha256(miss.body), file.sha256)
      }
      // The last byte goes out once verified; the upload completes right after.
      await h.proxy.core.store.fills.idle()
      assert.deepEqual((await objectKeys(prefix)).sort(), [squashfs.sha256, kernel.sha256].sort())
      const head = await rgw.client().send(new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}${squashfs.sha256}` }))
      assert.equal(head.ContentLength, squashfs.size)
      assert.equal(await uploads(prefix), 0)

      const hit = await get(h, squashfs)
      assert.equal(hit.headers['x-cache'], 'HIT')
      assert.ok(hit.complete)
      assert.equal(sha256(hit.body), squashfs.sha256)
      const range = await get(h, squashfs, { range: 'bytes=17000000-17999999' })
      assert.equal(range.status, 206)
      assert.equal(range.headers['x-cache'], 'HIT')
      const whole = await get(h, squashfs)
      assert.ok(range.body.equals(whole.body.subarray(17_000_000, 18_000_000)))
      assert.equal((await status(h)).store.state, 'ok')
      assert.equal(await metric(h, 'sstream_proxy_store_up'), '1')
    } finally {
      await h.close()
    }
  })

  test('the gateway stopped mid-fill: the client sees a broken connection, no object or upload is left, and the next request fills the file', async () => {
    const { h, prefix } = await startS3Proxy()
    try {
      const squashfs = item(h, 'squashfs')
      // Slow enough that the gateway goes away with the fill well under way.
      h.upstream.setFault(squashfs.path, { kind: 'rate', bytesPerSecond: 8 * MiB })
      const transfer = get(h, squashfs)
      // Gone before the first part (16 MiB) is due: that part's upload fails mid-fill.
      await until(async () => (h.proxy.core.store.fills.active()[0]?.written ?? 0) > 2 * MiB, 'the fill to be under way')
      await rgw.stopGateway()
      let restarted = false
      try {
        const broken = await transfer
        assert.equal(broken.status, 200)
        assert.equal(broken.complete, false, 'the body must break, not end')
        assert.ok(broken.body.length < squashfs.size)
        assert.ok(broken.body.equals(h.tree.files.get(squashfs.path)?.subarray(0, broken.body.length) ?? Buffer.alloc(0)), 'every byte sent is a right byte')
        await rgw.startGateway()
        restarted = true
      } finally {
        if (!restarted) await rgw.startGateway()
      }
      h.upstream.setFault(squashfs.path, undefined)
      assert.deepEqual(await objectKeys(prefix), [])
      assert.equal(await uploads(prefix), 0)
      assert.equal(h.proxy.core.store.index.get(squashfs.sha256), undefined)

      const again = await get(h, squashfs)
      assert.ok(again.complete)
      assert.equal(sha256(again.body), squashfs.sha256)
      await h.proxy.core.store.fills.idle()
      assert.deepEqual(await objectKeys(prefix), [squashfs.sha256])
      assert.ok(Number(await metric(h, 'sstream_proxy_store_errors_total')) >= 1)
    } finally {
      await h.close()
    }
  })

  test('the gateway down for hits: metadata is still served, /status and /metrics say so, and the proxy recovers by itself', async () => {
    const { h } = await startS3Proxy()
    try {
      const kernel = item(h, 'boot-kernel')
      assert.ok((await get(h, kernel)).complete)
      await rgw.stopGateway()
      try {
        const index = await rawRequest(h.proxy.url, `${MIRROR_PATH}streams/v1/index.json`)
        assert.equal(index.status, 200)
        const hit = await get(h, kernel)
        assert.ok(hit.status !== 200 || !hit.complete, 'a hit the store cannot serve must not look complete')
        const report = await status(h)
        assert.equal(report.store.state, 'unavailable')
        assert.match(report.store.lastError ?? '', /ECONNREFUSED/)
        assert.equal(await metric(h, 'sstream_proxy_store_up'), '0')
      } finally {
        await rgw.startGateway()
      }
      // No request needed: the store is asked again until it answers.
      await until(async () => (await status(h)).store.state === 'ok', '/status to say the store answers again')
      const hit = await get(h, kernel)
      assert.equal(hit.headers['x-cache'], 'HIT')
      assert.equal(sha256(hit.body), kernel.sha256)
    } finally {
      await h.close()
    }
  })

  test('the gateway down at start-up: the proxy starts and serves metadata, then reconciles and stores once it returns', async () => {
    await rgw.stopGateway()
    let h: Harness | undefined
    try {
      ;({ h } = await startS3Proxy())
      assert.ok(h.proxy.core.store.startup.storeUnavailable !== undefined)
      assert.equal((await rawRequest(h.proxy.url, `${MIRROR_PATH}streams/v1/index.json`)).status, 200)
      assert.equal((await status(h)).store.state, 'unavailable')
    } finally {
      await rgw.startGateway()
    }
    try {
      const running = h
      await until(async () => (await status(running)).store.state === 'ok', 'the store to be reached')
      const kernel = item(running, 'boot-kernel')
      const miss = await get(running, kernel)
      assert.ok(miss.complete)
      assert.equal(sha256(miss.body), kernel.sha256)
      await running.proxy.core.store.fills.idle()
      assert.equal((await get(running, kernel)).headers['x-cache'], 'HIT')
    } finally {
      await h.close()
    }
  })
})
