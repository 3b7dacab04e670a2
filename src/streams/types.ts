/**
 * The SimpleStreams documents this proxy reads and writes: `index:1.0` and
 * `products:1.0` (see the facts page, §1). Unknown attributes are kept as they
 * are, so a filtered document carries everything upstream said.
 */

export type Attributes = Record<string, unknown>

export interface StreamItem extends Attributes {
  ftype?: string
  path?: string
  sha256?: string
  md5?: string
  sha512?: string
  size?: number
}

export interface StreamVersion extends Attributes {
  items: Record<string, StreamItem>
}

export interface StreamProduct extends Attributes {
  versions: Record<string, StreamVersion>
}

export interface ProductsDocument extends Attributes {
  format: 'products:1.0'
  content_id: string
  products: Record<string, StreamProduct>
}

export interface IndexEntry extends Attributes {
  path: string
  format?: string
  datatype?: string
  products?: string[]
  updated?: string
}

export interface IndexDocument extends Attributes {
  format: 'index:1.0'
  index: Record<string, IndexEntry>
}
