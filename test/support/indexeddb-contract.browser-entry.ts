/**
 * The page script of src/storage/indexeddb/indexeddb-storage.browser.test.ts: the shared
 * Storage contract suite (its `vitest` import bundled as browser-vitest-shim) against
 * openIndexedDbStorage on the browser's own IndexedDB and Web Locks. Loading it collects the
 * tests; `window.polyarchContract.run()` runs them and resolves with every result.
 */
import { describeStorageContract } from '../../src/storage/contract.test-suite.js';
import { openIndexedDbStorage } from '../../src/storage/indexeddb/index.js';
import type { Storage } from '../../src/storage/storage.js';
import { countCollected, runCollected } from './browser-vitest-shim.js';
import type { TestResult } from './browser-vitest-shim.js';

// A fresh database per store: one origin's IndexedDB is shared by every test, so each opens
// its own name. Reopening uses the name the closed store had, as a page reload would.
let next = 0;
const names = new WeakMap<Storage, string>();
async function open(name = `contract-${++next}`): Promise<Storage> {
  // Default locks: the real navigator.locks, held while the store is open.
  const s = await openIndexedDbStorage(name);
  names.set(s, name);
  return s;
}

describeStorageContract(
  'indexeddb in Chromium',
  () => open(),
  (closed) => {
    const name = names.get(closed);
    if (name === undefined) throw new Error('reopen was given a store this page did not open');
    return open(name);
  },
);

export interface ContractPage {
  collected: number;
  run(): Promise<TestResult[]>;
}

const api: ContractPage = {
  collected: countCollected(),
  run: () =>
    runCollected({
      timeoutMs: 20_000,
      onResult: (r) => console.log(`${r.passed ? 'pass' : 'FAIL'}: ${r.path.join(' > ')}`),
    }),
};
(globalThis as unknown as { polyarchContract: ContractPage }).polyarchContract = api;
