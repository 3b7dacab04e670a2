/**
 * The Prometheus text exposition format (version 0.0.4): `# HELP` and
 * `# TYPE` lines, then one line per sample, label values escaped. Small on
 * purpose: the proxy exposes a fixed set of counters, gauges and one
 * histogram, which does not call for a client library.
 */

import type { HistogramSnapshot } from './histogram.js'

export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

export type Labels = Readonly<Record<string, string>>

export interface Sample {
  labels?: Labels
  value: number
}

export type MetricFamily =
  | { type: 'counter' | 'gauge'; name: string; help: string; samples: readonly Sample[] }
  | { type: 'histogram'; name: string; help: string; series: ReadonlyArray<{ labels?: Labels; histogram: HistogramSnapshot }> }

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/

export function encodeExposition(families: readonly MetricFamily[]): string {
  const lines: string[] = []
  const seen = new Set<string>()
  for (const family of families) {
    if (!METRIC_NAME.test(family.name)) throw new Error(`invalid metric name ${JSON.stringify(family.name)}`)
    if (seen.has(family.name)) throw new Error(`metric ${family.name} listed twice`)
    seen.add(family.name)
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`)
    if (family.type !== 'histogram') {
      for (const sample of family.samples) lines.push(sampleLine(family.name, sample.labels, sample.value))
      continue
    }
    for (const { labels, histogram } of family.series) {
      histogram.bounds.forEach((bound, i) => {
        lines.push(sampleLine(`${family.name}_bucket`, { ...labels, le: formatValue(bound) }, histogram.cumulative[i] ?? 0))
      })
      lines.push(
        sampleLine(`${family.name}_bucket`, { ...labels, le: '+Inf' }, histogram.count),
        sampleLine(`${family.name}_sum`, labels, histogram.sum),
        sampleLine(`${family.name}_count`, labels, histogram.count),
      )
    }
  }
  return `${lines.join('\n')}\n`
}

function sampleLine(name: string, labels: Labels | undefined, value: number): string {
  const pairs = Object.entries(labels ?? {}).map(([label, text]) => {
    if (!LABEL_NAME.test(label) || label.startsWith('__')) throw new Error(`invalid label name ${JSON.stringify(label)} on ${name}`)
    return `${label}="${escapeLabelValue(text)}"`
  })
  return `${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${formatValue(value)}`
}

/** Go's float formatting as Prometheus parses it: `+Inf`, `-Inf`, `NaN`, else the shortest decimal. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  return String(value)
}

export function escapeLabelValue(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}
