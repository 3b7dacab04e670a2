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
function scalarView(parent: object | null, attributes: Attributes): Record<string, unknown> {
  const view = Object.create(parent) as Record<string, unknown>
  for (const key of Object.keys(attributes)) {
    const value = attributes[key]
    const type = typeof value
    if (type === 'string' || type === 'number' || type === 'boolean') view[key] = value
  }
  return view
}

/**
 * Every item of the document, in document order, seen through inheritance.
 * Each level is an object whose prototype is the level above, ending in null:
 * lower levels override by shadowing, a level is built once however many items
 * share it, and with no `Object.prototype` in the chain a key such as
 * `__proto__` or `constructor` is a plain attribute. Read attributes by name
 * (or `for...in`); `Object.keys` and spread see only the item's own level.
 */
export function flattenItems(doc: ProductsDocument): FlatItem[] {
  const top = scalarView(null, doc)
  const flat: FlatItem[] = []
  for (const [productName, product] of Object.entries(doc.products)) {
    const fromProduct = scalarView(top, product)
    for (const [versionName, version] of Object.entries(product.versions)) {
      const fromVersion = scalarView(fromProduct, version)
      for (const [itemName, item] of Object.entries(version.items)) {
        const view = scalarView(fromVersion, item)
        // The identifying names come last: they always say where the item is,
        // whatever an attribute of the same name claims.
        view.content_id = doc.content_id
        view.product_name = productName
        view.version_name = versionName
        view.item_name = itemName
        flat.push(view as FlatItem)
      }
    }
  }
  return flat
}
