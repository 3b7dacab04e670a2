/**
 * prom-client's default metrics: CPU, memory, open files, the event-loop
 * delay, GC pauses, active handles, the Node version. Each call of
 * `collectDefaultMetrics` starts an event-loop delay monitor and a GC
 * observer that are never stopped, so they are collected once per process,
 * on a registry of their own (not prom-client's global one) that each app's
 * registry is merged with. They describe the process, so
 * every proxy in it shows the same; the event-loop figures cover the time
 * since the previous scrape of any of them (prom-client resets its delay
 * histogram at each scrape).
 */

import { collectDefaultMetrics, Registry } from 'prom-client'

let started: Registry | undefined

export function processMetrics(): Registry {
  if (started === undefined) {
    started = new Registry()
    collectDefaultMetrics({ register: started })
  }
  return started
}
