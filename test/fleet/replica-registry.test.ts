/**
 * The replica registry on a real Ceph RGW: replicas that agree join and see
 * each other; one with another signing key or other mirrors is refused with
 * a line naming the key, the replica and what differs; a dead replica's
 * record is not counted; a replica that disagrees and appears later is
 * logged as an error and shown; a clean stop removes the record.
 */

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { MirrorConfig } from '../../src/config/types.js'
import { ConfigError } from '../../src/config/validate-config.js'
import type { Replica } from '../../src/fleet/replica.js'
import { createReplicaRegistry, type ReplicaRecord } from '../../src/fleet/replica-registry.js'
import { silentLogger, type Logger } from '../../src/log/logger.js'
import type { RecordStore } from '../../src/store/s3-records.js'
import { parseFilter } from '../../src/streams/filter.js'
import { useRecordsBucket } from '../support/records-bucket.js'

const BUCKET = 'registry'
const KEY_A = 'A'.repeat(40)
const KEY_B = 'B'.repeat(40)
const { openRecords } = useRecordsBucket(BUCKET)

const mirror = (name: string, filters = ['arch=amd64']): MirrorConfig => ({
  name,
  path: `/${name}/`,
  upstreams: ['http://images.example/ephemeral-v3/stable/'],
  upstreamCooldown: 300,
  keyring: '/etc/keyring.gpg',
  keyringIsDefault: false,
  metadata: 'filtered',
  publish: 'selected',
  missFailure: 'reset',
  missWait: 8,
  selections: [{ filters: filters.map(parseFilter), max: 1 }],
})

function registryOf(records: RecordStore, n: number, options: { key?: string; mirrors?: MirrorConfig[]; log?: Logger } = {}) {
  const replica: Replica = { id: `replica-${n}`, advertise: `http://10.0.0.${n}:8080/`, secret: 'x'.repeat(16), records, claimTtlMs: 10_000, leaseTtlMs: 30_000 }
  return createReplicaRegistry({
    replica,
    signingKeyFingerprint: options.key ?? KEY_A,
    mirrors: options.mirrors ?? [mirror('stable')],
    version: '1.0.0',
    source: '/etc/sstream-proxy/config.json',
    log: options.log ?? silentLogger,
  })
}

describe('the replica registry', () => {
  test('replicas that agree join and see each other; a clean stop removes the record', async () => {
    const records = await openRecords()
    const first = registryOf(records, 1)
    await first.join()
    const second = registryOf(records, 2)
    await second.join()
    assert.deepEqual(second.replicas().map((replica) => [replica.id, replica.self, replica.disagrees]).sort(), [
      ['replica-1', false, null],
      ['replica-2', true, null],
    ])
    const record = (await records.read<ReplicaRecord>('replicas/replica-2'))?.value
    assert.equal(record?.advertise, 'http://10.0.0.2:8080/')
    assert.equal(record?.signingKeyFingerprint, KEY_A)
    assert.equal(record?.version, '1.0.0')
    assert.ok((record?.expiresAt as number) > Date.now())
    await second.leave()
    assert.equal(await records.read('replicas/replica-2'), undefined)
    await first.leave()
  })

  test('a replica with another signing key is refused, naming signingKey, the replica and both keys', async () => {
    const records = await openRecords()
    const first = registryOf(records, 1)
    await first.join()
    const refused = await registryOf(records, 2, { key: KEY_B })
      .join()
      .then(() => undefined, (error: unknown) => error)
    assert.ok(refused instanceof ConfigError, String(refused))
    assert.equal(refused.key, 'signingKey')
    assert.match(refused.message, /^\/etc\/sstream-proxy\/config\.json: signingKey: replica replica-1 at http:\/\/10\.0\.0\.1:8080\/ \(started [^)]+\) signs with key A{40}, this one with B{40}: every replica of a bucket must read the same key file$/)
    assert.equal(await records.read('replicas/replica-2'), undefined, 'a refused replica writes no record')
    await first.leave()
  })

  test('a replica with other mirrors is refused, naming mirrors and which mirror differs', async () => {
    const records = await openRecords()
    const first = registryOf(records, 1, { mirrors: [mirror('stable'), mirror('candidate')] })
    await first.join()
    const refused = await registryOf(records, 2, { mirrors: [mirror('stable', ['arch=arm64']), mirror('edge')] })
      .join()
      .then(() => undefined, (error: unknown) => error)
    assert.ok(refused instanceof ConfigError, String(refused))
    assert.equal(refused.key, 'mirrors')
    assert.match(refused.message, /mirrors: differ from those of replica replica-1 at http:\/\/10\.0\.0\.1:8080\/ .*: candidate only there, edge only here, stable set differently; every replica of a bucket must have the same mirrors$/)
    // The same mirrors in another order agree.
    const reordered = registryOf(records, 3, { mirrors: [mirror('candidate'), mirror('stable')] })
    await reordered.join()
    await reordered.leave()
    await first.leave()
  })

  test('mirrors changed by a reload are written at once: a new replica with them joins, one with the old ones is refused', async () => {
    const records = await openRecords()
    const first = registryOf(records, 1, { mirrors: [mirror('stable')] })
    await first.join()
    await first.mirrorsChanged([mirror('stable'), mirror('candidate')])
    const refused = await registryOf(records, 2, { mirrors: [mirror('stable')] })
      .join()
      .then(() => undefined, (error: unknown) => error)
    assert.match(String(refused), /mirrors: differ from those of replica replica-1 .*: candidate only there;/)
    const joined = registryOf(records, 3, { mirrors: [mirror('candidate'), mirror('stable')] })
    await joined.join()
    await joined.leave()
    await first.leave()
  })

  test("a dead replica's record (expired) does not count", async () => {
    const records = await openRecords()
    const dead: ReplicaRecord = {
      id: 'dead',
      advertise: 'http://10.0.0.9:8080/',
      startedAt: new Date(0).toISOString(),
      expiresAt: Date.now() - 1,
      signingKeyFingerprint: KEY_B,
      mirrorsDigest: 'other',
      mirrors: {},
      version: '0.9.0',
    }
    await records.create('replicas/dead', dead)
    const registry = registryOf(records, 1)
    await registry.join()
    assert.deepEqual(registry.replicas().map((replica) => replica.id), ['replica-1'])
    await registry.leave()
  })

  test('a disagreeing replica that appears after the start is logged as an error and shown', async () => {
    const records = await openRecords()
    const errors: string[] = []
    const log: Logger = { ...silentLogger, error: (message, fields) => errors.push(`${message} ${JSON.stringify(fields)}`) }
    const replica: Replica = { id: 'replica-1', advertise: 'http://10.0.0.1:8080/', secret: 'x'.repeat(16), records, claimTtlMs: 10_000, leaseTtlMs: 2_400 }
    const registry = createReplicaRegistry({ replica, signingKeyFingerprint: KEY_A, mirrors: [mirror('stable')], version: '1.0.0', source: 'config.json', log })
    await registry.join()
    // Its start raced ours: it checked before our record was there.
    const late: ReplicaRecord = { id: 'late', advertise: 'http://10.0.0.7:8080/', startedAt: new Date().toISOString(), expiresAt: Date.now() + 60_000, signingKeyFingerprint: KEY_B, mirrorsDigest: 'x', mirrors: {}, version: '1.0.0' }
    await records.create('replicas/late', late)
    const keepAlive = setInterval(() => undefined, 1_000)
    try {
      while (registry.replicas().length < 2) await new Promise((resolve) => setTimeout(resolve, 100))
    } finally {
      clearInterval(keepAlive)
    }
    const shown = registry.replicas().find((other) => other.id === 'late')
    assert.match(shown?.disagrees ?? '', /^signingKey: replica late at http:\/\/10\.0\.0\.7:8080\/ .* signs with key B{40}, this one with A{40}/)
    assert.equal(errors.length, 1, errors.join('\n'))
    assert.match(errors[0] ?? '', /fleet: a replica disagrees with this one .*"replica":"late"/)
    await registry.leave()
  })
})
