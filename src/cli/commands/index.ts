/**
 * The commands of `sstream-proxy`, in the order `--help` lists them.
 */

import type { Command } from '../command.js'
import { demoCommand } from './demo.js'
import { exportCommand } from './export.js'
import { gcCommand } from './gc.js'
import { keyCommand } from './key.js'
import { keygenCommand } from './keygen.js'
import { prefetchCommand } from './prefetch.js'
import { serveCommand } from './serve.js'
import { verifyCommand } from './verify.js'

export const commands: readonly Command[] = [serveCommand, prefetchCommand, exportCommand, keygenCommand, keyCommand, verifyCommand, gcCommand, demoCommand]
