/**
 * The flattened view of a products document, as python-simplestreams builds it
 * (`util.products_exdata` over `walk_products`): each item carries every
 * attribute of the document, its product and its version, lower levels
 * overriding higher ones, plus the names that identify it. Filters and file
 * lists read items only through this view, because generators move values that
 * all children share up to the parent.
 */

import type { Attributes, ProductsDocument, StreamItem, StreamProduct, StreamVersion } from './types.js'

/**
 * One item seen through inheritance. Attributes are looked up on demand
 * rather than copied: a products document of 10,000 products has 40,000
 * items, and a filter reads one or two attributes of each.
 */
export class FlatItem {
  constructor(
    readonly doc: ProductsDocument,
    readonly productName: string,
    readonly product: StreamProduct,
    readonly versionName: string,
    readonly version: StreamVersion,
    readonly itemName: string,
    readonly item: StreamItem,
  ) {}

  /**
   * The attribute `key` as the reference's flattened item has it, or
   * undefined. The identifying names always say where the item is, whatever an
   * attribute of the same name claims; any other key comes from the lowest
   * level holding it as a scalar.
   */
  get(key: string): string | number | boolean | undefined {
    switch (key) {
      case 'content_id':
        return this.doc.content_id
      case 'product_name':
        return this.productName
      case 'version_name':
        return this.versionName
      case 'item_name':
        return this.itemName
    }
    return scalar(this.item, key) ?? scalar(this.version, key) ?? scalar(this.product, key) ?? scalar(this.doc, key)
  }
}

// The reference inherits only scalar values (its `stringitems`), which also keeps
// the `products`/`versions`/`items` containers out. Numbers stay numbers here so
// `size` reads as one; filters compare `String(value)`. Own properties only, so
// `__proto__` or `constructor` are plain attributes.
function scalar(level: Attributes, key: string): string | number | boolean | undefined {
  if (!Object.hasOwn(level, key)) return undefined
  const value = level[key]
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? value : undefined
}

/** The items of one product of `doc`, in document order. */
export function productItems(doc: ProductsDocument, productName: string, product: StreamProduct): FlatItem[] {
  const items: FlatItem[] = []
  for (const [versionName, version] of Object.entries(product.versions)) {
    for (const [itemName, item] of Object.entries(version.items)) {
      items.push(new FlatItem(doc, productName, product, versionName, version, itemName, item))
    }
  }
  return items
}
