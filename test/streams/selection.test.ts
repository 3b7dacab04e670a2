import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import type { SelectionConfig } from '../../src/config/types.js'
import { StreamFormatError } from '../../src/streams/documents.js'
import { parseFilter } from '../../src/streams/filter.js'
import { applySelections, selectedVersions } from '../../src/streams/selection.js'
import type { ProductsDocument, StreamItem, StreamProduct } from '../../src/streams/types.js'

const IMAGES = 'com.ubuntu.maas:stable:v3:download'
const BOOTLOADERS = 'com.ubuntu.maas:stable:1:bootloader-download'

function file(ftype: string, path: string, extra: Record<string, unknown> = {}): StreamItem {
  return { ftype, path, sha256: createHash('sha256').update(path).digest('hex'), size: path.length * 1000, ...extra }
}

const RELEASES = { '22.04': 'jammy', '24.04': 'noble', '20.04': 'focal' } as const

/** A v3 boot product: ga or hwe kernel of one release/arch, whose versions share squashfs with the other kernel. */
function bootProduct(version: keyof typeof RELEASES, arch: string, kernel: 'ga' | 'hwe', dates: string[]): [string, StreamProduct] {
  const release = RELEASES[version]
  const subarch = `${kernel}-${version}`
  const versions = Object.fromEntries(
    dates.map((date) => {
      const dir = `${release}/${arch}/${date}`
      return [
        date,
        {
          pubname: `ubuntu-${release}-${date}`,
          items: {
            'boot-kernel': file('boot-kernel', `${dir}/${subarch}/generic/boot-kernel`, { kpackage: 'linux-generic' }),
            'boot-initrd': file('boot-initrd', `${dir}/${subarch}/generic/boot-initrd`),
            squashfs: file('squashfs', `${dir}/squashfs`),
            'squashfs.manifest': file('manifest', `${dir}/squashfs.manifest`),
          },
        },
      ]
    }),
  )
  return [
    `com.ubuntu.maas.stable:v3:boot:${version}:${arch}:${subarch}`,
    { arch, release, os: 'ubuntu', subarch, kflavor: 'generic', label: 'stable', version, subarches: `generic,${subarch}`, versions },
  ]
}

function imagesDocument(): ProductsDocument {
  return {
    format: 'products:1.0',
    content_id: IMAGES,
    datatype: 'image-downloads',
    updated: 'Wed, 09 Jul 2025 10:00:00 +0000',
    products: Object.fromEntries([
      bootProduct('24.04', 'amd64', 'ga', ['20250701', '20250709']),
      bootProduct('24.04', 'amd64', 'hwe', ['20250701', '20250709']),
      bootProduct('24.04', 'arm64', 'ga', ['20250709']),
      bootProduct('22.04', 'amd64', 'ga', ['20250620', '20250705']),
      bootProduct('22.04', 'amd64', 'hwe', ['20250620', '20250705']),
      bootProduct('20.04', 'amd64', 'ga', ['20250601']),
    ]),
  }
}

function bootloaderProduct(name: string, os: string, arch: string, type: string, dates: string[]): [string, StreamProduct] {
  const versions = Object.fromEntries(
    dates.map((date) => [
      date,
      {
        items: {
          [`${os}.tar.xz`]: file('archive.tar.xz', `bootloaders/${type}/${arch}/${date}/${os}.tar.xz`, {
            src_package: os,
            src_release: 'focal',
          }),
        },
      },
    ]),
  )
  return [name, { os, arch, arches: `${arch}, i386`, 'bootloader-type': type, label: 'stable', versions }]
}

function bootloadersDocument(): ProductsDocument {
  return {
    format: 'products:1.0',
    content_id: BOOTLOADERS,
    datatype: 'image-downloads',
    products: Object.fromEntries([
      bootloaderProduct('com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64', 'grub-efi-signed', 'amd64', 'uefi', [
        '20231004.0',
        '20240301.0',
      ]),
      bootloaderProduct('com.ubuntu.maas.stable:1:pxelinux:pxe:i386', 'pxelinux', 'i386', 'pxe', ['20231004.0']),
      bootloaderProduct('com.ubuntu.maas.stable:1:grub-ieee1275:open-firmware:ppc64el', 'grub-ieee1275', 'ppc64el', 'open-firmware', [
        '20231004.0',
      ]),
    ]),
  }
}

function group(filters: string[], max?: number): SelectionConfig {
  return max === undefined ? { filters: filters.map(parseFilter) } : { filters: filters.map(parseFilter), max }
}

/** `product version` for every selected version, in document order. */
function versionsOf(doc: ProductsDocument): string[] {
  return Object.entries(doc.products).flatMap(([product, { versions }]) => Object.keys(versions).map((v) => `${product} ${v}`))
}

function itemNames(doc: ProductsDocument): string[] {
  return Object.values(doc.products).flatMap(({ versions }) => Object.values(versions).flatMap(({ items }) => Object.keys(items)))
}

const NOBLE_GA = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04'
const NOBLE_HWE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:hwe-24.04'
const NOBLE_ARM = 'com.ubuntu.maas.stable:v3:boot:24.04:arm64:ga-24.04'
const JAMMY_GA = 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:ga-22.04'
const JAMMY_HWE = 'com.ubuntu.maas.stable:v3:boot:22.04:amd64:hwe-22.04'
const FOCAL_GA = 'com.ubuntu.maas.stable:v3:boot:20.04:amd64:ga-20.04'
const MAAS_DEFAULT = [group(['arch=amd64', 'release~(jammy|noble)'], 1), group(['os~(grub*|pxelinux)'], 1)]

describe('applySelections', () => {
  test('no selections select everything, unchanged', () => {
    const doc = imagesDocument()
    const { document, files } = applySelections(doc, [])
    assert.deepEqual(document, doc)
    // 10 versions of 4 items, squashfs and manifest shared by ga and hwe in 4 of them.
    assert.equal(files.length, 10 * 4 - 4 * 2)
  })

  test('the default MAAS selection keeps the newest amd64 jammy and noble images', () => {
    const { document, files } = applySelections(imagesDocument(), MAAS_DEFAULT)
    assert.deepEqual(versionsOf(document), [
      `${NOBLE_GA} 20250709`,
      `${NOBLE_HWE} 20250709`,
      `${JAMMY_GA} 20250705`,
      `${JAMMY_HWE} 20250705`,
    ])
    assert.deepEqual(
      files.map((f) => f.path),
      [
        'jammy/amd64/20250705/ga-22.04/generic/boot-initrd',
        'jammy/amd64/20250705/ga-22.04/generic/boot-kernel',
        'jammy/amd64/20250705/hwe-22.04/generic/boot-initrd',
        'jammy/amd64/20250705/hwe-22.04/generic/boot-kernel',
        'jammy/amd64/20250705/squashfs',
        'jammy/amd64/20250705/squashfs.manifest',
        'noble/amd64/20250709/ga-24.04/generic/boot-initrd',
        'noble/amd64/20250709/ga-24.04/generic/boot-kernel',
        'noble/amd64/20250709/hwe-24.04/generic/boot-initrd',
        'noble/amd64/20250709/hwe-24.04/generic/boot-kernel',
        'noble/amd64/20250709/squashfs',
        'noble/amd64/20250709/squashfs.manifest',
      ],
    )
  })

  test('the default MAAS selection keeps the newest version of every bootloader', () => {
    const { document, files } = applySelections(bootloadersDocument(), MAAS_DEFAULT)
    assert.deepEqual(versionsOf(document), [
      'com.ubuntu.maas.stable:1:grub-efi-signed:uefi:amd64 20240301.0',
      'com.ubuntu.maas.stable:1:pxelinux:pxe:i386 20231004.0',
      'com.ubuntu.maas.stable:1:grub-ieee1275:open-firmware:ppc64el 20231004.0',
    ])
    assert.deepEqual(
      files.map((f) => f.path),
      [
        'bootloaders/open-firmware/ppc64el/20231004.0/grub-ieee1275.tar.xz',
        'bootloaders/pxe/i386/20231004.0/pxelinux.tar.xz',
        'bootloaders/uefi/amd64/20240301.0/grub-efi-signed.tar.xz',
      ],
    )
  })

  test('a squashfs shared by ga and hwe is listed once, with both references', () => {
    const { files } = applySelections(imagesDocument(), MAAS_DEFAULT)
    const squashfs = files.filter((f) => f.path === 'noble/amd64/20250709/squashfs')
    assert.equal(squashfs.length, 1)
    const path = 'noble/amd64/20250709/squashfs'
    assert.deepEqual(squashfs[0], {
      path,
      size: path.length * 1000,
      sha256: createHash('sha256').update(path).digest('hex'),
      refs: [
        { contentId: IMAGES, product: NOBLE_GA, version: '20250709', item: 'squashfs', ftype: 'squashfs' },
        { contentId: IMAGES, product: NOBLE_HWE, version: '20250709', item: 'squashfs', ftype: 'squashfs' },
      ],
    })
  })

  test('filters on version_name', () => {
    const { document } = applySelections(imagesDocument(), [group(['version_name=20250709'])])
    assert.deepEqual(versionsOf(document), [`${NOBLE_GA} 20250709`, `${NOBLE_HWE} 20250709`, `${NOBLE_ARM} 20250709`])
  })

  test('filters on ftype keep only the matching items of each version', () => {
    const { document, files } = applySelections(imagesDocument(), [group(['ftype~^boot-', `product_name=${FOCAL_GA}`])])
    assert.deepEqual(itemNames(document), ['boot-kernel', 'boot-initrd'])
    assert.deepEqual(
      files.map((f) => f.path),
      ['focal/amd64/20250601/ga-20.04/generic/boot-initrd', 'focal/amd64/20250601/ga-20.04/generic/boot-kernel'],
    )
  })

  test('filters on item_name', () => {
    const { files } = applySelections(imagesDocument(), [group(['item_name=squashfs', 'release=jammy'])])
    assert.deepEqual(
      files.map((f) => [f.path, f.refs.length]),
      [
        ['jammy/amd64/20250620/squashfs', 2],
        ['jammy/amd64/20250705/squashfs', 2],
      ],
    )
  })

  test('filters on product_name', () => {
    const { document } = applySelections(imagesDocument(), [group(['product_name~:hwe-'])])
    assert.deepEqual(Object.keys(document.products), [NOBLE_HWE, JAMMY_HWE])
  })

  test('overlapping groups form a union with nothing duplicated', () => {
    const { document, files } = applySelections(imagesDocument(), [group(['release=noble']), group(['arch=amd64', 'subarch~^ga-'])])
    assert.deepEqual(Object.keys(document.products), [NOBLE_GA, NOBLE_HWE, NOBLE_ARM, JAMMY_GA, FOCAL_GA])
    assert.deepEqual(Object.keys(document.products[NOBLE_GA]?.versions ?? {}), ['20250701', '20250709'])
    assert.deepEqual(Object.keys(document.products[NOBLE_GA]?.versions['20250709']?.items ?? {}), [
      'boot-kernel',
      'boot-initrd',
      'squashfs',
      'squashfs.manifest',
    ])
    const paths = files.map((f) => f.path)
    assert.equal(new Set(paths).size, paths.length)
    const shared = files.find((f) => f.path === 'noble/amd64/20250709/squashfs')
    assert.deepEqual(shared?.refs.map((r) => r.product), [NOBLE_GA, NOBLE_HWE])
    // noble: 3 versions of amd64 (2 ga, 2 hwe sharing 2 files each) + 1 arm64; jammy ga 2; focal ga 1.
    assert.equal(files.length, (4 * 4 - 2 * 2) + 4 + 2 * 4 + 4)
  })

  test('groups overlapping on some items of one version add up at item granularity', () => {
    const { document } = applySelections(imagesDocument(), [
      group([`product_name=${FOCAL_GA}`, 'ftype=boot-kernel']),
      group([`product_name=${FOCAL_GA}`, 'ftype~^(boot-kernel|squashfs)$']),
    ])
    assert.deepEqual(itemNames(document), ['boot-kernel', 'squashfs'])
  })

  test('max keeps the newest N versions of each product, and all of them when there are fewer', () => {
    const doc = imagesDocument()
    const extra = bootProduct('24.04', 'amd64', 'ga', ['20250601', '20250701', '20250709'])[1]
    doc.products[NOBLE_GA] = extra
    const { document } = applySelections(doc, [group(['release=noble', 'arch=amd64'], 2)])
    assert.deepEqual(versionsOf(document), [
      `${NOBLE_GA} 20250701`,
      `${NOBLE_GA} 20250709`,
      `${NOBLE_HWE} 20250701`,
      `${NOBLE_HWE} 20250709`,
    ])
    const few = applySelections(doc, [group(['release=noble', 'arch=arm64'], 3)])
    assert.deepEqual(versionsOf(few.document), [`${NOBLE_ARM} 20250709`])
  })

  test('max counts only versions that still hold a matching item', () => {
    const doc = imagesDocument()
    const newest = doc.products[NOBLE_GA]?.versions['20250709']
    assert.ok(newest)
    delete newest.items['boot-kernel']
    const { document } = applySelections(doc, [group([`product_name=${NOBLE_GA}`, 'ftype=boot-kernel'], 1)])
    assert.deepEqual(versionsOf(document), [`${NOBLE_GA} 20250701`])
  })

  test('max orders version names as plain strings, newest last', () => {
    const doc = bootloadersDocument()
    const [name, product] = bootloaderProduct('p', 'pxelinux', 'i386', 'pxe', ['20231004.10', '20231004.9', '20231004.0'])
    doc.products = { [name]: product }
    assert.deepEqual(versionsOf(applySelections(doc, [group([], 1)]).document), ['p 20231004.9'])
    assert.deepEqual(versionsOf(applySelections(doc, [group([], 2)]).document), ['p 20231004.10', 'p 20231004.9'])
  })

  test('max 0 keeps nothing of that group', () => {
    const { document, files } = applySelections(imagesDocument(), [group(['release=noble'], 0)])
    assert.deepEqual(document.products, {})
    assert.deepEqual(files, [])
  })

  test('the filtered document keeps every attribute of every level and drops emptied versions and products', () => {
    const doc = imagesDocument()
    doc.sticky = 'top-level attribute'
    const { document } = applySelections(doc, [group([`product_name=${JAMMY_GA}`, 'version_name=20250705', 'ftype=squashfs'])])
    const upstreamProduct = doc.products[JAMMY_GA]
    assert.ok(upstreamProduct)
    const { versions: _versions, ...productAttributes } = upstreamProduct
    assert.deepEqual(document, {
      format: 'products:1.0',
      content_id: IMAGES,
      datatype: 'image-downloads',
      updated: 'Wed, 09 Jul 2025 10:00:00 +0000',
      sticky: 'top-level attribute',
      products: {
        [JAMMY_GA]: {
          ...productAttributes,
          versions: {
            '20250705': {
              pubname: 'ubuntu-jammy-20250705',
              items: { squashfs: file('squashfs', 'jammy/amd64/20250705/squashfs') },
            },
          },
        },
      },
    })
    // The upstream document is left as it was.
    assert.deepEqual(doc.products[JAMMY_GA]?.versions['20250705'], imagesDocument().products[JAMMY_GA]?.versions['20250705'])
  })

  test('filters see attributes inherited from the version', () => {
    const { document } = applySelections(imagesDocument(), [group(['pubname=ubuntu-focal-20250601', 'item_name=squashfs'])])
    assert.deepEqual(versionsOf(document), [`${FOCAL_GA} 20250601`])
  })

  test('items without a path are selected but are not files', () => {
    const doc = imagesDocument()
    const version = doc.products[FOCAL_GA]?.versions['20250601']
    assert.ok(version)
    version.items = { notes: { ftype: 'notes' }, squashfs: file('squashfs', 'focal/amd64/20250601/squashfs') }
    const { document, files } = applySelections(doc, [group([`product_name=${FOCAL_GA}`])])
    assert.deepEqual(itemNames(document), ['notes', 'squashfs'])
    assert.deepEqual(files.map((f) => f.path), ['focal/amd64/20250601/squashfs'])
  })

  test('two items naming one path with different content is an upstream error naming the path', () => {
    const doc = imagesDocument()
    const hwe = doc.products[NOBLE_HWE]?.versions['20250709']?.items.squashfs
    assert.ok(hwe)
    hwe.size = 1
    assert.throws(() => applySelections(doc, MAAS_DEFAULT), (error: unknown) => {
      assert.ok(error instanceof StreamFormatError)
      assert.equal(
        error.message,
        `${IMAGES}: path "noble/amd64/20250709/squashfs" names different files in ` +
          `products["${NOBLE_GA}"].versions["20250709"].items["squashfs"] and ` +
          `products["${NOBLE_HWE}"].versions["20250709"].items["squashfs"] (size or sha256 differ)`,
      )
      return true
    })
  })
})

describe('selectedVersions', () => {
  test('lists each selected version with its file paths', () => {
    const result = applySelections(imagesDocument(), [group(['release=jammy', 'subarch=ga-22.04', 'ftype!=manifest'], 1)])
    assert.deepEqual(selectedVersions(result), [
      {
        product: JAMMY_GA,
        version: '20250705',
        files: [
          'jammy/amd64/20250705/ga-22.04/generic/boot-initrd',
          'jammy/amd64/20250705/ga-22.04/generic/boot-kernel',
          'jammy/amd64/20250705/squashfs',
        ],
      },
    ])
  })
})
