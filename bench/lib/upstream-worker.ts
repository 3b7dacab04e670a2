/**
 * The child-process half of `upstream.ts`: builds a synthetic signed tree and
 * serves it, answering the parent's requests over IPC. The upstream runs in a
 * process of its own so that its CPU time never counts against the client or
 * the proxy being measured.
 */

import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { buildUpstreamTree, type TreeOptions } from '../../src/demo/synthetic-tree.js'
import { startUpstreamServer } from '../../src/demo/synthetic-upstream.js'
import type { UpstreamCall, UpstreamReply, UpstreamStarted } from './upstream.js'

const send = (message: UpstreamReply | UpstreamStarted) => process.send?.(message)

process.once('message', (start: { tree: TreeOptions; keyringDir: string }) => {
  void (async () => {
    const tree = await buildUpstreamTree(start.tree)
    const server = await startUpstreamServer(tree)
    const keyringPath = await tree.writeKeyring(start.keyringDir)
    const items = [...new Map(tree.items.map((item) => [item.path, { path: item.path, size: item.size, sha256: item.sha256 }])).values()]
    send({ kind: 'started', url: server.url, keyringPath, items })

    async function call(message: UpstreamCall): Promise<number | undefined> {
      switch (message.method) {
        case 'setRate':
          server.setDefaultRate(message.bytesPerSecond)
          return undefined
        case 'bytesSent':
          return server.bytesSent(message.path)
        case 'requestCount':
          return server.requestCount(message.path)
        case 'setStatusFault':
          server.setFault(message.path, message.status === undefined ? undefined : { kind: 'status', status: message.status })
          return undefined
        case 'resetCounters':
          server.resetCounters()
          return undefined
        case 'writeFiles':
          for (const path of message.paths) {
            const bytes = tree.files.get(path)
            if (bytes === undefined) throw new Error(`writeFiles: ${path} is not in the tree`)
            const target = join(message.root, path)
            await mkdir(dirname(target), { recursive: true })
            await writeFile(target, bytes)
          }
          return undefined
        case 'close':
          await server.close()
          return undefined
      }
    }

    process.on('message', (message: UpstreamCall) => {
      call(message).then(
        (value) => send({ kind: 'reply', id: message.id, value }),
        (error: Error) => send({ kind: 'reply', id: message.id, error: error.message }),
      )
    })
  })().catch((error: Error) => {
    process.stderr.write(`upstream worker: ${error.stack ?? error.message}\n`)
    process.exit(1)
  })
})
