import assert from 'node:assert/strict'
import { test } from 'node:test'
import { matchesEtag } from '../../src/server/etag.js'

test('If-None-Match matches its own ETag, one of a list, a weak form of it, or *', () => {
  assert.equal(matchesEtag('"abc"', '"abc"'), true)
  assert.equal(matchesEtag('"x", "abc"', '"abc"'), true)
  assert.equal(matchesEtag('W/"abc"', '"abc"'), true)
  assert.equal(matchesEtag(' * ', '"abc"'), true)
})

test('If-None-Match does not match another ETag, an unquoted one, or no header', () => {
  assert.equal(matchesEtag('"abd"', '"abc"'), false)
  assert.equal(matchesEtag('abc', '"abc"'), false)
  assert.equal(matchesEtag('', '"abc"'), false)
  assert.equal(matchesEtag(undefined, '"abc"'), false)
})
