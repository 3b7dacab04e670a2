/**
 * One upstream transfer per file across a fleet of 3 `serve` replicas
 * (separate processes) on one real Ceph RGW bucket: clients spread over the
 * replicas share one transfer, a replica killed with -9 while it owns a fill
 * is taken over with a resumed transfer, the internal endpoint refuses
 * requests not signed with the fleet secret, and a file one replica stored is
 * a hit on another.
 */

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { signPeerRequest, FLEET_FILLS_PATH, FLEET_AUTH_HEADER } from '../../src/fleet/peer-fill.js'
import { newestItem, startFleet, type Fleet } from '../support/fleet.js'
import { startHaproxy } from '../support/haproxy.js'
import { rawRequest, sha256, type RawResponse } from '../support/http.js'
import type { TreeItem } from '../support/upstream-tree.js'

const MiB = 1024 * 1024
let fleet: Fleet

before(async () => {
  fleet = await startFleet({ tree: { sizes: { squashfs: 3 * MiB, initrd: 4 * MiB, kernel: 256 * 1024, rootTgz: 64 * 1024 } } })
})
after(async () => {
  await fleet?.close()
})

/** GETs of `item` spread round-robin over the replicas, starting at `first`. */
function spread(item: TreeItem, clients: number, first = 0): Array<Promise<RawResponse>> {
  return Array.from({ length: clients }, (_, client) => rawRequest(fleet.replicas[(first + client) % fleet.replicas.length]?.url as string, `/maas/images/ephemeral-v3/stable/${item.path}`))
}

/** Waits until the bucket holds the object of `item`, for at most `ms`. */
async function storedInBucket(item: TreeItem, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if ((await fleet.storedObjects()).some((object) => object.name === item.sha256)) return
    await sleep(200)
  }
  assert.fail(`${item.path} not in the bucket after ${ms} ms`)
}

async function metric(index: number, name: string): Promise<number> {
  const text = (await rawRequest(fleet.replicas[index]?.url as string, '/metrics')).body.toString()
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
}

describe('a fleet of 3 replicas on one bucket', () => {
  test('the internal endpoint refuses a missing, wrong or old MAC with 403 and no bytes', async () => {
    const item = newestItem(fleet.tree, 'boot-kernel')
    const url = fleet.replicas[2]?.url as string
    const path = `${FLEET_FILLS_PATH}${item.sha256}?from=0`
    const wrongSecret = signPeerRequest('not-the-fleet-secret-at-all', 'GET', path)
    const old = signPeerRequest(fleet.secret, 'GET', path, Date.now() - 120_000)
    const otherPath = signPeerRequest(fleet.secret, 'GET', `${FLEET_FILLS_PATH}${item.sha256}?from=1`)
    for (const [what, headers] of [['none', {}], ['wrong secret', wrongSecret], ['too old', old], ['signed for another offset', otherPath], ['garbage', { [FLEET_AUTH_HEADER]: 'x y' }]] as const) {
      const answer = await rawRequest(url, path, { headers })
      assert.equal(answer.status, 403, what)
      assert.equal(answer.body.toString(), 'forbidden\n', what)
    }
    // Log lines are written in batches: give the last one a moment.
    for (let waited = 0; fleet.logEvents(2, 'fleet request refused').length < 5 && waited < 3_000; waited += 100) await sleep(100)
    assert.equal(fleet.logEvents(2, 'fleet request refused').length, 5)
    // Signed right, it is answered: 404, since replica 2 neither fills nor holds the file.
    assert.equal((await rawRequest(url, path, { headers: signPeerRequest(fleet.secret, 'GET', path) })).status, 404)
    assert.equal(fleet.upstream.requestCount(item.path), 0)
  })

  test('a file stored by one replica is a hit on the others, without an upstream transfer', async () => {
    const item = newestItem(fleet.tree, 'boot-kernel')
    const first = await rawRequest(fleet.replicas[0]?.url as string, `/maas/images/ephemeral-v3/stable/${item.path}`)
    assert.equal(sha256(first.body), item.sha256)
    await storedInBucket(item)
    for (const index of [1, 2]) {
      const answer = await rawRequest(fleet.replicas[index]?.url as string, `/maas/images/ephemeral-v3/stable/${item.path}`)
      assert.equal(answer.status, 200)
      assert.equal(answer.headers['x-cache'], 'HIT', `replica ${index}`)
      assert.equal(sha256(answer.body), item.sha256)
    }
    assert.equal(fleet.upstream.requestCount(item.path), 1)
  })

  test('20 clients on one cold file, round-robin over the replicas: one upstream transfer, verified bytes, first byte within 1 s', async () => {
    const item = newestItem(fleet.tree, 'squashfs')
    // About 2 s for the whole file: the clients arrive while it is being fetched.
    fleet.upstream.setFault(item.path, { kind: 'rate', bytesPerSecond: 1.5 * MiB })
    const answers = await Promise.all(spread(item, 20))
    for (const [client, answer] of answers.entries()) {
      assert.equal(answer.status, 200, `client ${client}`)
      assert.ok(answer.complete, `client ${client}: body complete`)
      assert.equal(sha256(answer.body), item.sha256, `client ${client}: sha256`)
    }
    assert.equal(fleet.upstream.requestCount(item.path), 1, 'upstream transfers of the file')
    assert.equal(fleet.upstream.bytesSent(item.path), item.size, 'upstream bytes of the file')
    const firstBytes = answers.map((answer) => answer.firstByteMs as number)
    assert.ok(Math.max(...firstBytes) < 1_000, `slowest first byte ${Math.round(Math.max(...firstBytes))} ms`)
    console.log(`first byte: median ${Math.round(firstBytes.sort((a, b) => a - b)[10] as number)} ms, max ${Math.round(Math.max(...firstBytes))} ms`)
    const peerFills = (await Promise.all([0, 1, 2].map((index) => metric(index, 'sstream_proxy_fleet_peer_fills_total')))).reduce((a, b) => a + b)
    assert.equal(peerFills, 2, 'the two replicas that did not own the fill followed it')
    await storedInBucket(item)
    const stored = (await fleet.storedObjects()).filter((object) => object.name === item.sha256)
    assert.deepEqual(stored, [{ name: item.sha256, size: item.size, sha256: item.sha256 }])
  })

  test('kill -9 of the owner while 10 clients read: clients elsewhere finish, broken ones retry on a live replica, one resumed transfer, no bad object', async () => {
    const item = newestItem(fleet.tree, 'boot-initrd')
    // About 4 s for the whole file.
    fleet.upstream.setFault(item.path, { kind: 'rate', bytesPerSecond: 1 * MiB })
    const path = `/maas/images/ephemeral-v3/stable/${item.path}`
    // Replica 0 is asked first and waited on: it owns the fill.
    const owner = rawRequest(fleet.replicas[0]?.url as string, path)
    await sleep(500)
    const others = spread(item, 9, 1)
    await sleep(1_000)
    const requestsBeforeKill = fleet.upstream.requestCount(item.path)
    assert.equal(requestsBeforeKill, 1)
    await fleet.kill(0)
    const clients = [owner, ...others]
    const answers = await Promise.all(clients)
    let retried = 0
    for (const [client, answer] of answers.entries()) {
      const replica = client % 3
      if (replica === 0) {
        assert.ok(!answer.complete, `client ${client} of the killed replica saw its transfer break`)
        retried++
        // On a live replica, as a load balancer would send it.
        const again = await rawRequest(fleet.replicas[1 + (client % 2)]?.url as string, path)
        assert.equal(again.status, 200)
        assert.ok(again.complete)
        assert.equal(sha256(again.body), item.sha256, `client ${client}, retried`)
      } else {
        assert.equal(answer.status, 200, `client ${client}`)
        assert.ok(answer.complete, `client ${client}: body complete`)
        assert.equal(sha256(answer.body), item.sha256, `client ${client}`)
      }
    }
    assert.ok(retried >= 1)
    const ranges = fleet.upstream.rangeRequests(item.path)
    assert.ok(fleet.upstream.requestCount(item.path) - requestsBeforeKill <= 1, `upstream transfers after the kill: ${fleet.upstream.requestCount(item.path) - requestsBeforeKill}`)
    console.log(`after the kill: ${fleet.upstream.requestCount(item.path) - requestsBeforeKill} upstream transfer(s), ranges ${JSON.stringify(ranges)}, ${fleet.upstream.bytesSent(item.path)} bytes sent for ${item.size}`)
    // The one transfer after the kill resumed where the replica taking over had got to.
    assert.ok(ranges.length <= 1 && ranges.every((range) => /^bytes=[1-9]\d*-$/.test(range)), `Range requests: ${JSON.stringify(ranges)}`)
    const takeovers = (await Promise.all([1, 2].map((index) => metric(index, 'sstream_proxy_fleet_takeovers_total')))).reduce((a, b) => a + b)
    assert.equal(takeovers, ranges.length)
    await storedInBucket(item)
    for (const object of await fleet.storedObjects()) assert.equal(object.sha256, object.name, `object ${object.name} holds other bytes`)
    await fleet.restart(0)
  })

  test('through HAProxy (its shipped configuration): kill -9 of the home replica while 10 clients read; retried, they get verified bytes, with one more upstream transfer at most and no bad object', async () => {
    const haproxy = await startHaproxy({ replicaPorts: fleet.replicas.map((replica) => replica.port) })
    try {
      const item = newestItem(fleet.tree, 'squashfs', '22.04')
      fleet.upstream.setFault(item.path, { kind: 'rate', bytesPerSecond: 1.5 * MiB })
      const path = `/maas/images/ephemeral-v3/stable/${item.path}`
      const clients = Array.from({ length: 10 }, () => rawRequest(haproxy.url, path))
      await sleep(1_000)
      // The path's home replica has the running fill: every client is there.
      const running = await Promise.all(fleet.replicas.map((replica) => metric(replica.index, 'sstream_proxy_active_fills')))
      const home = running.indexOf(1)
      assert.ok(home >= 0 && running.filter((fills) => fills > 0).length === 1, `active fills per replica: ${JSON.stringify(running)}`)
      assert.equal(fleet.upstream.requestCount(item.path), 1)
      await fleet.kill(home)
      const answers = await Promise.all(clients)
      const broken = answers.filter((answer) => !answer.complete).length
      assert.ok(broken >= 1, 'the kill broke the transfers under way')
      // As MAAS does: a broken download is asked for again, through the load balancer.
      const retryStarted = performance.now()
      const retried = await Promise.all(answers.map((answer) => (answer.complete ? answer : rawRequest(haproxy.url, path))))
      const retryFirstBytes = retried.filter((_, client) => !(answers[client] as RawResponse).complete).map((answer) => Math.round(answer.firstByteMs as number))
      console.log(`through HAProxy: ${broken} broken by the kill, retried in ${Math.round(performance.now() - retryStarted)} ms (first bytes ${JSON.stringify(retryFirstBytes)} ms), upstream transfers ${fleet.upstream.requestCount(item.path)}, ranges ${JSON.stringify(fleet.upstream.rangeRequests(item.path))}`)
      for (const [client, answer] of retried.entries()) {
        assert.equal(answer.status, 200, `client ${client}`)
        assert.ok(answer.complete, `client ${client}`)
        assert.equal(sha256(answer.body), item.sha256, `client ${client}`)
      }
      assert.ok(fleet.upstream.requestCount(item.path) <= 2, `upstream transfers: ${fleet.upstream.requestCount(item.path)}`)
      await storedInBucket(item)
      for (const object of await fleet.storedObjects()) assert.equal(object.sha256, object.name, `object ${object.name} holds other bytes`)
      await fleet.restart(home)
    } finally {
      await haproxy.close()
    }
  })
})
