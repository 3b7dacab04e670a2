/**
 * `/metrics` end to end: it must parse under a strict reading of the
 * Prometheus text format 0.0.4 grammar, agree with what the proxy did and
 * with `/status`, carry the process metrics operators expect (event-loop
 * delay, GC, memory, open files), and list exactly the metrics
 * docs/operations.md documents, with their types and labels.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createUpstreamClient } from '../../src/upstream/upstream-client.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'

interface ParsedSample {
  name: string
  labels: Record<string, string>
  value: number
}

interface ParsedFamily {
  type: string
  help: string
  samples: ParsedSample[]
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
// Prometheus reads values with Go's strconv.ParseFloat, which takes NaN in any
// case; prom-client writes `Nan`.
const FLOAT = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN|Nan)$/
const PROMETHEUS_TEXT = 'text/plain; version=0.0.4; charset=utf-8'
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

/**
 * Parses the text format strictly: every line a HELP, a TYPE or a sample;
 * TYPE before its samples; families contiguous; no duplicate series; only the
 * escapes the format defines; histograms with cumulative `le` buckets ending
 * in `+Inf` equal to `_count`. Throws naming the line on any violation.
 */
function parseExposition(text: string): Map<string, ParsedFamily> {
  assert.ok(text.endsWith('\n'), 'the text ends with a newline')
  const families = new Map<string, ParsedFamily>()
  const closed = new Set<string>()
  const series = new Set<string>()
  let current: string | undefined
  const lines = text.slice(0, -1).split('\n')
  const enter = (family: string, where: string) => {
    if (current === family) return
    if (closed.has(family)) throw new Error(`${where}: family ${family} is not contiguous`)
    if (current !== undefined) closed.add(current)
    current = family
  }
  lines.forEach((line, i) => {
    // The format ignores empty lines; prom-client puts one between families.
    if (line === '') return
    const where = `line ${i + 1} "${line}"`
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
    if (meta !== null) {
      const [, kind, name = '', rest = ''] = meta
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`)
      enter(name, where)
      const family = families.get(name) ?? { type: 'untyped', help: '', samples: [] }
      families.set(name, family)
      if (kind === 'HELP') {
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`${where}: bad escape in HELP`)
        family.help = rest.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'))
      } else {
        if (!TYPES.has(rest)) throw new Error(`${where}: bad type`)
        if (family.samples.length > 0) throw new Error(`${where}: TYPE after samples`)
        family.type = rest
      }
      return
    }
    if (line.startsWith('#')) throw new Error(`${where}: unexpected comment`)
    const sample = parseSample(line, where)
    const family = [sample.name, sample.name.replace(/_(bucket|sum|count)$/, '')].find((name) => families.get(name)?.type !== undefined && families.has(name))
    if (family === undefined) throw new Error(`${where}: sample without HELP/TYPE`)
    const parsed = families.get(family) as ParsedFamily
    if (family !== sample.name && parsed.type !== 'histogram' && parsed.type !== 'summary') throw new Error(`${where}: suffix on a ${parsed.type}`)
    enter(family, where)
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`
    if (series.has(key)) throw new Error(`${where}: duplicate series`)
    series.add(key)
    parsed.samples.push(sample)
  })
  for (const [name, family] of families) {
    if (family.type === 'counter') {
      assert.match(name, /_total$/, `counter ${name} ends in _total`)
      for (const sample of family.samples) assert.ok(sample.value >= 0, `${name} is not negative`)
    }
    if (family.type === 'histogram') checkHistogram(name, family)
  }
  return families
}

function parseSample(line: string, where: string): ParsedSample {
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0]
  if (name === undefined) throw new Error(`${where}: no metric name`)
  let at = name.length
  const labels: Record<string, string> = {}
  if (line[at] === '{') {
    at++
    while (line[at] !== '}') {
      const label = /^[^=]*/.exec(line.slice(at))?.[0] ?? ''
      if (!LABEL_NAME.test(label)) throw new Error(`${where}: bad label name "${label}"`)
      if (label in labels) throw new Error(`${where}: label ${label} twice`)
      at += label.length
      if (line.slice(at, at + 2) !== '="') throw new Error(`${where}: expected =" after ${label}`)
      at += 2
      let value = ''
      for (;;) {
        const char = line[at]
        if (char === undefined) throw new Error(`${where}: unterminated label value`)
        at++
        if (char === '"') break
        if (char === '\\') {
          const escaped = line[at++]
          if (escaped === 'n') value += '\n'
          else if (escaped === '\\' || escaped === '"') value += escaped
          else throw new Error(`${where}: bad escape \\${escaped}`)
        } else {
          value += char
        }
      }
      labels[label] = value
      if (line[at] === ',') at++
      else if (line[at] !== '}') throw new Error(`${where}: expected , or } after a label`)
    }
    at++
  }
  const rest = line.slice(at)
  const fields = /^ (\S+)(?: (-?\d+))?$/.exec(rest)
  if (fields === null || !FLOAT.test(fields[1] as string)) throw new Error(`${where}: bad value`)
  const text = fields[1] as string
  const value = text.toLowerCase() === 'nan' ? NaN : text.endsWith('Inf') ? (text.startsWith('-') ? -Infinity : Infinity) : Number(text)
  return { name, labels, value }
}

function checkHistogram(name: string, family: ParsedFamily): void {
  const groups = new Map<string, ParsedSample[]>()
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels
    const key = JSON.stringify(Object.entries(rest).sort())
    groups.set(key, [...(groups.get(key) ?? []), sample])
    if (sample.name === `${name}_bucket`) assert.ok(le !== undefined, `${name}_bucket has le`)
    else assert.equal(le, undefined, `${sample.name} has no le`)
  }
  for (const samples of groups.values()) {
    const buckets = samples.filter((sample) => sample.name === `${name}_bucket`)
    const bounds = buckets.map((bucket) => Number(bucket.labels.le === '+Inf' ? Infinity : bucket.labels.le))
    assert.ok(bounds.every((bound, i) => !Number.isNaN(bound) && (i === 0 || bound > (bounds[i - 1] as number))), `${name} le increases`)
    assert.ok(buckets.every((bucket, i) => i === 0 || bucket.value >= (buckets[i - 1] as ParsedSample).value), `${name} buckets are cumulative`)
    assert.equal(buckets.at(-1)?.labels.le, '+Inf', `${name} ends with +Inf`)
    const count = samples.find((sample) => sample.name === `${name}_count`)
    assert.ok(samples.some((sample) => sample.name === `${name}_sum`), `${name}_sum present`)
    assert.equal(count?.value, buckets.at(-1)?.value, `${name}_count equals the +Inf bucket`)
  }
}

const value = (families: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number | undefined =>
  (families.get(name) ?? families.get(name.replace(/_(bucket|sum|count)$/, '')))?.samples.find((sample) => sample.name === name && Object.entries(labels).every(([key, text]) => sample.labels[key] === text))?.value

/**
 * The metric tables of the doc's "Metrics" section: each row's first cell
 * names one or more metrics, as `name{label,label}` in backquotes; the second
 * cell is their type.
 */
function documentedMetrics(doc: string): Map<string, { type: string; labels: string[] }> {
  const section = /^## Metrics: `\/metrics`$([\s\S]*?)^## /m.exec(doc)?.[1]
  assert.ok(section !== undefined, 'docs/operations.md has a "Metrics" section')
  const metrics = new Map<string, { type: string; labels: string[] }>()
  for (const row of section.split('\n').filter((line) => line.startsWith('| `'))) {
    const [names = '', type = ''] = row.split(' | ').map((cell) => cell.replace(/^\| /, '').trim())
    for (const [, name = '', labels] of names.matchAll(/`([a-z_:][a-z0-9_:]*)(?:\{([a-z_,]*)\})?`/g)) {
      assert.ok(!metrics.has(name), `${name} is documented twice`)
      metrics.set(name, { type, labels: labels === undefined ? [] : labels.split(',') })
    }
  }
  return metrics
}

describe('the strict parser used here', () => {
  test('the strict parser used here rejects what Prometheus rejects', () => {
    assert.throws(() => parseExposition('# TYPE x gauge\nx{a="\\t"} 1\n'), /bad escape/)
    assert.throws(() => parseExposition('# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx{a="b"} 2\n'), /not contiguous/)
    assert.throws(() => parseExposition('# TYPE x gauge\nx 1\nx 2\n'), /duplicate series/)
    assert.throws(() => parseExposition('x 1\n'), /without HELP\/TYPE/)
    assert.throws(() => parseExposition('# TYPE x gauge\nx one\n'), /bad value/)
  })
})

describe('GET /metrics', () => {
  let h: Harness
  before(async () => {
    h = await startHarness()
    // Let the prefetch the first metadata starts end, so the cache holds still while compared.
    for (let waited = 0; waited < 10_000; waited += 50) {
      const status = (await (await fetch(`${h.proxy.url}/status`)).json()) as { cache: { activeFills: number }; mirrors: Array<{ prefetch: { state: string } }> }
      if (status.mirrors[0]?.prefetch.state !== 'running' && status.cache.activeFills === 0) break
      await sleep(50)
    }
  })
  after(async () => {
    await h.close()
  })

  test('parses, and counts requests, hits, bytes, upstream latency and the cache as /status does', async () => {
    const file = h.tree.items.find((item) => item.item === 'boot-kernel' && item.path.startsWith('noble/amd64/20250201/ga-'))
    assert.ok(file)
    for (let i = 0; i < 2; i++) {
      const response = await fetch(h.url(file.path))
      assert.equal(response.status, 200)
      assert.equal((await response.arrayBuffer()).byteLength, file.size)
      // A miss is committed just after its last byte is sent: wait for it, so the second request is a hit.
      for (let waited = 0; h.proxy.core.store.index.get(file.sha256) === undefined && waited < 5000; waited += 20) await sleep(20)
    }
    assert.equal((await fetch(h.url('noble/arm64/20250201/squashfs'))).status, 404)
    await (await fetch(`${h.proxy.url}${MIRROR_PATH}streams/v1/index.sjson`)).arrayBuffer()

    const response = await fetch(`${h.proxy.url}/metrics`)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-type'), PROMETHEUS_TEXT)
    const families = parseExposition(await response.text())
    const status = (await (await fetch(`${h.proxy.url}/status`)).json()) as {
      cache: { files: number; bytes: number; hits: number; misses: number }
      mirrors: Array<{ selection: { files: number; cachedFiles: number } }>
    }

    assert.equal(value(families, 'sstream_proxy_requests_total', { route: 'file', status: '200' }), 2)
    assert.equal(value(families, 'sstream_proxy_requests_total', { route: 'file', status: '404' }), 1)
    assert.equal(value(families, 'sstream_proxy_requests_total', { route: 'metadata', status: '200' }), 1)
    // The second request is a hit; the first is a miss unless the prefetch stored the file first.
    const hits = value(families, 'sstream_proxy_cache_hits_total') ?? 0
    const misses = value(families, 'sstream_proxy_cache_misses_total') ?? 0
    assert.ok(hits >= 1)
    assert.equal(hits + misses, 2)
    assert.ok((value(families, 'sstream_proxy_served_bytes_total') ?? 0) >= 2 * file.size)
    assert.ok((value(families, 'sstream_proxy_upstream_bytes_total') ?? 0) >= file.size)
    const upstreamRequests = value(families, 'sstream_proxy_upstream_requests_total') ?? 0
    assert.ok(upstreamRequests >= 4, 'index, two products documents and the file went upstream')
    assert.equal(value(families, 'sstream_proxy_upstream_request_duration_seconds_count'), upstreamRequests)
    assert.equal(value(families, 'sstream_proxy_upstream_errors_total', { kind: 'network' }), 0)
    assert.equal(value(families, 'sstream_proxy_verification_failures_total'), 0)
    assert.equal(value(families, 'sstream_proxy_cache_files'), status.cache.files)
    assert.equal(value(families, 'sstream_proxy_cache_bytes'), status.cache.bytes)
    assert.equal(value(families, 'sstream_proxy_selection_files', { mirror: 'stable' }), status.mirrors[0]?.selection.files)
    assert.equal(value(families, 'sstream_proxy_upstream_up', { mirror: 'stable' }), 1)
    assert.ok((value(families, 'sstream_proxy_metadata_updated_timestamp_seconds', { mirror: 'stable' }) ?? 0) > Date.now() / 1000 - 60)
    const rss = value(families, 'process_resident_memory_bytes') ?? 0
    assert.ok(rss > 10 * 2 ** 20 && rss < 2 ** 32, `resident memory ${rss} is a process's`)
    const heapUsed = value(families, 'nodejs_heap_size_used_bytes') ?? 0
    assert.ok(heapUsed > 0 && heapUsed <= (value(families, 'nodejs_heap_size_total_bytes') ?? 0))
    assert.ok((value(families, 'nodejs_external_memory_bytes') ?? 0) > 0)
    for (const name of ['sstream_proxy_prefetch_done_files', 'sstream_proxy_prefetch_planned_files', 'sstream_proxy_prefetch_done_bytes', 'sstream_proxy_prefetch_planned_bytes']) {
      assert.equal(families.get(name)?.type, 'gauge', name)
      assert.notEqual(value(families, name, { mirror: 'stable' }), undefined, name)
    }
  })

  test('carries the process metrics operators expect, and its event-loop delay is this process\'s', async () => {
    const scrape = async () => parseExposition(await (await fetch(`${h.proxy.url}/metrics`)).text())
    await scrape()
    // A scrape resets Node's delay histogram, which then measures from its
    // next 10 ms tick: let it tick, then hold the loop; the scrape that
    // follows at once must see a delay at least this long.
    await sleep(50)
    const held = performance.now()
    while (performance.now() - held < 200);
    const families = await scrape()
    for (const name of ['nodejs_eventloop_lag_p99_seconds', 'process_resident_memory_bytes', 'process_open_fds']) {
      assert.equal(families.get(name)?.type, 'gauge', name)
      const sample = value(families, name) ?? NaN
      assert.ok(Number.isFinite(sample) && sample >= 0, `${name} is ${sample}`)
    }
    assert.equal(families.get('nodejs_gc_duration_seconds')?.type, 'histogram')
    assert.ok((value(families, 'nodejs_eventloop_lag_max_seconds') ?? 0) >= 0.15, 'a 200 ms stall shows in the delay since the last scrape')
    assert.ok((value(families, 'process_open_fds') ?? 0) >= 3)
  })

  test('lists exactly the metrics docs/operations.md documents, with their types and labels', async () => {
    const documented = documentedMetrics(await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8'))
    assert.ok(documented.size >= 40, `${documented.size} metrics documented`)
    const families = parseExposition(await (await fetch(`${h.proxy.url}/metrics`)).text())
    for (const [name, { type, labels }] of documented) {
      const family = families.get(name)
      assert.ok(family !== undefined, `${name} is documented but not on /metrics`)
      assert.equal(family.type, type, `${name} is a ${type} as documented`)
      for (const sample of family.samples) {
        const { le: _le, ...rest } = sample.labels
        assert.deepEqual(Object.keys(rest).sort(), [...labels].sort(), `${sample.name} has the documented labels {${labels.join(',')}}`)
      }
    }
    for (const name of families.keys()) assert.ok(documented.has(name), `${name} is on /metrics but not documented in docs/operations.md`)
  })

  test('the upstream client counts HTTP errors, network errors and the latency of answered requests', async () => {
    const client = createUpstreamClient({ connectTimeoutMs: 2_000 })
    try {
      h.upstream.setFault('streams/v1/index.json', { kind: 'status', status: 500 })
      const failed = await client.request(`${h.upstream.url}streams/v1/index.json`)
      failed.body.resume()
      assert.equal(failed.status, 500)
      h.upstream.setFault('streams/v1/index.json', undefined)
      const answered = await client.request(`${h.upstream.url}streams/v1/index.json`)
      answered.body.resume()
      const closed = createServer()
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
      const port = (closed.address() as AddressInfo).port
      await new Promise<void>((resolve) => closed.close(() => resolve()))
      await assert.rejects(client.request(`http://127.0.0.1:${port}/`), /ECONNREFUSED/)
      const stats = client.stats()
      assert.equal(stats.requests, 3)
      assert.equal(stats.httpErrors, 1)
      assert.equal(stats.errors, 1)
      const latency = (await client.latency.get()).values
      const sample = (suffix: string) => latency.find((entry) => entry.metricName === `sstream_proxy_upstream_request_duration_seconds_${suffix}`)?.value ?? NaN
      assert.equal(sample('count'), 2, 'only answered requests are timed')
      assert.ok(sample('sum') > 0 && sample('sum') < 2)
    } finally {
      client.close()
    }
  })

  test('a second proxy in the same process has a registry of its own and the same process metrics', async () => {
    await h.stopProxy()
    await h.restartProxy()
    const families = parseExposition(await (await fetch(`${h.proxy.url}/metrics`)).text())
    assert.equal(value(families, 'sstream_proxy_requests_total', { route: 'file', status: '200' }), undefined, 'the new proxy counts only its own requests')
    assert.equal(families.get('nodejs_eventloop_lag_p99_seconds')?.type, 'gauge')
    assert.ok((value(families, 'process_resident_memory_bytes') ?? 0) > 0)
  })
})
