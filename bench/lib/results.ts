/**
 * What every benchmark reports: a figure, the reference measured in the same
 * run, their ratio and the goal, printed as a table and written as JSON.
 */

import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { dirname } from 'node:path'

export interface BenchResult {
  /** Issue 7's goal number and a short name, e.g. `1 cached 512 MB, 8 clients`. */
  name: string
  /** The proxy's figure, with unit. */
  value: number
  /** What the proxy is compared with, measured in the same run, same unit. */
  reference: number
  unit: string
  referenceName: string
  /** How the ratio is formed, e.g. `proxy / nginx`. */
  ratioName: string
  ratio: number
  /** e.g. `>= 0.75`. */
  goal: string
  met: boolean
  /** Raw figures behind the row. */
  details?: Record<string, number | string>
}

export interface Machine {
  cpu: string
  cores: number
  memoryGiB: number
  node: string
  kernel: string
}

export function describeMachine(kernel: string): Machine {
  const [cpu] = cpus()
  return { cpu: cpu?.model.trim() ?? 'unknown', cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, kernel }
}

export function formatTable(results: readonly BenchResult[]): string {
  const rows = [
    ['benchmark', 'proxy', 'reference', 'ratio', 'goal', 'met'],
    ...results.map((result) => [
      result.name,
      `${format(result.value)} ${result.unit}`,
      `${format(result.reference)} ${result.unit} (${result.referenceName})`,
      `${result.ratio.toFixed(2)} (${result.ratioName})`,
      result.goal,
      result.met ? 'yes' : 'NO',
    ]),
  ]
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)))
  const line = (row: string[]) => `| ${row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`
  return [line(rows[0]!), `|${widths.map((width) => '-'.repeat(width + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n')
}

function format(value: number): string {
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US')
  return value.toFixed(Math.abs(value) >= 10 ? 1 : 2)
}

export async function writeResults(path: string, machine: Machine, results: readonly BenchResult[], notes: readonly string[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, `${JSON.stringify({ date: new Date().toISOString(), machine, results, notes }, null, 2)}\n`)
}

export const MB = 1e6
export const MiB = 2 ** 20

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
