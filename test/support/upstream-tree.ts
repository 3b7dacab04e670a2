export * from '../../src/demo/synthetic-tree.js'
