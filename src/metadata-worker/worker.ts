/**
 * The metadata worker's thread: runs `MetadataJob`s posted by
 * `createMetadataWorker` and posts back each result, transferring its
 * buffers. Started with the proxy's armored signing key as `workerData`.
 */

import { parentPort, workerData } from 'node:worker_threads'
import * as openpgp from 'openpgp'
import { createJobRunner, MetadataJobError, type JobFailure, type MetadataJob } from './metadata-jobs.js'

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
const runner = createJobRunner({ readSigningKey: () => openpgp.readPrivateKey({ armoredKey: signingKeyArmored }) })

port.on('message', ({ id, job }: JobMessage) => {
  runner.run(job).then(
    ({ result, transfer }) => port.postMessage({ id, result } satisfies ReplyMessage, transfer),
    (error: unknown) => {
      const failure: JobFailure = { message: error instanceof Error ? error.message : String(error), metadata: error instanceof MetadataJobError }
      port.postMessage({ id, failure } satisfies ReplyMessage)
    },
  )
})
