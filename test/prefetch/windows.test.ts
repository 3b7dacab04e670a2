import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { isWithinWindows, parseWindow } from '../../src/prefetch/windows.js'

const at = (hours: number, minutes: number) => new Date(2025, 0, 15, hours, minutes, 30)

describe('prefetch windows', () => {
  test('a window that wraps midnight is open late at night and early in the morning only', () => {
    const night = [parseWindow('22:00-06:00')]
    assert.equal(isWithinWindows(night, at(23, 0)), true)
    assert.equal(isWithinWindows(night, at(0, 0)), true)
    assert.equal(isWithinWindows(night, at(5, 59)), true)
    assert.equal(isWithinWindows(night, at(6, 0)), false)
    assert.equal(isWithinWindows(night, at(12, 0)), false)
    assert.equal(isWithinWindows(night, at(21, 59)), false)
    assert.equal(isWithinWindows(night, at(22, 0)), true)
  })

  test('several windows are open together, 24:00 ends the day, and no windows means always', () => {
    const windows = ['01:00-02:00', '12:30-24:00'].map(parseWindow)
    assert.equal(isWithinWindows(windows, at(1, 30)), true)
    assert.equal(isWithinWindows(windows, at(2, 0)), false)
    assert.equal(isWithinWindows(windows, at(23, 59)), true)
    assert.equal(isWithinWindows(windows, at(0, 30)), false)
    assert.equal(isWithinWindows([parseWindow('00:00-24:00')], at(0, 0)), true)
    assert.equal(isWithinWindows([], at(12, 0)), true)
  })

  test('times that are not times of day are refused', () => {
    assert.throws(() => parseWindow('25:00-06:00'), /start that is not a time of day/)
    assert.throws(() => parseWindow('22:00-24:01'), /end that is not a time of day/)
    assert.throws(() => parseWindow('22:00-6:00'), /is not a window/)
    assert.throws(() => parseWindow('08:00-08:00'), /starts where it ends/)
  })
})
