import { test, describe } from 'node:test'
import assert from 'node:assert/strict'
import { DurationSyntaxError, parseDuration } from '../../src/config/duration.js'

describe('parseDuration', () => {
  test('reads seconds, minutes, hours and days', () => {
    assert.equal(parseDuration('30s'), 30)
    assert.equal(parseDuration('10m'), 600)
    assert.equal(parseDuration('1h'), 3600)
    assert.equal(parseDuration('1d'), 86400)
    assert.equal(parseDuration('90m'), 5400)
  })

  test('takes a positive number as seconds', () => {
    assert.equal(parseDuration(45), 45)
    assert.equal(parseDuration(1.5), 1.5)
  })

  test('rejects unknown units with a message listing the accepted forms', () => {
    assert.throws(() => parseDuration('10x'), {
      name: 'DurationSyntaxError',
      message: '"10x" is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)',
    })
  })

  test('rejects zero, negative, non-finite, unitless, spaced and non-scalar values', () => {
    for (const value of ['0s', '0', '10', '-5m', '1.5h', ' 10m', '10 m', '10M', '', 0, -1, Number.NaN, Infinity, true, null, undefined, [], {}]) {
      assert.throws(() => parseDuration(value), DurationSyntaxError, `accepted ${String(value)}`)
    }
  })

  test('names a non-string value as JSON in the message', () => {
    assert.throws(() => parseDuration(-1), { message: '-1 is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)' })
    assert.throws(() => parseDuration(null), { message: 'null is not a duration (use 30s, 10m, 1h, 1d or a number of seconds)' })
  })
})
