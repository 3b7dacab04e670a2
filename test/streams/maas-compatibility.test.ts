import { before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { checkMaasCompatibility, describeMaasProblem, type MaasDocuments } from '../../src/streams/maas-compatibility.js'
import type { ProductsDocument } from '../../src/streams/types.js'
import { buildUpstreamTree, type UpstreamTree } from '../support/upstream-tree.js'

const IMAGES = 'com.ubuntu.maas:stable:v3:download'
const BOOTLOADERS = 'com.ubuntu.maas:stable:1:bootloader-download'
const CENTOS = 'com.ubuntu.maas:stable:centos-bases-download'
const NOBLE_GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04'
const GRUB = 'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64'

let tree: UpstreamTree
before(async () => {
  tree = await buildUpstreamTree({ arches: ['amd64'] })
})

/** The tree's documents, with one products document changed by `edit` (on a deep copy). */
function documents(contentId?: string, edit?: (doc: ProductsDocument) => void): MaasDocuments {
  const products = new Map([...tree.products].map(([id, doc]) => [id, structuredClone(doc)]))
  if (contentId !== undefined) edit?.(products.get(contentId) as ProductsDocument)
  return { index: structuredClone(tree.index), products }
}

const lines = (docs: MaasDocuments) => checkMaasCompatibility(docs).map(describeMaasProblem)

describe('checkMaasCompatibility', () => {
  test('finds nothing in the shapes of the real streams', () => {
    assert.deepEqual(lines(documents()), [])
  })

  test('names a version without its manifest, and what a multi-file version needs', () => {
    const found = lines(documents(IMAGES, (doc) => delete doc.products[NOBLE_GA]!.versions['20250201']!.items.manifest))
    assert.deepEqual(found, [`${IMAGES} product ${NOBLE_GA} version 20250201: multi-file version needs items boot-initrd, boot-kernel, manifest; missing manifest`])
  })

  test('names a product without label, os or arch of its own (MAAS does not inherit)', () => {
    const found = lines(
      documents(IMAGES, (doc) => {
        const product = doc.products[NOBLE_GA]!
        delete product.label
        delete product.release_title
        doc.label = 'stable'
      }),
    )
    assert.deepEqual(found, [`${IMAGES} product ${NOBLE_GA}: multi-file product needs label, release_title on the product itself (MAAS does not inherit attributes)`])
  })

  test('names bootloader items keyed by file name, and missing src_* fields', () => {
    const found = lines(
      documents(BOOTLOADERS, (doc) => {
        const items = doc.products[GRUB]!.versions['20250201.0']!.items
        items['grub2-signed.tar.xz'] = items['grub2-signed']!
        delete items['grub2-signed']
        delete items['shim-signed']
        const pxe = doc.products['com.ubuntu.maas.stable:1:pxelinux:pxe:i386']!.versions['20250101.0']!.items.syslinux!
        delete pxe.src_version
      }),
    )
    assert.deepEqual(found, [
      `${BOOTLOADERS} product ${GRUB} version 20250201.0: bootloader version needs an item keyed grub2-signed, shim-signed, grub2 or syslinux; has grub2-signed.tar.xz`,
      `${BOOTLOADERS} product com.ubuntu.maas.stable:1:pxelinux:pxe:i386 version 20250101.0 item syslinux: item needs src_version`,
    ])
  })

  test('names a single-file version without root-tgz', () => {
    const found = lines(documents(CENTOS, (doc) => delete doc.products['com.ubuntu.maas.stable:centos-bases:7.0:amd64']!.versions['20250101_01']!.items['root-tgz']))
    assert.deepEqual(found, [`${CENTOS} product com.ubuntu.maas.stable:centos-bases:7.0:amd64 version 20250101_01: single-file version needs items manifest, root-tgz; missing root-tgz`])
  })

  test('names top-level fields, empty products and an index without entries', () => {
    const docs = documents(IMAGES, (doc) => {
      doc.datatype = 'image-things'
      delete doc.updated
    })
    ;(docs.products.get(CENTOS) as ProductsDocument).products = {}
    assert.deepEqual(lines(docs), [
      `${CENTOS}: no products; MAAS rejects an empty products file (leave the content out of the index instead)`,
      `${IMAGES}: "datatype" must be "image-ids" or "image-downloads", got "image-things"`,
      `${IMAGES}: "updated" must be a date, got nothing`,
    ])
    assert.deepEqual(lines({ index: { ...tree.index, index: {} }, products: new Map() }), [
      'index: no entries; MAAS rejects an index with none ("Got invalid data for the index file")',
    ])
  })

  test('accepts ISO dates and image-downloads as MAAS does', () => {
    const docs = documents(IMAGES, (doc) => {
      doc.updated = '2025-06-25T11:01:49+00:00'
      doc.datatype = 'image-downloads'
    })
    assert.deepEqual(lines(docs), [])
  })
})
