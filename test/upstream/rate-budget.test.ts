import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { createRateBudget, type TransferPriority } from '../../src/upstream/rate-budget.js'

/** A clock that moves only when told, and the timers it fires. */
function fakeClock() {
  let time = 0
  let timers: Array<{ at: number; callback: () => void }> = []
  return {
    now: () => time,
    schedule(callback: () => void, ms: number) {
      const timer = { at: time + ms, callback }
      timers.push(timer)
      return () => {
        timers = timers.filter((other) => other !== timer)
      }
    },
    /** Moves time forward by `ms`, firing due timers in order (and letting granted promises run). */
    async advance(ms: number) {
      const end = time + ms
      for (;;) {
        await new Promise((resolve) => setImmediate(resolve))
        const due = timers.filter((timer) => timer.at <= end).sort((a, b) => a.at - b.at)[0]
        if (due === undefined) break
        timers = timers.filter((timer) => timer !== due)
        time = due.at
        due.callback()
      }
      time = end
      await new Promise((resolve) => setImmediate(resolve))
    },
  }
}

const always = (priority: TransferPriority) => () => priority

/** Keeps asking for `chunk` bytes and counts what it was granted, until `stop()`. */
function transfer(budget: ReturnType<typeof createRateBudget>, chunk: number, priority: () => TransferPriority) {
  const stopper = new AbortController()
  let granted = 0
  void (async () => {
    try {
      for (;;) {
        await budget.take(chunk, priority, stopper.signal)
        granted += chunk
      }
    } catch {
      // stopped
    }
  })()
  return { granted: () => granted, stop: () => stopper.abort() }
}

describe('rate budget', () => {
  test('one transfer gets the rate over time, plus at most a tenth of a second of burst and one chunk', async () => {
    const clock = fakeClock()
    const budget = createRateBudget({ bytesPerSecond: 1_000_000, now: clock.now, schedule: clock.schedule })
    const one = transfer(budget, 16_384, always('miss'))
    await clock.advance(10_000)
    one.stop()
    const expected = 10 * 1_000_000
    assert.ok(one.granted() >= expected - 16_384, `granted ${one.granted()}`)
    assert.ok(one.granted() <= expected + 100_000 + 16_384, `granted ${one.granted()}`)
  })

  test('four transfers of one class share the rate fairly and together stay under it', async () => {
    const clock = fakeClock()
    const budget = createRateBudget({ bytesPerSecond: 2_000_000, now: clock.now, schedule: clock.schedule })
    const transfers = [1, 2, 3, 4].map(() => transfer(budget, 65_536, always('miss')))
    await clock.advance(20_000)
    for (const one of transfers) one.stop()
    const total = transfers.reduce((sum, one) => sum + one.granted(), 0)
    assert.ok(total <= 40_000_000 + 200_000 + 4 * 65_536, `total ${total}`)
    assert.ok(total >= 40_000_000 - 4 * 65_536, `total ${total}`)
    for (const one of transfers) assert.ok(Math.abs(one.granted() - total / 4) <= 2 * 65_536, `share ${one.granted()} of ${total}`)
  })

  test('prefetch transfers keep to their own rate while the global rate is free', async () => {
    const clock = fakeClock()
    const budget = createRateBudget({ bytesPerSecond: 4_000_000, prefetchBytesPerSecond: 1_000_000, now: clock.now, schedule: clock.schedule })
    const transfers = [1, 2].map(() => transfer(budget, 16_384, always('prefetch')))
    await clock.advance(10_000)
    for (const one of transfers) one.stop()
    const total = transfers.reduce((sum, one) => sum + one.granted(), 0)
    assert.ok(total <= 10_000_000 + 100_000 + 2 * 16_384, `prefetch took ${total}`)
    assert.ok(total >= 10_000_000 - 2 * 16_384, `prefetch took ${total}`)
  })

  test('a miss arriving during prefetch gets the budget first', async () => {
    const clock = fakeClock()
    const budget = createRateBudget({ bytesPerSecond: 2_000_000, prefetchBytesPerSecond: 2_000_000, now: clock.now, schedule: clock.schedule })
    const prefetch = [1, 2, 3, 4].map(() => transfer(budget, 16_384, always('prefetch')))
    await clock.advance(2_000)
    const before = prefetch.reduce((sum, one) => sum + one.granted(), 0)
    const miss = transfer(budget, 16_384, always('miss'))
    await clock.advance(10_000)
    const prefetched = prefetch.reduce((sum, one) => sum + one.granted(), 0) - before
    assert.ok(miss.granted() >= 0.9 * 20_000_000, `miss got ${miss.granted()}, prefetch ${prefetched}`)
    assert.equal(budget.status().waiting.miss, 1)
    miss.stop()
    for (const one of prefetch) one.stop()
  })

  test('a prefetch transfer raised to miss priority is served as a miss from its next chunk', async () => {
    const clock = fakeClock()
    const budget = createRateBudget({ bytesPerSecond: 1_000_000, prefetchBytesPerSecond: 100_000, now: clock.now, schedule: clock.schedule })
    let priority: TransferPriority = 'prefetch'
    const joined = transfer(budget, 10_000, () => priority)
    await clock.advance(5_000)
    assert.ok(joined.granted() <= 600_000, `as prefetch: ${joined.granted()}`)
    const before = joined.granted()
    priority = 'miss'
    await clock.advance(5_000)
    assert.ok(joined.granted() - before >= 4_500_000, `as miss: ${joined.granted() - before}`)
    joined.stop()
  })

  test('paused prefetch gets nothing while misses still flow, and goes on when resumed', async () => {
    const clock = fakeClock()
    const budget = createRateBudget({ bytesPerSecond: 1_000_000, now: clock.now, schedule: clock.schedule })
    budget.pausePrefetch(true)
    const prefetch = transfer(budget, 1_000, always('prefetch'))
    await clock.advance(60_000)
    assert.equal(prefetch.granted(), 0)
    assert.equal(budget.status().waiting.prefetch, 1)
    await budget.take(1_000, always('miss'))
    budget.pausePrefetch(false)
    await clock.advance(1)
    assert.ok(prefetch.granted() > 0)
    prefetch.stop()
    assert.deepEqual(budget.status(), { upstreamRate: 1_000_000, prefetchRate: null, prefetchPaused: false, waiting: { miss: 0, prefetch: 0 } })
  })

  test('a paused prefetch transfer raised to miss priority goes at once', async () => {
    const clock = fakeClock()
    const budget = createRateBudget({ bytesPerSecond: 1_000_000, now: clock.now, schedule: clock.schedule })
    budget.pausePrefetch(true)
    let priority: TransferPriority = 'prefetch'
    const joined = transfer(budget, 1_000, () => priority)
    await clock.advance(10_000)
    assert.equal(joined.granted(), 0)
    priority = 'miss'
    budget.reprioritized()
    await clock.advance(1_000)
    assert.ok(joined.granted() >= 1_000_000, `granted ${joined.granted()}`)
    joined.stop()
  })

  test('an aborted wait leaves the queue', async () => {
    const clock = fakeClock()
    const budget = createRateBudget({ bytesPerSecond: 1_000, now: clock.now, schedule: clock.schedule })
    await budget.take(10_000, always('miss'))
    const stopper = new AbortController()
    const waiting = budget.take(1_000, always('miss'), stopper.signal)
    assert.equal(budget.status().waiting.miss, 1)
    stopper.abort(new Error('gone'))
    await assert.rejects(waiting, /gone/)
    assert.equal(budget.status().waiting.miss, 0)
  })

  test('throttle passes every byte through in order, and destroying it destroys the body', async () => {
    const budget = createRateBudget({ bytesPerSecond: 10_000_000 })
    const chunks = Array.from({ length: 20 }, (_, index) => Buffer.alloc(10_000, index))
    const received = await buffer(budget.throttle(Readable.from(chunks), always('miss')))
    assert.deepEqual(received, Buffer.concat(chunks))

    const body = new Readable({ read() {} })
    const throttled = budget.throttle(body, always('miss'))
    throttled.destroy()
    await new Promise((resolve) => body.once('close', resolve))
    assert.equal(body.destroyed, true)
  })

  test('an error of the body ends the throttled stream with it', async () => {
    const budget = createRateBudget({ bytesPerSecond: 10_000_000 })
    const body = new Readable({ read() {} })
    const throttled = budget.throttle(body, always('miss'))
    const failed = new Promise<Error>((resolve) => throttled.once('error', resolve))
    throttled.resume()
    body.destroy(new Error('ECONNRESET upstream'))
    assert.match((await failed).message, /ECONNRESET upstream/)
  })
})
