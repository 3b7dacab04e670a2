/**
 * The Debian tools the suite compares against (nginx) and loads with (wrk):
 * installed with apt-get when missing, as the benchmark issue asks.
 */

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

const PACKAGES = { nginx: 'nginx', wrk: 'wrk' } as const

async function has(command: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${command} || test -x /usr/sbin/${command}`]).then(
    () => true,
    () => false,
  )
}

/** Installs each missing tool's package; throws a one-line error naming the tool when that fails. */
export async function ensureTools(tools: ReadonlyArray<keyof typeof PACKAGES>): Promise<void> {
  for (const tool of tools) {
    if (await has(tool)) continue
    process.stdout.write(`installing ${PACKAGES[tool]} (apt-get install -y ${PACKAGES[tool]})\n`)
    try {
      await run('apt-get', ['install', '-y', PACKAGES[tool]], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
    } catch (error) {
      throw new Error(`${tool} is missing and apt-get install -y ${PACKAGES[tool]} failed (run it as root): ${(error as Error).message.split('\n')[0]}`)
    }
  }
}
