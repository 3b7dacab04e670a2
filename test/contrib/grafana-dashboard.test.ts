/**
 * contrib/grafana/sstream-proxy-fleet.json against a real proxy on an S3 store
 * (Ceph RGW, so the store's metrics have samples): every metric a query or a
 * variable of the dashboard selects is a series on `/metrics` (histograms by
 * their `_bucket`, `_sum` and `_count` series, as PromQL names them), with
 * the labels its matchers name; and the per-replica row repeats on
 * `instance` with every panel of it filtered to its replica.
 */

import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Config } from '../../src/config/types.js'
import { startCephRgw, type CephRgw } from '../support/ceph-rgw.js'
import { MIRROR_PATH, startHarness, type Harness } from '../support/proxy-harness.js'

const DASHBOARD = new URL('../../contrib/grafana/sstream-proxy-fleet.json', import.meta.url)
/** Labels Prometheus adds to every series it scrapes: not on `/metrics`. */
const TARGET_LABELS = new Set(['instance', 'job'])
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])

interface Selector {
  metric: string
  /** Label names its matchers name. */
  labels: string[]
}

interface Panel {
  type: string
  title: string
  repeat?: string
  panels?: Panel[]
  targets?: Array<{ expr: string }>
}

interface Dashboard {
  panels: Panel[]
  templating: { list: Array<{ name: string; type: string; definition?: string; query?: string | { query: string } }> }
}

/**
 * The series a PromQL expression selects: each metric name with the label
 * names of its matchers. Ranges, grouping clauses and strings are taken out
 * first; what is left that is a name and not a function call or a keyword is
 * a metric.
 */
function selectors(expr: string): Selector[] {
  const found: Selector[] = []
  let text = expr.replace(/\[[^\]]*\]/g, ' ')
  text = text.replace(/([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}/g, (_all, metric: string | undefined, matchers: string) => {
    const pairs = [...matchers.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)]
    const name = metric ?? pairs.find(([, label]) => label === '__name__')?.[2]
    if (name === undefined) throw new Error(`${expr}: a selector without a metric name`)
    found.push({ metric: name, labels: pairs.map(([, label = '']) => label).filter((label) => label !== '__name__') })
    return ' '
  })
  text = text.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ').replace(/"(?:[^"\\]|\\.)*"/g, ' ')
  for (const [, name = ''] of text.matchAll(/(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()/g)) {
    if (!KEYWORDS.has(name.toLowerCase())) found.push({ metric: name, labels: [] })
  }
  return found
}

/** What the dashboard selects, with where: every panel target, and every variable's `label_values(selector, label)`. */
function dashboardSelectors(dashboard: Dashboard): Array<Selector & { where: string }> {
  const all: Array<Selector & { where: string }> = []
  const walk = (panels: readonly Panel[]) => {
    for (const panel of panels) {
      for (const { expr } of panel.targets ?? []) all.push(...selectors(expr).map((selector) => ({ ...selector, where: `panel "${panel.title}": ${expr}` })))
      walk(panel.panels ?? [])
    }
  }
  walk(dashboard.panels)
  for (const variable of dashboard.templating.list.filter(({ type }) => type === 'query')) {
    const query = typeof variable.query === 'string' ? variable.query : (variable.query?.query ?? '')
    for (const text of new Set([query, variable.definition ?? query])) {
      const selector = /^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$/.exec(text)?.[1]
      assert.ok(selector !== undefined, `variable ${variable.name}: "${text}" is label_values(selector, label)`)
      all.push(...selectors(selector).map((found) => ({ ...found, where: `variable ${variable.name}: ${text}` })))
    }
  }
  return all
}

/** Each series name on a `/metrics` page with the label names its samples carry. */
function exposedSeries(exposition: string): Map<string, Set<string>> {
  const series = new Map<string, Set<string>>()
  for (const line of exposition.split('\n')) {
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s/.exec(line)
    if (sample === null) continue
    const labels = series.get(sample[1] as string) ?? new Set<string>()
    for (const [, label = ''] of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(label)
    series.set(sample[1] as string, labels)
  }
  return series
}

/** One line for each metric or label the dashboard names that `/metrics` does not have. */
function problems(dashboard: Dashboard, exposition: string): string[] {
  const series = exposedSeries(exposition)
  const found: string[] = []
  for (const { metric, labels, where } of dashboardSelectors(dashboard)) {
    const exposed = series.get(metric)
    if (exposed === undefined) {
      found.push(`${metric} is not on /metrics (${where})`)
      continue
    }
    for (const label of labels) if (!TARGET_LABELS.has(label) && !exposed.has(label)) found.push(`${metric} has no label ${label} (${where})`)
  }
  return found
}

describe('selectors', () => {
  test('finds the metrics of an expression, not its functions, keywords, grouping labels or ranges', () => {
    assert.deepEqual(
      selectors('histogram_quantile(0.99, sum by (le, operation) (rate(sstream_proxy_store_request_duration_seconds_bucket{job=~"$job",instance=~"$instance"}[$__rate_interval])))'),
      [{ metric: 'sstream_proxy_store_request_duration_seconds_bucket', labels: ['job', 'instance'] }],
    )
    assert.deepEqual(selectors('sum(rate(a_total[5m])) / (sum(rate(a_total[5m])) + 1e3 * b) > bool 0.5 and on (instance) c{x!="y"}'), [
      { metric: 'c', labels: ['x'] },
      { metric: 'a_total', labels: [] },
      { metric: 'a_total', labels: [] },
      { metric: 'b', labels: [] },
    ])
    assert.deepEqual(selectors('{__name__="process_open_fds", job="x"}'), [{ metric: 'process_open_fds', labels: ['job'] }])
  })
})

describe('contrib/grafana/sstream-proxy-fleet.json', () => {
  let rgw: CephRgw
  let h: Harness
  let dashboard: Dashboard
  let exposition: string

  before(async () => {
    dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard
    rgw = await startCephRgw()
    await rgw.createBucket('dashboard')
    const store: Config['store'] = { type: 's3', endpoint: rgw.endpoint, bucket: 'dashboard', prefix: `${randomUUID()}/`, region: 'us-east-1', forcePathStyle: true, abandonedUploadAge: 86_400 }
    // A replica of a fleet (of one), so that the fleet's gauges have series too.
    const secretFile = join(await mkdtemp(join(tmpdir(), 'sstream-dashboard-')), 'fleet.secret')
    await writeFile(secretFile, `${randomUUID()}\n`)
    const fleet: Config['fleet'] = { advertise: 'http://127.0.0.1:1/', secretFile, claimTtl: 5, leaseTtl: 30 }
    h = await startHarness({ config: { store, fleet }, env: { AWS_ACCESS_KEY_ID: rgw.keys.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.keys.secretAccessKey } })
    // A miss (filled into the bucket), a hit streamed from it, metadata and a 404.
    const kernel = h.tree.items.find((item) => item.item === 'boot-kernel' && item.path.startsWith('noble/amd64/20250201/'))
    assert.ok(kernel)
    assert.equal((await fetch(h.url(kernel.path)).then((response) => response.arrayBuffer())).byteLength, kernel.size)
    await h.proxy.core.store.fills.idle()
    const hit = await fetch(h.url(kernel.path))
    assert.equal(hit.headers.get('x-cache'), 'HIT')
    await hit.arrayBuffer()
    await (await fetch(`${h.proxy.url}${MIRROR_PATH}streams/v1/index.sjson`)).arrayBuffer()
    assert.equal((await fetch(h.url('noble/arm64/20250201/squashfs'))).status, 404)
    exposition = await (await fetch(`${h.proxy.url}/metrics`)).text()
  })
  after(async () => {
    await h?.close()
    await rgw?.down()
  })

  test('every metric its queries and variables select is a series on /metrics, with the labels they match on', () => {
    const selected = dashboardSelectors(dashboard)
    assert.ok(selected.length >= 20, `${selected.length} selectors found`)
    assert.ok(exposition.includes('sstream_proxy_store_request_duration_seconds_bucket{'), 'the S3 store\'s requests are on /metrics')
    assert.deepEqual(problems(dashboard, exposition), [])
  })

  test('a misspelled metric or label in a query is caught', () => {
    const broken = structuredClone(dashboard)
    const target = broken.panels.flatMap((panel) => panel.targets ?? []).find(({ expr }) => expr.includes('sstream_proxy_served_bytes_total'))
    assert.ok(target)
    target.expr = target.expr.replace('sstream_proxy_served_bytes_total', 'sstream_proxy_serverd_bytes_total')
    const latency = broken.panels.flatMap((panel) => panel.targets ?? []).find(({ expr }) => expr.includes('sstream_proxy_store_request_duration_seconds_bucket'))
    assert.ok(latency)
    latency.expr = latency.expr.replace('instance=~', 'operaton=~')
    assert.deepEqual(
      problems(broken, exposition).map((line) => line.replace(/ \(.*$/, '')),
      ['sstream_proxy_serverd_bytes_total is not on /metrics', 'sstream_proxy_store_request_duration_seconds_bucket has no label operaton'],
    )
  })

  test('one row per replica: a row repeated on the instance variable, each of its panels filtered to that replica', () => {
    const variable = dashboard.templating.list.find(({ name }) => name === 'instance')
    assert.ok(variable, 'an instance variable')
    const at = dashboard.panels.findIndex((panel) => panel.type === 'row' && panel.repeat === 'instance')
    assert.ok(at >= 0, 'a row repeated on instance')
    const next = dashboard.panels.findIndex((panel, i) => i > at && panel.type === 'row')
    const replicaPanels = dashboard.panels.slice(at + 1, next < 0 ? undefined : next)
    for (const panel of replicaPanels) {
      for (const { expr } of panel.targets ?? []) assert.match(expr, /instance=~"\$instance"/, `"${panel.title}" filters on the replica: ${expr}`)
    }
    const named = new Set(replicaPanels.flatMap((panel) => (panel.targets ?? []).flatMap(({ expr }) => selectors(expr).map(({ metric }) => metric))))
    for (const metric of [
      'sstream_proxy_requests_total',
      'sstream_proxy_cache_hits_total',
      'sstream_proxy_cache_misses_total',
      'sstream_proxy_served_bytes_total',
      'sstream_proxy_upstream_bytes_total',
      'sstream_proxy_active_fills',
      'sstream_proxy_store_request_duration_seconds_bucket',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      assert.ok(named.has(metric), `the replica row shows ${metric}`)
    }
  })
})
