import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { createBufferPool } from '../../src/store/buffer-pool.js'

describe('buffer pool', () => {
  test('a given-back buffer is the next one taken, and nothing new is allocated for it', () => {
    const pool = createBufferPool({ bytes: 1024, maxIdle: 4 })
    const first = pool.take()
    assert.equal(first.length, 1024)
    pool.give(first)
    assert.equal(pool.take(), first)
    assert.equal(pool.allocated, 1)
  })

  test('buffers taken at once are distinct', () => {
    const pool = createBufferPool({ bytes: 16, maxIdle: 4 })
    const taken = [pool.take(), pool.take(), pool.take()]
    for (const buffer of taken) pool.give(buffer)
    const again = [pool.take(), pool.take(), pool.take()]
    assert.equal(new Set(again).size, 3)
    assert.equal(pool.allocated, 3)
  })

  test('keeps at most maxIdle buffers between bursts', () => {
    const pool = createBufferPool({ bytes: 16, maxIdle: 2 })
    const burst = Array.from({ length: 5 }, () => pool.take())
    for (const buffer of burst) pool.give(buffer)
    assert.equal(pool.idle, 2)
  })

  test('counts the buffers taken and not yet given back', () => {
    const pool = createBufferPool({ bytes: 16, maxIdle: 1 })
    const taken = [pool.take(), pool.take(), pool.take()]
    assert.equal(pool.inUse, 3)
    for (const buffer of taken) pool.give(buffer)
    assert.equal(pool.inUse, 0)
  })

  test('refuses a buffer given back twice, or one of another size', () => {
    const pool = createBufferPool({ bytes: 16, maxIdle: 4 })
    const buffer = pool.take()
    pool.give(buffer)
    assert.throws(() => pool.give(buffer), /given back twice/)
    assert.throws(() => pool.give(Buffer.alloc(8)), /8-byte buffer given to a pool of 16-byte buffers/)
  })
})
