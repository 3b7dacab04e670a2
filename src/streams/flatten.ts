/**
 * The flattened view of a products document, as python-simplestreams builds it
 * (`util.products_exdata` over `walk_products`): each item carries every
 * attribute of the document, its product and its version, lower levels
 * overriding higher ones, plus the names that identify it. Filters and file
 * lists read items only through this view, because generators move values that
 * all children share up to the parent.
 */

import type { Attributes, FlatItem, ProductsDocument } from './types.js'

// The reference inherits only scalar values (its `stringitems`), which also keeps
// the `products`/`versions`/`items` containers out. Numbers stay numbers here so
// `size` reads as one; filters compare `String(value)`.
function scalarEntries(attributes: Attributes): Array<[string, unknown]> {
  return Object.entries(attributes).filter(([, value]) => {
    const type = typeof value
    return type === 'string' || type === 'number' || type === 'boolean'
  })
}

/** Every item of the document, in document order, seen through inheritance. */
export function flattenItems(doc: ProductsDocument): FlatItem[] {
  const top = scalarEntries(doc)
  const flat: FlatItem[] = []
  for (const [productName, product] of Object.entries(doc.products)) {
    const fromProduct = [...top, ...scalarEntries(product)]
    for (const [versionName, version] of Object.entries(product.versions)) {
      const fromVersion = [...fromProduct, ...scalarEntries(version)]
      for (const [itemName, item] of Object.entries(version.items)) {
        // Built with fromEntries so that a key such as `__proto__` stays a plain
        // attribute. The identifying names come last: they always say where the
        // item is, whatever an attribute of the same name claims.
        flat.push(
          Object.fromEntries([
            ...fromVersion,
            ...scalarEntries(item),
            ['content_id', doc.content_id],
            ['product_name', productName],
            ['version_name', versionName],
            ['item_name', itemName],
          ]) as FlatItem,
        )
      }
    }
  }
  return flat
}
