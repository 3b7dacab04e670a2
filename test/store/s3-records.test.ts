import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { useRecordsBucket } from '../support/records-bucket.js'

const BUCKET = 'records'
const { open: openRecords } = useRecordsBucket(BUCKET)

describe('records in the S3 store', () => {
  test('a record is created only once, and read back with its etag', async () => {
    const { store, records } = await openRecords()
    const etag = await records.create('fills/a', { owner: 'one' })
    assert.ok(etag)
    assert.equal(await records.create('fills/a', { owner: 'two' }), undefined)
    assert.deepEqual(await records.read('fills/a'), { value: { owner: 'one' }, etag })
    assert.equal(await records.read('fills/none'), undefined)
    // Losing a race is an answer, not a store failure.
    assert.equal(store.health().state, 'ok')
    assert.equal(store.health().errors, 0)
    store.close()
  })

  test('of 16 replicas racing to create one record, exactly one wins', async () => {
    const { store, records } = await openRecords()
    const results = await Promise.all(Array.from({ length: 16 }, (_, index) => records.create('leases/prefetch-stable', { owner: index })))
    const winners = results.flatMap((etag, index) => (etag === undefined ? [] : [index]))
    assert.equal(winners.length, 1)
    assert.deepEqual((await records.read('leases/prefetch-stable'))?.value, { owner: winners[0] })
    store.close()
  })

  test('a replace succeeds only on the version read: a stale etag loses', async () => {
    const { store, records } = await openRecords()
    const first = (await records.create('fills/b', { n: 1 })) as string
    const second = await records.replace('fills/b', { n: 2 }, first)
    assert.ok(second)
    assert.notEqual(second, first)
    assert.equal(await records.replace('fills/b', { n: 3 }, first), undefined)
    assert.deepEqual((await records.read('fills/b'))?.value, { n: 2 })
    // Of two replicas taking over the same expired record, one wins.
    const racing = await Promise.all([records.replace('fills/b', { n: 4 }, second as string), records.replace('fills/b', { n: 5 }, second as string)])
    assert.equal(racing.filter((etag) => etag !== undefined).length, 1)
    await records.remove('fills/b')
    assert.equal(await records.replace('fills/b', { n: 6 }, second as string), undefined)
    assert.equal(await records.read('fills/b'), undefined)
    store.close()
  })

  test('records are listed by name prefix and never listed as cached objects', async () => {
    const { store, records } = await openRecords()
    await records.create('fills/x', {})
    await records.create('fills/y', {})
    await records.create('leases/z', {})
    const names: string[] = []
    for await (const name of records.list('fills/')) names.push(name)
    assert.deepEqual(names.sort(), ['fills/x', 'fills/y'])
    const objects = []
    for await (const object of store.list()) objects.push(object)
    assert.deepEqual(objects, [])
    await assert.rejects(records.create('../escape', {}), /not a plain relative name/)
    store.close()
  })
})
