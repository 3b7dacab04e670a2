import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseRange } from '../../src/server/byte-range.js'

const SIZE = 1000

describe('parseRange', () => {
  test('no header means the whole file', () => {
    assert.deepEqual(parseRange(undefined, SIZE), { kind: 'full' })
  })

  test('a closed range is honoured as given', () => {
    assert.deepEqual(parseRange('bytes=0-0', SIZE), { kind: 'partial', start: 0, end: 0 })
    assert.deepEqual(parseRange('bytes=10-19', SIZE), { kind: 'partial', start: 10, end: 19 })
    assert.deepEqual(parseRange('bytes=0-999', SIZE), { kind: 'partial', start: 0, end: 999 })
  })

  test('a last byte past the end is clamped to the end', () => {
    assert.deepEqual(parseRange('bytes=990-5000', SIZE), { kind: 'partial', start: 990, end: 999 })
    assert.deepEqual(parseRange('bytes=0-99999999999999999999', SIZE), { kind: 'partial', start: 0, end: 999 })
  })

  test('an open-ended range runs to the last byte', () => {
    assert.deepEqual(parseRange('bytes=0-', SIZE), { kind: 'partial', start: 0, end: 999 })
    assert.deepEqual(parseRange('bytes=500-', SIZE), { kind: 'partial', start: 500, end: 999 })
    assert.deepEqual(parseRange('bytes=999-', SIZE), { kind: 'partial', start: 999, end: 999 })
  })

  test('a suffix range is the last N bytes, the whole file when N exceeds it', () => {
    assert.deepEqual(parseRange('bytes=-1', SIZE), { kind: 'partial', start: 999, end: 999 })
    assert.deepEqual(parseRange('bytes=-100', SIZE), { kind: 'partial', start: 900, end: 999 })
    assert.deepEqual(parseRange('bytes=-5000', SIZE), { kind: 'partial', start: 0, end: 999 })
  })

  test('a start at or past the end, a zero suffix, and any range of an empty file are unsatisfiable', () => {
    assert.deepEqual(parseRange('bytes=1000-', SIZE), { kind: 'unsatisfiable' })
    assert.deepEqual(parseRange('bytes=1000-1001', SIZE), { kind: 'unsatisfiable' })
    assert.deepEqual(parseRange('bytes=5000-', SIZE), { kind: 'unsatisfiable' })
    assert.deepEqual(parseRange('bytes=-0', SIZE), { kind: 'unsatisfiable' })
    assert.deepEqual(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' })
    assert.deepEqual(parseRange('bytes=-10', 0), { kind: 'unsatisfiable' })
  })

  test('several ranges are ignored: the whole file is sent', () => {
    assert.deepEqual(parseRange('bytes=0-1,5-6', SIZE), { kind: 'full' })
    assert.deepEqual(parseRange('bytes=0-1, 5-', SIZE), { kind: 'full' })
  })

  test('malformed headers, other units and a last byte before the first are ignored', () => {
    for (const header of ['', 'bytes', 'bytes=', 'bytes=-', 'bytes=a-b', 'bytes=1-2-3', 'bytes=+1-2', 'bytes=-1-2', 'bytes=1.5-2', 'items=0-1', 'bytes 0-1', '0-1', 'bytes=20-10']) {
      assert.deepEqual(parseRange(header, SIZE), { kind: 'full' }, header)
    }
  })

  test('surrounding whitespace does not matter', () => {
    assert.deepEqual(parseRange('  bytes=1-2 ', SIZE), { kind: 'partial', start: 1, end: 2 })
  })
})
