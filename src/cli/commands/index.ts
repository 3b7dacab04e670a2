/**
 * The commands of `sstream-proxy`, in the order `--help` lists them.
 */

import type { Command } from '../command.js'
import { keyCommand } from './key.js'
import { keygenCommand } from './keygen.js'
import { serveCommand } from './serve.js'

export const commands: readonly Command[] = [serveCommand, keygenCommand, keyCommand]
