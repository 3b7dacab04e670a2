/**
 * How the `prefetch` command shows a running pass: a redrawn bar with bytes,
 * rate and ETA on a terminal, otherwise a plain line every few seconds that
 * logs and CI keep readable.
 */

import type { PassCounts } from './pass-history.js'

export interface ProgressOutput {
  write(chunk: string): unknown
  isTTY?: boolean
}

export interface ProgressDisplayOptions {
  out: ProgressOutput
  /** Between plain lines; the bar redraws four times a second. */
  lineIntervalMs?: number
  now?: () => number
}

const BAR_WIDTH = 24
const BAR_REDRAW_MS = 250

/** Follows `progress` until the returned function is called, which writes the final state. */
export function showProgress(label: string, progress: () => PassCounts, options: ProgressDisplayOptions): () => void {
  const { out } = options
  const now = options.now ?? Date.now
  const tty = out.isTTY === true
  const startedAt = now()
  const draw = (final: boolean) => {
    const line = describe(label, progress(), now() - startedAt, tty)
    if (tty) out.write(`\r\x1b[K${line}${final ? '\n' : ''}`)
    else out.write(`${line}\n`)
  }
  const timer = setInterval(() => draw(false), tty ? BAR_REDRAW_MS : (options.lineIntervalMs ?? 5_000))
  timer.unref()
  return () => {
    clearInterval(timer)
    draw(true)
  }
}

export function describe(label: string, counts: PassCounts, elapsedMs: number, bar: boolean): string {
  const { filesDone, filesTotal, bytesDone, bytesTotal, errors } = counts
  const rate = elapsedMs > 0 ? (bytesDone / elapsedMs) * 1000 : 0
  const eta = rate > 0 && bytesDone < bytesTotal ? formatSeconds((bytesTotal - bytesDone) / rate) : '-'
  const fraction = bytesTotal > 0 ? Math.min(1, bytesDone / bytesTotal) : 1
  const parts = [
    `${filesDone}/${filesTotal} files`,
    `${formatBytes(bytesDone)}/${formatBytes(bytesTotal)}`,
    `${formatBytes(rate)}/s`,
    `ETA ${eta}`,
  ]
  if (errors.length > 0) parts.push(`${errors.length} failed`)
  const filled = Math.round(fraction * BAR_WIDTH)
  const head = bar ? `${label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${Math.floor(fraction * 100)}%` : `${label}: ${Math.floor(fraction * 100)}%`
  return `${head} ${parts.join(', ')}`
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`
}

function formatSeconds(seconds: number): string {
  const whole = Math.ceil(seconds)
  const h = Math.floor(whole / 3600)
  const m = Math.floor((whole % 3600) / 60)
  const s = String(whole % 60).padStart(2, '0')
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`
}
