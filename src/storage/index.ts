export type { DocKey, DocRow, ReadTx, Storage, WriteTx } from './storage.js';
