import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createBufferPool, type BufferPool, LARGEST_BUFFER_BYTES, SMALLEST_BUFFER_BYTES } from '../../src/store/buffer-pool.js'

const MiB = 1024 * 1024

/** Whether `promise` has settled by the time the queued callbacks have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false
  void promise.then(
    () => (done = true),
    () => (done = true),
  )
  await sleep(0)
  return done
}

/**
 * `count` transfers taking pairs one after another; when a newcomer finds the
 * budget spent, the transfers holding more than their share trade down, as
 * sendRange does. Checks the budget after every take.
 */
async function spend(pool: BufferPool, count: number, budgetBytes: number): Promise<Buffer[][]> {
  const pairs: Buffer[][] = []
  for (let taken = 1; taken <= count; taken++) {
    const taking = pool.take()
    if (!(await settled(taking))) {
      const trading = pairs.flatMap((pair, index) => (pool.oversized(pair) ? [index] : []))
      const traded = await Promise.all(trading.map((index) => pool.trade(pairs[index] as Buffer[])))
      trading.forEach((index, at) => (pairs[index] = traded[at] as Buffer[]))
    }
    pairs.push(await taking)
    assert.ok(pool.stats().heldBytes <= budgetBytes, `${pool.stats().heldBytes} bytes held by ${taken} transfers`)
    assert.equal(pool.stats().waiting, 0)
  }
  return pairs
}

describe('read buffer budget', () => {
  test('one transfer and 8 at once read with 1 MiB buffers', async () => {
    const pool = createBufferPool({ budgetBytes: 64 * MiB, idleMs: 60_000 })
    const pairs = await Promise.all(Array.from({ length: 8 }, () => pool.take()))
    for (const pair of pairs) assert.deepEqual(pair.map((buffer) => buffer.length), [LARGEST_BUFFER_BYTES, LARGEST_BUFFER_BYTES])
    assert.equal(pool.stats().heldBytes, 16 * MiB)
    for (const pair of pairs) pool.give(pair)
    assert.equal(pool.stats().heldBytes, 0)
  })

  test('buffers get smaller as transfers grow, and every pair fits the budget', async () => {
    const budgetBytes = 8 * MiB
    const pool = createBufferPool({ budgetBytes, idleMs: 60_000 })
    const pairs = await spend(pool, budgetBytes / (2 * SMALLEST_BUFFER_BYTES), budgetBytes)
    const sizes = pairs.map((pair) => pair[0]?.length)
    assert.equal(sizes[0], SMALLEST_BUFFER_BYTES)
    assert.ok(sizes.every((size) => size === SMALLEST_BUFFER_BYTES), `sizes ${[...new Set(sizes)].join(', ')} with the budget spent on 16 KiB pairs`)
    assert.equal(pool.stats().heldBytes, budgetBytes)
    // No two buffers share memory: each transfer reads into its own.
    const ranges = pairs.flat().map((buffer) => [buffer.byteOffset, buffer.byteOffset + buffer.length, buffer.buffer] as const)
    for (const [index, [start, end, memory]] of ranges.entries()) {
      for (const [otherStart, otherEnd, otherMemory] of ranges.slice(index + 1)) {
        assert.ok(memory !== otherMemory || end <= otherStart || otherEnd <= start, 'two buffers overlap')
      }
    }
    for (const pair of pairs) pool.give(pair)
    assert.deepEqual(pool.stats(), { budgetBytes, heldBytes: 0, allocatedBytes: 32 * MiB, transfers: 0, waiting: 0 })
  })

  test('past the budget, transfers wait and are served first come, first served', async () => {
    const pool = createBufferPool({ budgetBytes: MiB, idleMs: 60_000 })
    const holding = await spend(pool, MiB / (2 * SMALLEST_BUFFER_BYTES), MiB)
    const order: number[] = []
    const waiting = [0, 1, 2].map((index) => pool.take().then((pair) => (order.push(index), pair)))
    assert.equal(await settled(Promise.race(waiting)), false, 'a transfer got buffers past the budget')
    assert.equal(pool.stats().waiting, 3)
    assert.equal(pool.stats().heldBytes, MiB)
    // One pair back serves one waiter, the first.
    pool.give(holding.pop() as Buffer[])
    await sleep(0)
    assert.deepEqual(order, [0])
    // A newcomer queues behind the two still waiting even when buffers are free.
    pool.give(holding.pop() as Buffer[])
    const late = pool.take().then((pair) => (order.push(3), pair))
    await sleep(0)
    for (const pair of holding.splice(0)) pool.give(pair)
    const served = await Promise.all([...waiting, late])
    assert.deepEqual(order, [0, 1, 2, 3])
    for (const pair of served) pool.give(pair)
    assert.deepEqual([pool.stats().heldBytes, pool.stats().transfers, pool.stats().waiting], [0, 0, 0])
  })

  test('a transfer that leaves while waiting is taken out of the queue', async () => {
    const pool = createBufferPool({ budgetBytes: MiB, idleMs: 60_000 })
    const holding = await spend(pool, MiB / (2 * SMALLEST_BUFFER_BYTES), MiB)
    const leaving = new AbortController()
    const left = pool.take(leaving.signal)
    const next = pool.take()
    leaving.abort()
    await assert.rejects(left, /while waiting for read buffers/)
    assert.equal(pool.stats().waiting, 1)
    pool.give(holding.pop() as Buffer[])
    pool.give(await next)
    for (const pair of holding) pool.give(pair)
    assert.equal(pool.stats().transfers, 0)
  })

  test('memory left idle is dropped after the idle period, and taken anew for the next transfer', async () => {
    const pool = createBufferPool({ budgetBytes: 64 * MiB, idleMs: 50 })
    const pairs = await spend(pool, 40, 64 * MiB)
    assert.equal(pool.stats().allocatedBytes, 64 * MiB)
    for (const pair of pairs) pool.give(pair)
    assert.equal(pool.stats().allocatedBytes, 64 * MiB, 'kept for the next burst until the idle period ends')
    for (let tries = 0; pool.stats().allocatedBytes > 0 && tries < 100; tries++) await sleep(50)
    assert.equal(pool.stats().allocatedBytes, 0)
    const pair = await pool.take()
    assert.equal(pair[0]?.length, LARGEST_BUFFER_BYTES)
    pool.give(pair)
  })

  test('a slab with buffers in use is kept', async () => {
    const pool = createBufferPool({ budgetBytes: 64 * MiB, idleMs: 20 })
    const kept = await pool.take()
    const burst = await Promise.all(Array.from({ length: 20 }, () => pool.take()))
    for (const pair of burst) pool.give(pair)
    await sleep(200)
    assert.equal(pool.stats().allocatedBytes, 32 * MiB)
    pool.give(kept)
  })

  test('refuses a buffer given back twice, or one it did not hand out, and a budget under one page', async () => {
    const pool = createBufferPool({ budgetBytes: 4 * MiB, idleMs: 60_000 })
    const pair = await pool.take()
    const other = await pool.take()
    pool.give(pair)
    assert.throws(() => pool.give(pair), /given back twice|did not hand out/)
    assert.throws(() => pool.give([Buffer.alloc(8)]), /8-byte buffer this pool did not hand out/)
    pool.give(other)
    assert.throws(() => createBufferPool({ budgetBytes: MiB - 1, idleMs: 1 }), /less than one/)
  })
})
