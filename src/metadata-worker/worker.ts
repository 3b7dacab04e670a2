/**
 * The metadata worker's thread: runs `MetadataJob`s posted by
 * `createMetadataWorker` and posts back each result, transferring its
 * buffers. Started with the proxy's armored signing key as `workerData`.
 */

import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import * as openpgp from 'openpgp'
import { createJobRunner, MetadataJobError, type JobFailure, type MetadataJob } from './metadata-jobs.js'
import { InconsistentMetadataError } from '../streams/size-consistency.js'

export interface WorkerData {
  signingKeyArmored: string
}

export interface JobMessage {
  id: number
  job: MetadataJob
}

export type ReplyMessage = { id: number; result: unknown } | { id: number; failure: JobFailure }

const port = parentPort
if (port === null) throw new Error('the metadata worker runs in a worker thread')
const { signingKeyArmored } = workerData as WorkerData

// On Linux a thread has its own scheduling priority: below the serving thread,
// so that on a busy machine requests get the CPU before metadata does.
// Elsewhere this thread keeps the process's priority.
try {
  setPriority(Number(readlinkSync('/proc/thread-self').split('/').at(-1)), 10)
} catch {
  // No /proc: nothing to lower.
}
const runner = createJobRunner({ readSigningKey: () => openpgp.readPrivateKey({ armoredKey: signingKeyArmored }) })

port.on('message', ({ id, job }: JobMessage) => {
  runner.run(job).then(
    ({ result, transfer }) => port.postMessage({ id, result } satisfies ReplyMessage, transfer),
    (error: unknown) => {
      const failure: JobFailure = { message: error instanceof Error ? error.message : String(error), metadata: error instanceof MetadataJobError || error instanceof InconsistentMetadataError }
      port.postMessage({ id, failure } satisfies ReplyMessage)
    },
  )
})
