import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { FilterSyntaxError, matchesAll, parseFilter } from '../../src/streams/filter.js'

/** A flattened item as filters read it. */
const item = (attributes: Record<string, unknown>) => new Map(Object.entries(attributes))
const amd64 = item({ arch: 'amd64', release: 'noble', os: 'ubuntu', size: 42 })

describe('parseFilter', () => {
  test('~ is an unanchored search: arch~md6 matches amd64', () => {
    assert.equal(parseFilter('arch~md6').matches(amd64), true)
    assert.equal(parseFilter('arch~^md6').matches(amd64), false)
  })

  test('= compares the whole value exactly, so a trailing space matches nothing', () => {
    assert.equal(parseFilter('arch=amd64').matches(amd64), true)
    assert.equal(parseFilter('arch=amd64 ').matches(amd64), false)
    assert.equal(parseFilter('arch=amd').matches(amd64), false)
  })

  test('a missing key compares as the empty string', () => {
    assert.equal(parseFilter('missing=').matches(amd64), true)
    assert.equal(parseFilter('missing!=x').matches(amd64), true)
    assert.equal(parseFilter('missing=x').matches(amd64), false)
    assert.equal(parseFilter('missing~.').matches(amd64), false)
  })

  test('the operator is the first one found, so arch==amd64 means the value "=amd64"', () => {
    const filter = parseFilter('arch==amd64')
    assert.deepEqual([filter.key, filter.operator, filter.value], ['arch', '=', '=amd64'])
    assert.equal(filter.matches(amd64), false)
    assert.equal(filter.matches(item({ arch: '=amd64' })), true)
  })

  test('!= and !~ negate', () => {
    assert.equal(parseFilter('arch!=amd64').matches(amd64), false)
    assert.equal(parseFilter('arch!=arm64').matches(amd64), true)
    assert.equal(parseFilter('arch!~64$').matches(amd64), false)
    assert.equal(parseFilter('arch!~^arm').matches(amd64), true)
  })

  test('release~(jammy|noble) accepts either release and nothing else', () => {
    const filter = parseFilter('release~(jammy|noble)')
    assert.equal(filter.matches(item({ release: 'jammy' })), true)
    assert.equal(filter.matches(item({ release: 'noble' })), true)
    assert.equal(filter.matches(item({ release: 'focal' })), false)
  })

  test('non-string values compare through their string form', () => {
    assert.equal(parseFilter('size=42').matches(amd64), true)
  })

  test('keys may contain - and |', () => {
    const dash = parseFilter('bootloader-type=uefi')
    assert.equal(dash.key, 'bootloader-type')
    assert.equal(dash.matches(item({ 'bootloader-type': 'uefi' })), true)
    const pipe = parseFilter('a|b~x')
    assert.deepEqual([pipe.key, pipe.operator, pipe.value], ['a|b', '~', 'x'])
    assert.equal(pipe.matches(item({ 'a|b': 'xyz' })), true)
  })

  test('keeps the source text', () => {
    assert.equal(parseFilter('os~(grub*|pxelinux)').source, 'os~(grub*|pxelinux)')
  })

  test('an unknown operator is named with the operators that exist', () => {
    assert.throws(() => parseFilter('arch>1'), {
      name: 'FilterSyntaxError',
      message: 'unknown operator in "arch>1" (use =, !=, ~ or !~)',
    })
  })

  test('a filter without a key is refused', () => {
    assert.throws(() => parseFilter('=amd64'), {
      name: 'FilterSyntaxError',
      message: 'missing key in "=amd64" (expected KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX)',
    })
  })

  test('a bad regular expression is reported with the filter text', () => {
    assert.throws(
      () => parseFilter('release~(jammy'),
      (error: unknown) => {
        assert.ok(error instanceof FilterSyntaxError)
        assert.match(error.message, /^invalid regular expression in "release~\(jammy": .*Unterminated group/)
        return true
      },
    )
  })
})

describe('matchesAll', () => {
  test('ANDs the filters, and an empty list accepts everything', () => {
    const filters = ['arch=amd64', 'release~(jammy|noble)'].map(parseFilter)
    assert.equal(matchesAll(filters, amd64), true)
    assert.equal(matchesAll(filters, item({ arch: 'amd64', release: 'focal' })), false)
    assert.equal(matchesAll([], item({})), true)
  })
})
