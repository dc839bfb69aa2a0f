// Lint: typescript-eslint's recommended rules, plus the architecture's rules: the layers
// that ship to browsers and run in the simulator (core, crdt, protocol, replication,
// client) import no Node built-ins and read no ambient time or randomness, and layers only
// import downward (shared <- core <- crdt <- protocol <- replication <- client/server/cli).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const nodeBuiltins = [
  'node:*',
  'fs',
  'path',
  'os',
  'crypto',
  'net',
  'http',
  'https',
  'child_process',
  'worker_threads',
  'better-sqlite3',
  'ws',
];
const ambient = [
  { object: 'Date', property: 'now', message: 'Use the injected env.clock.' },
  { object: 'Math', property: 'random', message: 'Use the injected env.random.' },
  { object: 'crypto', property: 'randomUUID', message: 'Use the injected env.random.' },
];
const ambientGlobals = [
  { name: 'setTimeout', message: 'Use the injected env.timers.' },
  { name: 'setInterval', message: 'Use the injected env.timers.' },
];

/** Forbids imports of the named layers from a layer below them. */
function layer(files, forbidden) {
  return {
    files,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'This layer ships to browsers: no Node built-ins.' },
            ...forbidden.map((l) => ({
              group: [`**/${l}/**`, `../${l}/*`, `../../${l}/*`],
              message: `This layer may not import ${l}/.`,
            })),
          ],
        },
      ],
      'no-restricted-properties': ['error', ...ambient],
      'no-restricted-globals': ['error', ...ambientGlobals],
    },
  };
}

const above = (l) => {
  const order = ['shared', 'core', 'crdt', 'protocol', 'replication', 'client', 'server', 'cli', 'sim'];
  return [...new Set(order.slice(order.indexOf(l) + 1).concat(['storage/sqlite', 'transport/websocket']))];
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tmp/**', 'coverage/**', 'web/**/dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
  },
  layer(['src/shared/**/*.ts'], above('shared')),
  layer(['src/core/**/*.ts'], above('core')),
  layer(['src/crdt/**/*.ts'], above('crdt')),
  layer(['src/protocol/**/*.ts'], above('protocol')),
  layer(['src/replication/**/*.ts'], above('replication')),
  layer(['src/client/**/*.ts'], ['server', 'cli', 'sim', 'storage/sqlite', 'transport/websocket']),
  layer(
    [
      'src/storage/memory/**/*.ts',
      'src/transport/memory/**/*.ts',
      // Browser adapters: they ship to pages.
      'src/storage/indexeddb/**/*.ts',
      'src/transport/browser/**/*.ts',
      'src/transport/broadcast/**/*.ts',
    ],
    ['replication', 'client', 'server', 'cli', 'sim'],
  ),
  {
    // Tests may use Node and real time.
    files: ['**/*.test.ts', '**/*.test-suite.ts', 'test/**', 'bench/**'],
    rules: { 'no-restricted-imports': 'off', 'no-restricted-properties': 'off', 'no-restricted-globals': 'off' },
  },
);
