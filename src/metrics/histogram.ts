/**
 * A cumulative histogram for the Prometheus text format: observations are
 * counted into fixed upper bounds (`le`), plus their sum and count.
 */

export interface HistogramSnapshot {
  /** Upper bounds, strictly increasing; the implicit `+Inf` bucket is `count`. */
  bounds: readonly number[]
  /** Cumulative count per bound: observations less than or equal to it. */
  cumulative: number[]
  sum: number
  count: number
}

export interface Histogram {
  observe(value: number): void
  snapshot(): HistogramSnapshot
}

/** Seconds, from a fast loopback answer to a slow mirror across the world. */
export const LATENCY_BOUNDS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const

export function createHistogram(bounds: readonly number[]): Histogram {
  bounds.forEach((bound, i) => {
    if (!Number.isFinite(bound) || (i > 0 && bound <= (bounds[i - 1] as number))) {
      throw new RangeError(`histogram bounds must be finite and strictly increasing, got ${bounds.join(',')}`)
    }
  })
  const counts = bounds.map(() => 0)
  let sum = 0
  let count = 0
  return {
    observe(value) {
      const at = bounds.findIndex((bound) => value <= bound)
      if (at !== -1) counts[at] = (counts[at] as number) + 1
      sum += value
      count++
    },
    snapshot() {
      let running = 0
      const cumulative = counts.map((n) => (running += n))
      return { bounds, cumulative, sum, count }
    },
  }
}
