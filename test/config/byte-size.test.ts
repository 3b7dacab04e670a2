import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ByteSizeSyntaxError, parseByteSize } from '../../src/config/byte-size.js'

describe('parseByteSize', () => {
  test('reads bytes and binary or decimal units', () => {
    assert.equal(parseByteSize(4096), 4096)
    assert.equal(parseByteSize('512B'), 512)
    assert.equal(parseByteSize('64KiB'), 64 * 1024)
    assert.equal(parseByteSize('64MiB'), 64 * 1024 * 1024)
    assert.equal(parseByteSize('2GiB'), 2 * 1024 ** 3)
    assert.equal(parseByteSize('64 MB'), 64_000_000)
  })

  test('refuses what is not a positive whole size, naming the value', () => {
    for (const value of [0, -1, 1.5, '64', '64mb', 'MiB', '1.5MiB', '', null, true, {}]) {
      assert.throws(() => parseByteSize(value), (error: Error) => error instanceof ByteSizeSyntaxError && error.message.startsWith(JSON.stringify(value)), String(value))
    }
  })
})
