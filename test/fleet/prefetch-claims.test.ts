/**
 * Three replicas that all prefetch the same selection at once (each runs its
 * pass at start-up, four files at a time): the fill claims make every file
 * cross the upstream link once, so upstream bytes are 1.00x the selection's
 * size, and everything in the bucket is verified.
 */

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { startFleet } from '../support/fleet.js'
import { rawRequest } from '../support/http.js'

const MiB = 1024 * 1024

test('3 replicas prefetching one selection at once fetch it from upstream once: upstream bytes = 1.00x the selection', { timeout: 180_000 }, async () => {
  const fleet = await startFleet({ prefetchOnStart: true, tree: { sizes: { squashfs: 2 * MiB, initrd: MiB, kernel: 512 * 1024 } } })
  try {
    const metrics = async (index: number) => (await rawRequest(fleet.replicas[index]?.url as string, '/metrics')).body.toString()
    const read = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
    const selectionBytes = read(await metrics(0), 'sstream_proxy_selection_bytes{mirror="stable"}')
    assert.ok(selectionBytes > 10 * MiB, `selection of ${selectionBytes} bytes`)
    const deadline = Date.now() + 120_000
    for (;;) {
      const texts = await Promise.all(fleet.replicas.map((replica) => metrics(replica.index)))
      const passesDone = texts.every((text) => read(text, 'sstream_proxy_prefetch_running{mirror="stable"}') === 0 && read(text, 'sstream_proxy_active_fills') === 0)
      const stored = (await fleet.storedObjects()).reduce((sum, object) => sum + object.size, 0)
      if (passesDone && stored === selectionBytes) break
      assert.ok(Date.now() < deadline, `prefetch not done after 120 s: ${stored} of ${selectionBytes} bytes stored`)
      await sleep(500)
    }
    const texts = await Promise.all(fleet.replicas.map((replica) => metrics(replica.index)))
    const upstreamBytes = texts.reduce((sum, text) => sum + read(text, 'sstream_proxy_upstream_bytes_total'), 0)
    const peerFills = texts.reduce((sum, text) => sum + read(text, 'sstream_proxy_fleet_peer_fills_total'), 0)
    console.log(`selection ${selectionBytes} bytes; upstream ${upstreamBytes} bytes (${(upstreamBytes / selectionBytes).toFixed(2)}x); fills from a peer ${peerFills}`)
    assert.equal(upstreamBytes, selectionBytes)
    for (const item of fleet.tree.items) assert.ok(fleet.upstream.requestCount(item.path) <= 1, `${item.path} fetched ${fleet.upstream.requestCount(item.path)} times`)
    for (const object of await fleet.storedObjects()) assert.equal(object.sha256, object.name, `object ${object.name} holds other bytes`)
  } finally {
    await fleet.close()
  }
})
