/**
 * The reference filter language of `sstream-mirror`: `KEY OP VALUE` with OP one
 * of `=`, `!=`, `~`, `!~`. Filters test flattened items; a key the item lacks
 * compares as the empty string; `~` is an unanchored regular-expression search.
 */

export type FilterOperator = '=' | '!=' | '~' | '!~'

export interface Filter {
  /** The text the filter was parsed from, for messages and status. */
  readonly source: string
  readonly key: string
  readonly operator: FilterOperator
  readonly value: string
  /** Whether the filter accepts a flattened item. */
  matches(item: ItemAttributes): boolean
}

/** An item's attributes by name, undefined when it lacks one: a `FlatItem`, or any `Map`. */
export interface ItemAttributes {
  get(key: string): unknown
}

export class FilterSyntaxError extends Error {
  override name = 'FilterSyntaxError'
}

// Same grammar as simplestreams/filters.py: the key is word characters, `-` and
// `|`; the longest operator wins, so `arch==amd64` is `=` with value `=amd64`
// and `arch!=x` is `!=` rather than a key ending in `!`.
const FILTER_SYNTAX = /^([\w|-]+)(!=|!~|=|~)(.*)$/s

/** Parses one filter, throwing `FilterSyntaxError` with a message fit for an operator. */
export function parseFilter(source: string): Filter {
  const match = FILTER_SYNTAX.exec(source)
  if (match === null) {
    const key = /^[\w|-]*/.exec(source)?.[0] ?? ''
    if (key === '') {
      throw new FilterSyntaxError(`missing key in "${source}" (expected KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX)`)
    }
    throw new FilterSyntaxError(`unknown operator in "${source}" (use =, !=, ~ or !~)`)
  }
  const [, key, operator, value] = match as unknown as [string, string, FilterOperator, string]
  let test: (actual: string) => boolean
  if (operator === '=' || operator === '!=') {
    test = (actual) => actual === value
  } else {
    let pattern: RegExp
    try {
      pattern = new RegExp(value)
    } catch (error) {
      throw new FilterSyntaxError(`invalid regular expression in "${source}": ${(error as Error).message}`)
    }
    test = (actual) => pattern.test(actual)
  }
  const negated = operator.startsWith('!')
  return {
    source,
    key,
    operator,
    value,
    matches(item) {
      const raw = item.get(key)
      const actual = raw === undefined || raw === null ? '' : String(raw)
      return test(actual) !== negated
    },
  }
}

/** True when every filter accepts the item (an empty list accepts everything). */
export function matchesAll(filters: readonly Filter[], item: ItemAttributes): boolean {
  return filters.every((filter) => filter.matches(item))
}
