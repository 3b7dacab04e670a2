/**
 * `listen.allow` and `listen.allowStatus` on a real server listening on `::`
 * (dual stack, so IPv4 clients arrive as ::ffff:a.b.c.d): clients bound to
 * 127.0.0.1, 127.0.0.2 and ::1 are let in or refused per route, including the
 * metadata fast path that answers before the app.
 */

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'
import { parseAddressRule } from '../../src/server/access-control.js'
import { createLogger, type LogFields } from '../../src/log/logger.js'

const INDEX = `${MIRROR_PATH}streams/v1/index.sjson`

interface Client {
  host: string
  localAddress: string
}
const V4_ONE: Client = { host: '127.0.0.1', localAddress: '127.0.0.1' }
const V4_TWO: Client = { host: '127.0.0.1', localAddress: '127.0.0.2' }
const V6_LOOPBACK: Client = { host: '::1', localAddress: '::1' }

/** The status a client bound to `localAddress` gets for `path`. */
function statusFor(h: Harness, client: Client, path: string): Promise<number> {
  const { port } = h.proxy.server.address() as AddressInfo
  return new Promise((resolve, reject) => {
    const req = request({ ...client, port, path, agent: false }, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}

function recordingLogger(lines: Array<{ message: string } & LogFields>) {
  return createLogger({ json: true, write: (line) => void lines.push(JSON.parse(line)) })
}

describe('listen.allow alone', () => {
  let h: Harness
  const lines: Array<{ message: string } & LogFields> = []
  before(async () => {
    h = await startHarness({ config: { listen: { host: '::', port: 0, allow: ['127.0.0.1', '::1/128'] } }, log: recordingLogger(lines) })
  })
  after(() => h.close())

  test('an IPv4 client arriving as ::ffff:127.0.0.1 matches the IPv4 entry: metadata (fast path), files and status', async () => {
    const file = h.tree.items.find((item) => item.ftype === 'boot-kernel' && item.path.startsWith('noble/amd64/20250201/'))
    assert.ok(file)
    assert.equal(await statusFor(h, V4_ONE, INDEX), 200)
    assert.equal(await statusFor(h, V4_ONE, MIRROR_PATH + file.path), 200)
    assert.equal(await statusFor(h, V4_ONE, '/status'), 200)
    assert.equal(await statusFor(h, V6_LOOPBACK, INDEX), 200)
  })

  test('127.0.0.2 gets 403 everywhere (allowStatus defaults to allow), and the refusal is logged with its address', async () => {
    for (const path of [INDEX, `${MIRROR_PATH}streams/v1/index.json`, '/status', '/metrics', '/keyring.gpg', '/health', '/nothing']) {
      assert.equal(await statusFor(h, V4_TWO, path), 403, path)
    }
    const refused = lines.filter((line) => line.message === 'client refused')
    assert.ok(refused.some((line) => line.address === '::ffff:127.0.0.2' && line.path === INDEX), JSON.stringify(refused))
  })
})

describe('listen.allow and listen.allowStatus apart', () => {
  let h: Harness
  before(async () => {
    // Metadata for 127.0.0.2 and ::1; status and metrics for 127.0.0.1 only (a monitoring host).
    h = await startHarness({ config: { listen: { host: '::', port: 0, allow: ['127.0.0.2/32', '::1'], allowStatus: ['127.0.0.0/31'] } } })
  })
  after(() => h.close())

  test('the data list gets metadata, the keyring and /health, not status', async () => {
    for (const client of [V4_TWO, V6_LOOPBACK]) {
      assert.equal(await statusFor(h, client, INDEX), 200)
      assert.equal(await statusFor(h, client, '/keyring.gpg'), 200)
      assert.equal(await statusFor(h, client, '/health'), 200, 'a load balancer is on the data list')
      assert.equal(await statusFor(h, client, '/status'), 403)
      assert.equal(await statusFor(h, client, '/metrics'), 403)
    }
  })

  test('the status list gets status, metrics, the keyring and /health, not metadata', async () => {
    assert.equal(await statusFor(h, V4_ONE, '/status'), 200)
    assert.equal(await statusFor(h, V4_ONE, '/metrics'), 200)
    assert.equal(await statusFor(h, V4_ONE, '/keyring.asc'), 200)
    assert.equal(await statusFor(h, V4_ONE, '/health'), 200)
    assert.equal(await statusFor(h, V4_ONE, INDEX), 403)
    assert.equal(await statusFor(h, V4_ONE, `${MIRROR_PATH}streams/v1/index.json`), 403)
  })

  test('an encoded path is checked as the route it reaches', async () => {
    assert.equal(await statusFor(h, V4_TWO, '/%73tatus'), 403)
    assert.equal(await statusFor(h, V4_ONE, '/%73tatus'), 200)
  })
})

describe('parseAddressRule', () => {
  test('reads addresses and CIDRs of both families', () => {
    assert.deepEqual(parseAddressRule('10.0.0.0/8'), { network: '10.0.0.0', prefix: 8, family: 'ipv4' })
    assert.deepEqual(parseAddressRule('10.1.2.3'), { network: '10.1.2.3', prefix: 32, family: 'ipv4' })
    assert.deepEqual(parseAddressRule('fd00::/8'), { network: 'fd00::', prefix: 8, family: 'ipv6' })
    assert.deepEqual(parseAddressRule('::1'), { network: '::1', prefix: 128, family: 'ipv6' })
  })

  test('refuses what is not one, naming it', () => {
    assert.throws(() => parseAddressRule('10.0.0.0/33'), /"10\.0\.0\.0\/33" has a prefix length out of range \(0 to 32 for IPv4\)/)
    assert.throws(() => parseAddressRule('fd00::/129'), /0 to 128 for IPv6/)
    assert.throws(() => parseAddressRule('10.0.0/8'), /"10\.0\.0\/8" is not an IP address or CIDR/)
    assert.throws(() => parseAddressRule('10.0.0.0/8/8'), /is not an IP address or CIDR/)
    assert.throws(() => parseAddressRule('10.0.0.0/'), /prefix length out of range/)
  })
})
