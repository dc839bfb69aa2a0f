import { describe, expect, it } from 'vitest';
import { DbError, ErrorCode } from '../../shared/errors.js';
import { TextDoc } from './index.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof DbError) return e.code;
    throw e;
  }
  return undefined;
}

/** Sends everything each lacks, both ways. */
function sync(a: TextDoc, b: TextDoc): void {
  b.applyChanges(a.encodeSince(b.version()));
  a.applyChanges(b.encodeSince(a.version()));
}

describe('TextDoc local edits', () => {
  it('inserts and deletes by UTF-16 index', () => {
    const d = new TextDoc('a');
    d.insert(0, 'hello');
    d.insert(5, ' world');
    d.insert(0, '>');
    d.delete(1, 1);
    d.insert(3, '\u{1F600}');
    expect(d.toString()).toBe('>el\u{1F600}lo world');
    expect(d.length).toBe(13);
    d.delete(3, 2);
    expect(d.toString()).toBe('>ello world');
    expect(d.version()).toEqual(new Map([['a', 5 + 6 + 1 + 1 + 2 + 2]]));
  });

  it('counts one operation per inserted and per deleted character', () => {
    const d = new TextDoc('me');
    d.insert(0, 'abc');
    d.delete(0, 3);
    expect(d.version().get('me')).toBe(6);
    expect(d.toString()).toBe('');
  });

  it('rejects positions out of range and wrong argument types as invalid input', () => {
    const d = new TextDoc('a');
    d.insert(0, 'abc');
    expect(codeOf(() => d.insert(4, 'x'))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.insert(-1, 'x'))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.insert(1.5, 'x'))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.insert(0, 5 as unknown as string))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.delete(2, 2))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.delete(0, -1))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.delete(Number.NaN, 1))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => new TextDoc(7 as unknown as string))).toBe(ErrorCode.invalidInput);
    expect(d.toString()).toBe('abc');
    d.insert(3, '');
    d.delete(3, 0);
    expect(d.version().get('a')).toBe(3);
  });

  it('keeps typing fast paths honest across deletes, jumps and remote changes', () => {
    const d = new TextDoc('a');
    const other = new TextDoc('b');
    let model = '';
    const ins = (p: number, s: string) => {
      d.insert(p, s);
      model = model.slice(0, p) + s + model.slice(p);
    };
    const del = (p: number, n: number) => {
      d.delete(p, n);
      model = model.slice(0, p) + model.slice(p + n);
    };
    for (let i = 0; i < 2000; i++) {
      const k = (i * 7919) % 13;
      if (k < 7) ins(Math.min(model.length, (i * 31) % (model.length + 1)), 'xy'.repeat((i % 3) + 1));
      else if (k < 9 && model.length > 0)
        del((i * 17) % model.length, Math.min(3, model.length - ((i * 17) % model.length)));
      else if (k < 11) ins(model.length, String.fromCharCode(97 + (i % 26)));
      else {
        other.insert(0, 'r');
        const changes = d.applyChanges(other.encodeSince(d.version()));
        for (const c of changes) model = model.slice(0, c.pos) + c.inserted + model.slice(c.pos + c.deleted);
      }
      expect(d.length).toBe(model.length);
    }
    expect(d.toString()).toBe(model);
  });
});

describe('TextDoc merging', () => {
  it('merges concurrent inserts and deletes and reports them as patches', () => {
    const a = new TextDoc('alice');
    const b = new TextDoc('bob');
    a.insert(0, 'the cat sat');
    sync(a, b);
    a.insert(4, 'black ');
    b.delete(8, 3);
    b.insert(8, 'slept');
    expect(a.applyChanges(b.encodeSince(a.version()))).toEqual([
      { pos: 14, deleted: 3, inserted: '' },
      { pos: 14, deleted: 0, inserted: 'slept' },
    ]);
    b.applyChanges(a.encodeSince(b.version()));
    expect(a.toString()).toBe('the black cat slept');
    expect(b.toString()).toBe('the black cat slept');
  });

  it('holds changes whose dependencies are missing until they arrive', () => {
    const a = new TextDoc('alice');
    const b = new TextDoc('bob');
    a.insert(0, 'one');
    const first = a.encodeSince(new Map());
    const v1 = a.version();
    a.insert(3, ' two');
    const second = a.encodeSince(v1);
    expect(b.applyChanges(second)).toEqual([]);
    expect(b.pendingCount).toBe(1);
    expect(b.version().size).toBe(0);
    expect(b.applyChanges(first)).toEqual([{ pos: 0, deleted: 0, inserted: 'one two' }]);
    expect(b.pendingCount).toBe(0);
    expect(b.toString()).toBe('one two');
  });

  it('a delete that arrives before the insert it removes waits for it', () => {
    const a = new TextDoc('alice');
    const b = new TextDoc('bob');
    const c = new TextDoc('carol');
    a.insert(0, 'abc');
    b.applyChanges(a.encode());
    b.delete(1, 1);
    c.applyChanges(b.encodeSince(new Map([['alice', 3]])));
    expect(c.toString()).toBe('');
    c.applyChanges(a.encode());
    expect(c.toString()).toBe('ac');
    expect(c.version()).toEqual(b.version());
  });

  it('ships deleted characters without their content, and the receiver still converges', () => {
    const a = new TextDoc('alice');
    a.insert(0, 'secret text');
    a.delete(0, 7);
    const bytes = a.encode();
    expect(new TextDecoder().decode(bytes)).not.toContain('secret');
    const b = new TextDoc('bob');
    b.insert(0, '#');
    b.applyChanges(a.encodeSince(new Map([['bob', 1]])));
    expect(b.toString().replace('#', '')).toBe('text');
    expect(b.version()).toEqual(new Map([...a.version(), ['bob', 1]]));
  });

  it('interleaves neither forward nor backward typing of two replicas at one spot', () => {
    const a = new TextDoc('A');
    const b = new TextDoc('B');
    a.insert(0, '[]');
    sync(a, b);
    for (const ch of 'hello') a.insert(a.toString().indexOf(']'), ch);
    for (const ch of 'dlrow') b.insert(1, ch);
    sync(a, b);
    expect(a.toString()).toBe(b.toString());
    expect(['[helloworld]', '[worldhello]']).toContain(a.toString());
  });
});

describe('TextDoc encodings', () => {
  it('round-trips an empty doc and a doc of deletions only', () => {
    const e = TextDoc.decode(new TextDoc('a').encode(), 'b');
    expect(e.toString()).toBe('');
    expect(e.version().size).toBe(0);
    const d = new TextDoc('a');
    d.insert(0, 'gone');
    d.delete(0, 4);
    const back = TextDoc.decode(d.encode(), 'c');
    expect(back.toString()).toBe('');
    expect(back.version()).toEqual(new Map([['a', 8]]));
    back.insert(0, 'new');
    d.applyChanges(back.encodeSince(d.version()));
    expect(d.toString()).toBe('new');
  });

  it('keeps lone surrogates', () => {
    const a = new TextDoc('a');
    a.insert(0, '\u{1F600}x');
    a.delete(1, 1);
    a.insert(0, '\uDC00');
    const b = TextDoc.decode(a.encode(), 'b');
    expect(b.toString()).toBe('\uDC00\uD83Dx');
    const c = new TextDoc('c');
    c.insert(0, 'q');
    c.applyChanges(a.encodeSince(new Map([['c', 1]])));
    expect(c.toString().replace('q', '')).toBe('\uDC00\uD83Dx');
  });

  it('a loaded doc shows its text and version before building anything, and once built acts as an eager one', () => {
    const src = new TextDoc('a');
    src.insert(0, 'hello world');
    src.delete(0, 1);
    const b = new TextDoc('b');
    b.applyChanges(src.encodeSince(b.version()));
    b.insert(3, 'XY');
    src.applyChanges(b.encodeSince(src.version()));
    src.insert(0, '>');
    const bytes = src.encode();
    // Lazy: decode keeps the checked snapshot; eager: a doc that merged the same history op by op.
    const lazy = TextDoc.decode(bytes, 'c');
    const eager = new TextDoc('c');
    eager.applyChanges(src.encodeSince(new Map([['nobody', 1]])));
    const lazyView = TextDoc.decode(bytes, 'c');
    expect(lazyView.toString()).toBe(src.toString());
    expect(lazyView.length).toBe(src.length);
    expect(lazyView.pendingCount).toBe(0);
    expect([...lazyView.version()].sort()).toEqual([...src.version()].sort());
    expect(lazyView.encode()).toEqual(bytes);
    expect(lazyView.encodeSince(new Map([['a', 3]]))).toEqual(src.encodeSince(new Map([['a', 3]])));
    // Edited, merged and re-encoded, the lazy doc matches the source doc given the same edits.
    const edit = (d: TextDoc): void => {
      d.insert(2, 'new');
      d.delete(0, 1);
    };
    edit(lazy);
    const twin = TextDoc.decode(bytes, 'c');
    twin.applyChanges(new TextDoc('z').encode()); // builds it through the merge path
    edit(twin);
    expect(lazy.toString()).toBe(twin.toString());
    expect(lazy.encode()).toEqual(twin.encode());
    b.insert(0, 'remote ');
    const fromB = b.encodeSince(lazy.version());
    const before = lazy.toString();
    const changes = lazy.applyChanges(fromB);
    let text = before;
    for (const c of changes) text = text.slice(0, c.pos) + c.inserted + text.slice(c.pos + c.deleted);
    expect(text).toBe(lazy.toString());
    src.applyChanges(lazy.encodeSince(src.version()));
    expect(src.toString()).toBe(lazy.toString());
    edit(eager);
    eager.applyChanges(b.encodeSince(eager.version()));
    expect(eager.encode()).toEqual(lazy.encode());
    // A lazily loaded doc takes a second snapshot (its own or a newer one) as a merge.
    const again = TextDoc.decode(bytes, 'd');
    expect(again.applyChanges(bytes)).toEqual([]);
    again.applyChanges(src.encode());
    expect(again.toString()).toBe(src.toString());
  });

  it('a corrupt snapshot leaves an empty doc empty and unloaded', () => {
    const src = new TextDoc('a');
    src.insert(0, 'abc');
    const bytes = src.encode();
    const broken = bytes.slice(0, bytes.length - 1);
    const d = new TextDoc('b');
    expect(codeOf(() => d.applyChanges(broken))).toBe(ErrorCode.corrupt);
    expect(d.toString()).toBe('');
    expect(d.version().size).toBe(0);
    d.applyChanges(bytes);
    expect(d.toString()).toBe('abc');
    // The doc keeps its own copy of the bytes: changing the caller's buffer changes nothing.
    bytes.fill(0);
    d.insert(3, 'd');
    expect(d.toString()).toBe('abcd');
  });

  it('reports a large remote batch of edits at one spot as one patch, and scattered ones as patches that apply', () => {
    const a = new TextDoc('a');
    const b = new TextDoc('b');
    b.insert(0, 'base');
    a.applyChanges(b.encode());
    // Many runs inside one growing stretch (forward, backward, in the middle): one patch.
    for (let i = 0; i < 300; i++) {
      const k = i % 3;
      const at = k === 0 ? 2 : k === 1 ? 2 + i : 2 + Math.floor(i / 2);
      a.insert(Math.min(at, a.length - 2), String.fromCharCode(97 + (i % 26)));
    }
    const before = b.toString();
    const changes = b.applyChanges(a.encodeSince(b.version()));
    expect(changes).toEqual([{ pos: 2, deleted: 0, inserted: a.toString().slice(2, -2) }]);
    expect(b.toString()).toBe(a.toString());
    expect(before).toBe('base');
    // Scattered inserts and deletes: the patches turn the old text into the new one.
    for (let i = 0; i < 300; i++) a.insert((i * 37) % (a.length + 1), String.fromCharCode(65 + (i % 26)));
    a.delete(5, 20);
    for (let i = 0; i < 50; i++) a.insert(a.length - ((i * 7) % 10), 'xy');
    const old = b.toString();
    let text = old;
    for (const c of b.applyChanges(a.encodeSince(b.version())))
      text = text.slice(0, c.pos) + c.inserted + text.slice(c.pos + c.deleted);
    expect(text).toBe(b.toString());
    expect(b.toString()).toBe(a.toString());
  });

  it('rejects bytes of another format as corrupt', () => {
    const d = new TextDoc('a');
    expect(codeOf(() => d.applyChanges(new Uint8Array([])))).toBe(ErrorCode.corrupt);
    expect(codeOf(() => d.applyChanges(new Uint8Array([1, 2, 3])))).toBe(ErrorCode.corrupt);
    expect(codeOf(() => TextDoc.decode(new Uint8Array([0x53, 0xff]), 'x'))).toBe(ErrorCode.corrupt);
  });
});
