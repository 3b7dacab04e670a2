/**
 * contrib/haproxy/sstream-proxy.cfg, run by Debian's haproxy in front of
 * three real proxies: each file path has one home replica, the paths spread
 * over the replicas, the health check reaches `/health`, and a replica that
 * stops is routed around (at once by retry and redispatch, then by the
 * health check) without moving the other replicas' paths. Which replica
 * answered is read from each replica's own request log.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { captureLog, type LogCapture } from '../support/log-capture.js'
import { startHaproxy, type Haproxy } from '../support/haproxy.js'
import { MIRROR_PATH, selectedFiles, startHarness, type Harness } from '../support/proxy-harness.js'
import type { TreeItem } from '../support/upstream-tree.js'

interface Replica {
  name: string
  harness: Harness
  logged: LogCapture
}

/** The replica whose log has each of `paths` `times` times, waiting (up to 10 s) for lines written as responses close. */
async function homes(replicas: readonly Replica[], paths: readonly string[], times: number): Promise<Map<string, string>> {
  const counts = () => {
    const byPath = new Map<string, Map<string, number>>()
    for (const { name, logged } of replicas) {
      for (const path of logged.requestPaths()) {
        const perReplica = byPath.get(path) ?? new Map<string, number>()
        perReplica.set(name, (perReplica.get(name) ?? 0) + 1)
        byPath.set(path, perReplica)
      }
    }
    return byPath
  }
  const logged = (byPath: Map<string, Map<string, number>>) => paths.every((path) => [...(byPath.get(path)?.values() ?? [])].reduce((a, b) => a + b, 0) >= times)
  for (let waited = 0; waited < 10_000 && !logged(counts()); waited += 50) await sleep(50)
  const found = new Map<string, string>()
  for (const path of paths) {
    const perReplica = [...(counts().get(path) ?? new Map<string, number>())]
    assert.equal(perReplica.length, 1, `${path} was answered by one replica only, not ${JSON.stringify(perReplica)}`)
    const [[name, count] = ['', 0]] = perReplica
    assert.equal(count, times, `${path} reached ${name} ${count} times`)
    found.set(path, name)
  }
  return found
}

/** Fetches a file through `base` and checks its bytes. */
async function fetchVerified(base: string, item: TreeItem): Promise<void> {
  const response = await fetch(`${base}${MIRROR_PATH}${item.path}`)
  assert.equal(response.status, 200, item.path)
  const body = Buffer.from(await response.arrayBuffer())
  assert.equal(createHash('sha256').update(body).digest('hex'), item.sha256, `${item.path} has its bytes`)
}

describe('contrib/haproxy/sstream-proxy.cfg in front of three replicas', () => {
  const replicas: Replica[] = []
  let haproxy: Haproxy
  let files: TreeItem[]

  before(async () => {
    for (const name of ['replica1', 'replica2', 'replica3']) {
      const logged = captureLog()
      replicas.push({ name, harness: await startHarness({ log: logged.log }), logged })
    }
    const tree = replicas[0]?.harness.tree
    assert.ok(tree)
    const newest = tree.items.map((item) => item.version).filter((version) => /^\d{8}$/.test(version)).sort().at(-1) ?? ''
    files = selectedFiles(tree.items, newest)
    assert.ok(files.length >= 8, `${files.length} files to route`)
    haproxy = await startHaproxy({ replicaPorts: replicas.map(({ harness }) => (harness.proxy.server.address() as AddressInfo).port) })
  })
  after(async () => {
    await haproxy?.close()
    for (const { harness } of replicas) await harness.close()
  })

  test('every replica is up by the health check, which asks /health', async () => {
    const checked = () => replicas.every(({ harness }) => (harness.proxy.core.traffic.requests.get('health 200') ?? 0) > 0)
    for (let waited = 0; waited < 15_000 && !checked(); waited += 100) await sleep(100)
    assert.ok(checked(), 'each replica answered a health check')
    assert.deepEqual(await haproxy.serverStates(), { replica1: 'UP', replica2: 'UP', replica3: 'UP' })
  })

  test('the same path always lands on the same replica, and the paths spread over all three', async () => {
    for (let round = 0; round < 3; round++) for (const item of files) await fetchVerified(haproxy.url, item)
    const found = await homes(replicas, files.map((item) => `${MIRROR_PATH}${item.path}`), 3)
    assert.deepEqual(new Set(found.values()), new Set(['replica1', 'replica2', 'replica3']), 'every replica is home to some paths')
  })

  test('a replica that stops is routed around at once, and the others keep their paths', async () => {
    const before = new Map<string, string>()
    for (const item of files) await fetchVerified(haproxy.url, item)
    for (const [path, name] of await homes(replicas, files.map((item) => `${MIRROR_PATH}${item.path}`), 4)) before.set(path, name)
    const stopped = replicas[1] as Replica
    await stopped.harness.stopProxy()
    // Straight away, before any health check has failed: the requests homed
    // on the stopped replica are retried on another one.
    const seenBefore = new Map(replicas.map(({ name, logged }) => [name, logged.requestPaths().length]))
    for (const item of files) await fetchVerified(haproxy.url, item)
    await sleep(200)
    for (const { name, logged } of replicas) {
      const answered = logged.requestPaths().slice(seenBefore.get(name))
      for (const path of answered) {
        const home = before.get(path)
        assert.ok(home === name || home === stopped.name, `${path} (home ${home}) moved to ${name}, though its home still runs`)
      }
    }
    const total = replicas.reduce((sum, { name, logged }) => sum + logged.requestPaths().length - (seenBefore.get(name) ?? 0), 0)
    assert.equal(total, files.length, 'every request was answered once, by a running replica')

    // Then the health check marks it down.
    let states = await haproxy.serverStates()
    for (let waited = 0; waited < 20_000 && states[stopped.name] !== 'DOWN'; waited += 200) {
      await sleep(200)
      states = await haproxy.serverStates()
    }
    assert.deepEqual(states, { replica1: 'UP', replica2: 'DOWN', replica3: 'UP' })
    for (const item of files) await fetchVerified(haproxy.url, item)
  })
})

describe('the shipped configuration with balance roundrobin (as the fleet tests route)', () => {
  const replicas: Replica[] = []
  let haproxy: Haproxy

  before(async () => {
    for (const name of ['replica1', 'replica2', 'replica3']) {
      const logged = captureLog()
      replicas.push({ name, harness: await startHarness({ log: logged.log }), logged })
    }
    haproxy = await startHaproxy({ replicaPorts: replicas.map(({ harness }) => (harness.proxy.server.address() as AddressInfo).port), balance: 'roundrobin' })
  })
  after(async () => {
    await haproxy?.close()
    for (const { harness } of replicas) await harness.close()
  })

  test('spreads one path over every replica', async () => {
    assert.match(haproxy.config, /^\s+balance roundrobin$/m)
    const path = `${MIRROR_PATH}streams/v1/index.sjson`
    for (let i = 0; i < 6; i++) assert.equal((await fetch(`${haproxy.url}${path}`)).status, 200)
    const answered = () => replicas.map(({ logged }) => logged.requestPaths().filter((logged) => logged === path).length)
    for (let waited = 0; waited < 10_000 && answered().reduce((a, b) => a + b, 0) < 6; waited += 50) await sleep(50)
    assert.deepEqual(answered(), [2, 2, 2])
  })
})
