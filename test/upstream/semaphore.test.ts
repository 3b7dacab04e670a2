import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { setImmediate as tick } from 'node:timers/promises'
import { createSemaphore } from '../../src/upstream/semaphore.js'

describe('createSemaphore', () => {
  test('grants up to the limit at once and queues the rest', async () => {
    const slots = createSemaphore(2)
    const first = await slots.acquire()
    await slots.acquire()
    let thirdGranted = false
    const third = slots.acquire().then((release) => {
      thirdGranted = true
      return release
    })
    await tick()
    assert.equal(slots.active(), 2)
    assert.equal(slots.waiting(), 1)
    assert.equal(thirdGranted, false)

    first()
    await third
    assert.equal(thirdGranted, true)
    assert.equal(slots.active(), 2)
    assert.equal(slots.waiting(), 0)
  })

  test('waiters are served in the order they asked', async () => {
    const slots = createSemaphore(1)
    const release = await slots.acquire()
    const order: number[] = []
    const waiters = [1, 2, 3].map((n) =>
      slots.acquire().then((done) => {
        order.push(n)
        done()
      }),
    )
    release()
    await Promise.all(waiters)
    assert.deepEqual(order, [1, 2, 3])
    assert.equal(slots.active(), 0)
  })

  test('releasing twice gives back only one slot', async () => {
    const slots = createSemaphore(1)
    const release = await slots.acquire()
    release()
    release()
    assert.equal(slots.active(), 0)
    await slots.acquire()
    let granted = false
    void slots.acquire().then(() => (granted = true))
    release()
    await tick()
    assert.equal(granted, false, 'a stale release must not free a slot held by someone else')
    assert.equal(slots.active(), 1)
  })
})
