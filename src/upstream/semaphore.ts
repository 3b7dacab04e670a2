/** A counting semaphore: at most `limit` holders at once, the rest wait in order. */

export interface Semaphore {
  /** Resolves with the function that gives the slot back; calling it twice is harmless. */
  acquire(): Promise<() => void>
  active(): number
  waiting(): number
}

export function createSemaphore(limit: number): Semaphore {
  let held = 0
  const queue: Array<() => void> = []

  function grant(): () => void {
    held++
    let released = false
    return () => {
      if (released) return
      released = true
      held--
      const next = queue.shift()
      if (next !== undefined) next()
    }
  }

  return {
    acquire() {
      if (held < limit) return Promise.resolve(grant())
      return new Promise((resolve) => queue.push(() => resolve(grant())))
    },
    active: () => held,
    waiting: () => queue.length,
  }
}
