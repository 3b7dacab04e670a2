/**
 * Prefetch windows: `"22:00-06:00"`, local time, a window may wrap midnight.
 * Outside every window no scheduled pass starts and a running one pauses.
 * An empty list means always open.
 */

export class WindowSyntaxError extends Error {
  override name = 'WindowSyntaxError'
}

export interface TimeWindow {
  /** Minutes after local midnight. */
  start: number
  /** Minutes after local midnight, up to 1440; below `start` when the window wraps midnight. */
  end: number
  text: string
}

const WINDOW_SYNTAX = /^([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})$/

export function parseWindow(text: string): TimeWindow {
  const match = WINDOW_SYNTAX.exec(text)
  const fail = (problem: string): never => {
    throw new WindowSyntaxError(`"${text}" ${problem}`)
  }
  if (match === null) return fail('is not a window (use "HH:MM-HH:MM" in local time, e.g. "22:00-06:00")')
  const [startHour, startMinute, endHour, endMinute] = match.slice(1).map(Number) as [number, number, number, number]
  if (startHour > 23 || startMinute > 59) fail('has a start that is not a time of day (00:00 to 23:59)')
  // 24:00 may end a window, so that "00:00-24:00" reads as the whole day.
  if (endMinute > 59 || endHour > 24 || (endHour === 24 && endMinute > 0)) fail('has an end that is not a time of day (00:00 to 24:00)')
  const start = startHour * 60 + startMinute
  const end = endHour * 60 + endMinute
  if (start === end) fail('starts where it ends (use "00:00-24:00" for the whole day)')
  return { start, end, text }
}

function minuteOfDay(date: Date): number {
  return date.getHours() * 60 + date.getMinutes()
}

function contains(window: TimeWindow, minute: number): boolean {
  return window.start < window.end ? minute >= window.start && minute < window.end : minute >= window.start || minute < window.end
}

/** True when `date` (local time) is inside one of `windows`; always true for no windows. */
export function isWithinWindows(windows: readonly TimeWindow[], date: Date): boolean {
  if (windows.length === 0) return true
  const minute = minuteOfDay(date)
  return windows.some((window) => contains(window, minute))
}
