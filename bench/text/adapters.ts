/**
 * One adapter per text CRDT, so the harness runs every library through the same code.
 *
 * Replicas are numbered (1, 2, ...); every adapter maps the number to its own kind of replica
 * id. `create` gives an empty replica that can exchange changes with every other replica the
 * same adapter creates.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export interface Encoding<D> {
  /** The whole document, history included, as the library stores or ships it. */
  encode(doc: D): Uint8Array;
  /** A replica from `encode`'s bytes. */
  load(bytes: Uint8Array, replica: number): D;
}

export interface TextAdapter<D = unknown, V = unknown> {
  readonly name: string;
  create(replica: number): D;
  insert(doc: D, pos: number, text: string): void;
  delete(doc: D, pos: number, len: number): void;
  toString(doc: D): string;
  /** Document encodings; the first is the library's main one. */
  readonly encodings: Record<string, Encoding<D>>;
  /** What the replica has seen, in the form its peers send to ask for what they lack. */
  version(doc: D): V;
  /** The changes `doc` holds that a replica at `since` lacks (all of them without `since`). */
  encodeSince(doc: D, since?: V): Uint8Array;
  /** Applies changes from `encodeSince` of another replica. */
  merge(doc: D, bytes: Uint8Array): void;
  /** Ends a run of local edits (Loro: commit; json-joy: flush the pending patch into the log). */
  commit?(doc: D): void;
  /** For measuring memory: what holding the document alone holds (drops what the adapter keeps for sync). */
  documentOnly?(doc: D): unknown;
  /** Memory outside the JavaScript heap that the library uses (WebAssembly linear memory), in bytes. */
  offHeap?(): number;
  /** Notes on how the figures are taken, for the results. */
  readonly notes?: string[];
}

const require = createRequire(import.meta.url);

/** The installed version of a package (from its package.json in node_modules). */
export function installedVersion(pkg: string): string {
  const file = new URL(`../../node_modules/${pkg}/package.json`, import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

// ---------------------------------------------------------------------------------------------
// Yjs

async function yjsAdapter(): Promise<TextAdapter> {
  const Y = await import('yjs');
  interface D {
    doc: InstanceType<typeof Y.Doc>;
    text: InstanceType<typeof Y.Text>;
  }
  const wrap = (doc: InstanceType<typeof Y.Doc>, replica: number): D => {
    doc.clientID = replica;
    return { doc, text: doc.getText('t') };
  };
  const a: TextAdapter<D, Uint8Array> = {
    name: 'yjs',
    create: (replica) => wrap(new Y.Doc(), replica),
    insert: (d, pos, s) => d.text.insert(pos, s),
    delete: (d, pos, len) => d.text.delete(pos, len),
    toString: (d) => d.text.toString(),
    encodings: {
      'V1 update': {
        encode: (d) => Y.encodeStateAsUpdate(d.doc),
        load: (bytes, replica) => {
          const d = wrap(new Y.Doc(), replica);
          Y.applyUpdate(d.doc, bytes);
          return d;
        },
      },
      'V2 update': {
        encode: (d) => Y.encodeStateAsUpdateV2(d.doc),
        load: (bytes, replica) => {
          const d = wrap(new Y.Doc(), replica);
          Y.applyUpdateV2(d.doc, bytes);
          return d;
        },
      },
    },
    version: (d) => Y.encodeStateVector(d.doc),
    encodeSince: (d, since) => Y.encodeStateAsUpdate(d.doc, since),
    merge: (d, bytes) => Y.applyUpdate(d.doc, bytes),
    notes: ['one Y.Doc with a Y.Text; each edit its own transaction; sync with V1 updates and state vectors'],
  };
  return a as TextAdapter;
}

// ---------------------------------------------------------------------------------------------
// json-joy (JSON CRDT). A model holds no history of its own: replicas sync by patches, which the
// application keeps. The adapter keeps a log of the patches each replica made or received.

async function jsonJoyAdapter(): Promise<TextAdapter> {
  const { Model } = await import('json-joy/lib/json-crdt/index.js');
  const { Patch } = await import('json-joy/lib/json-crdt-patch/index.js');
  type M = InstanceType<typeof Model>;
  type P = InstanceType<typeof Patch>;
  type S = ReturnType<M['api']['str']>;
  interface D {
    model: M;
    str: S;
    /** Patches this replica made (flushed) or received, in the order it has them. */
    log: P[];
  }
  const sidOf = (replica: number) => 100_000 + replica;
  // Every replica starts from the same document: the root set to an empty string, by a
  // session of its own, so that all replicas edit the same string node.
  const genesis = (() => {
    const m = Model.create(undefined, 65_536);
    m.api.set('');
    return m.api.flush();
  })();
  const wrap = (model: M): D => ({ model, str: model.api.str([]), log: [] });
  const flush = (d: D) => {
    const p = d.model.api.flush();
    if (p.ops.length > 0) d.log.push(p);
  };
  /** Frame: [u32 length, patch bytes]* */
  const frame = (parts: Uint8Array[]): Uint8Array => {
    let n = 0;
    for (const p of parts) n += 4 + p.length;
    const out = new Uint8Array(n);
    const view = new DataView(out.buffer);
    let o = 0;
    for (const p of parts) {
      view.setUint32(o, p.length);
      out.set(p, o + 4);
      o += 4 + p.length;
    }
    return out;
  };
  const a: TextAdapter<D, Map<number, number>> = {
    name: 'json-joy',
    create: (replica) => {
      const m = Model.create(undefined, sidOf(replica));
      m.applyPatch(genesis);
      return wrap(m);
    },
    insert: (d, pos, s) => d.str.ins(pos, s),
    delete: (d, pos, len) => d.str.del(pos, len),
    toString: (d) => d.str.view(),
    encodings: {
      'model binary': {
        encode: (d) => d.model.toBinary(),
        load: (bytes, replica) => wrap(Model.load(bytes, sidOf(replica))),
      },
    },
    // The last logical time seen from each session, over the patches this replica holds.
    version: (d) => {
      flush(d);
      const v = new Map<number, number>();
      for (const p of d.log) {
        const id = p.getId();
        if (id === undefined) continue;
        const end = id.time + p.span() - 1;
        if ((v.get(id.sid) ?? -1) < end) v.set(id.sid, end);
      }
      return v;
    },
    encodeSince: (d, since) => {
      flush(d);
      const parts: Uint8Array[] = [];
      for (const p of d.log) {
        const id = p.getId();
        if (id === undefined) continue;
        if (since !== undefined && (since.get(id.sid) ?? -1) >= id.time + p.span() - 1) continue;
        parts.push(p.toBinary());
      }
      return frame(parts);
    },
    merge: (d, bytes) => {
      flush(d);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let o = 0; o < bytes.length; ) {
        const n = view.getUint32(o);
        const p = Patch.fromBinary(bytes.subarray(o + 4, o + 4 + n));
        d.model.applyPatch(p);
        d.log.push(p);
        o += 4 + n;
      }
    },
    commit: (d) => flush(d),
    // Memory counts the model alone, as if its patches had been sent and dropped.
    documentOnly: (d) => {
      d.log = [];
      return d.model;
    },
    notes: [
      'Model.create with a string root (same genesis patch on every replica); StrApi ins/del',
      'encoded: Model.toBinary (structural binary: the CRDT state, tombstones included)',
      'sync: the patches each replica made or received (its edits flushed into one patch at the end of a replay), each framed with its length; not compacted',
      'memory: the model alone (the patch log is dropped)',
    ],
  };
  return a as TextAdapter;
}

// ---------------------------------------------------------------------------------------------
// Loro (WebAssembly)

async function loroAdapter(): Promise<TextAdapter> {
  const { LoroDoc } = await import('loro-crdt');
  type L = InstanceType<typeof LoroDoc>;
  type V = ReturnType<L['oplogVersion']>;
  // The text's handle is taken once per replica: each getText call makes a handle that holds
  // memory (in the JavaScript heap and in WebAssembly) until its finalizer runs.
  interface D {
    doc: L;
    text: ReturnType<L['getText']>;
  }
  // The module's WebAssembly memory: Loro's documents live there, not in the JavaScript heap.
  const wasm = require(path.join(path.dirname(require.resolve('loro-crdt')), 'loro_wasm.js')) as {
    __wasm: { memory: WebAssembly.Memory };
  };
  const wrap = (doc: L, replica: number): D => {
    doc.setPeerId(replica);
    return { doc, text: doc.getText('t') };
  };
  const a: TextAdapter<D, V> = {
    name: 'loro',
    create: (replica) => wrap(new LoroDoc(), replica),
    insert: (d, pos, s) => d.text.insert(pos, s),
    delete: (d, pos, len) => d.text.delete(pos, len),
    toString: (d) => d.text.toString(),
    commit: (d) => d.doc.commit(),
    encodings: {
      snapshot: {
        encode: (d) => d.doc.export({ mode: 'snapshot' }),
        load: (bytes, replica) => wrap(LoroDoc.fromSnapshot(bytes), replica),
      },
    },
    version: (d) => d.doc.oplogVersion(),
    encodeSince: (d, since) =>
      since === undefined ? d.doc.export({ mode: 'update' }) : d.doc.export({ mode: 'update', from: since }),
    merge: (d, bytes) => {
      d.doc.import(bytes);
    },
    offHeap: () => wasm.__wasm.memory.buffer.byteLength,
    notes: [
      'LoroDoc.getText (one handle per replica); one commit at the end of a replay (timed with it)',
      'memory: JavaScript heap plus WebAssembly memory, which never shrinks: measured as the growth per extra replica held',
      'sync: export({mode: "update", from: oplogVersion}) and import',
    ],
  };
  return a as TextAdapter;
}

// ---------------------------------------------------------------------------------------------
// polyarch: its text type, src/crdt/text (loaded at run time: it may not exist yet).

/** The text type's API, as the harness uses it. */
interface PolyTextDoc {
  insert(pos: number, text: string): void;
  delete(pos: number, len: number): void;
  toString(): string;
  readonly length: number;
  version(): Map<string, number>;
  encodeSince(since?: Map<string, number>): Uint8Array;
  applyChanges(bytes: Uint8Array): unknown;
  encode(): Uint8Array;
}
interface PolyTextModule {
  TextDoc: { new (replica: string): PolyTextDoc; decode(bytes: Uint8Array, replica: string): PolyTextDoc };
}

export const POLYARCH_TEXT = new URL('../../src/crdt/text/index.ts', import.meta.url);

/** `module`: where the text type is (a computed specifier, so that type-checking does not need it). */
export async function polyarchAdapter(
  module = new URL('../../src/crdt/text/index.js', import.meta.url).href,
): Promise<TextAdapter> {
  const { TextDoc } = (await import(module)) as PolyTextModule;
  const id = (replica: number) => `r${replica}`;
  const a: TextAdapter<PolyTextDoc, Map<string, number>> = {
    name: 'polyarch',
    create: (replica) => new TextDoc(id(replica)),
    insert: (d, pos, s) => d.insert(pos, s),
    delete: (d, pos, len) => d.delete(pos, len),
    toString: (d) => d.toString(),
    encodings: {
      'encode()': { encode: (d) => d.encode(), load: (bytes, replica) => TextDoc.decode(bytes, id(replica)) },
    },
    version: (d) => d.version(),
    encodeSince: (d, since) => (since === undefined ? d.encodeSince() : d.encodeSince(since)),
    merge: (d, bytes) => {
      d.applyChanges(bytes);
    },
    notes: [
      'TextDoc from src/crdt/text; sync with version() and encodeSince/applyChanges',
      'encodeSince() from nothing is the snapshot (the bytes of encode()): merged into an empty replica, it is taken as decoded',
    ],
  };
  return a as TextAdapter;
}

export const LIBRARIES = ['polyarch', 'yjs', 'json-joy', 'loro'] as const;
export type Library = (typeof LIBRARIES)[number];
export const PEERS: readonly Library[] = ['yjs', 'json-joy', 'loro'];
export const PACKAGES: Record<Exclude<Library, 'polyarch'>, string> = {
  yjs: 'yjs',
  'json-joy': 'json-joy',
  loro: 'loro-crdt',
};

export function loadAdapter(lib: Library): Promise<TextAdapter> {
  switch (lib) {
    case 'polyarch':
      return polyarchAdapter();
    case 'yjs':
      return yjsAdapter();
    case 'json-joy':
      return jsonJoyAdapter();
    case 'loro':
      return loroAdapter();
  }
}
