export * from '../../src/demo/synthetic-upstream.js'
