/**
 * The CodeMirror binding against a stand-in text over two TextDocs: local transactions reach the
 * text (multi-range changes included), the text's changes reach the editor once and are not
 * echoed, selections map, undo takes back only local edits, and cursors from presence become
 * decorations. The view half runs in a real browser in test/e2e/editor.test.ts.
 */
import { EditorSelection, EditorState, Text } from '@codemirror/state';
import type { Transaction, TransactionSpec } from '@codemirror/state';
import { history, undo } from '@codemirror/commands';
import { EditorView } from '@codemirror/view';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TextDoc } from '../crdt/text/index.js';
import {
  TextBinding,
  changeSetOf,
  cleanUser,
  collab,
  cursorOf,
  remoteCursorDecorations,
  remoteCursorsOf,
  remoteTextChange,
  showRemoteCursors,
  writeChanges,
} from './codemirror.js';
import type { BindableText, BindableTextEvent, EditorHost } from './codemirror.js';

/** A TextHandle as db.text gives one, over a TextDoc; `receive` stands for the sync loop. */
class FakeText implements BindableText {
  readonly doc: TextDoc;
  private readonly listeners = new Set<(e: BindableTextEvent) => void>();
  events: BindableTextEvent[] = [];

  constructor(replica: string) {
    this.doc = new TextDoc(replica);
  }
  get length(): number {
    return this.doc.length;
  }
  toString(): string {
    return this.doc.toString();
  }
  insert(pos: number, text: string): void {
    this.doc.insert(pos, text);
    this.emit({ origin: 'local', changes: [{ pos, deleted: 0, inserted: text }] });
  }
  delete(pos: number, len: number): void {
    this.doc.delete(pos, len);
    this.emit({ origin: 'local', changes: [{ pos, deleted: len, inserted: '' }] });
  }
  subscribe(listener: (e: BindableTextEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  /** Takes in what `from` has that this one lacks. */
  receive(from: FakeText): void {
    const changes = this.doc.applyChanges(from.doc.encodeSince(this.doc.version()));
    if (changes.length > 0) this.emit({ origin: 'remote', changes });
  }
  private emit(e: BindableTextEvent): void {
    this.events.push(e);
    for (const l of this.listeners) l(e);
  }
}

/** An editor without a view: what EditorView does with a dispatch, and the binding's update hook. */
class FakeEditor implements EditorHost {
  state: EditorState;
  readonly binding: TextBinding;
  readonly errors: unknown[] = [];

  constructor(
    readonly text: FakeText,
    extra: unknown[] = [],
  ) {
    this.state = EditorState.create({
      doc: text.toString(),
      extensions: [EditorState.lineSeparator.of('\n'), history(), ...(extra as [])],
    });
    this.binding = new TextBinding(this, text, (e) => this.errors.push(e));
  }
  dispatch(spec: TransactionSpec): void {
    this.apply(this.state.update(spec));
  }
  apply(tr: Transaction): void {
    this.state = tr.state;
    this.binding.localTransaction(tr);
  }
  get doc(): string {
    return this.state.doc.sliceString(0, this.state.doc.length, '\n');
  }
}

describe('changes between CodeMirror and a text', () => {
  it('a multi-range transaction reaches the text as CodeMirror shows it, positions shifting within it', () => {
    const text = new FakeText('a');
    text.insert(0, 'abcdefgh');
    const ed = new FakeEditor(text);
    // Three ranges given against the old document; each earlier one changes the length.
    ed.dispatch({
      changes: [
        { from: 0, to: 1, insert: 'XYZ' },
        { from: 2, to: 4, insert: '' },
        { from: 6, to: 6, insert: '--\n--' },
        { from: 7, to: 8, insert: 'Q' },
      ],
    });
    expect(ed.doc).toBe('XYZbef--\n--gQ');
    expect(text.toString()).toBe(ed.doc);
  });

  it('the text changes reach the editor once, and the binding does not write them back', () => {
    const a = new FakeText('a');
    const b = new FakeText('b');
    const ea = new FakeEditor(a);
    const eb = new FakeEditor(b);
    ea.dispatch({ changes: { from: 0, insert: 'hello world' } });
    b.receive(a);
    expect(eb.doc).toBe('hello world');
    const before = b.events.length;
    expect(b.doc.version().get('b')).toBeUndefined(); // nothing echoed as b's own edits
    eb.dispatch({ changes: { from: 5, to: 11, insert: '!' } });
    a.receive(b);
    expect(ea.doc).toBe('hello!');
    expect(b.events.length).toBe(before + 2); // b's one delete and one insert, nothing more
  });

  it('turns sequential changes into one ChangeSet and back', () => {
    const seq = [
      { pos: 0, deleted: 0, inserted: 'ab' },
      { pos: 1, deleted: 2, inserted: '\r\nz' },
      { pos: 4, deleted: 0, inserted: '!' },
    ];
    const start = 'qrs';
    const set = changeSetOf(seq, start.length);
    expect(set.apply(Text.of(start.split('\n'))).sliceString(0, undefined, '\n')).toBe('a\r\nz!rs');
    const text = new FakeText('t');
    text.insert(0, start);
    writeChanges(set, text);
    expect(text.toString()).toBe('a\r\nz!rs');
    expect(() => changeSetOf([{ pos: 9, deleted: 0, inserted: 'x' }], 3)).toThrow(RangeError);
  });

  it('keeps the caret on its character when a remote edit lands before it', () => {
    const a = new FakeText('a');
    const b = new FakeText('b');
    const ea = new FakeEditor(a);
    const eb = new FakeEditor(b);
    ea.dispatch({ changes: { from: 0, insert: 'one three' } });
    b.receive(a);
    eb.dispatch({ selection: EditorSelection.single(4, 9) }); // "three"
    ea.dispatch({ changes: { from: 4, insert: 'two ' } });
    b.receive(a);
    expect(eb.doc).toBe('one two three');
    expect(eb.doc.slice(eb.state.selection.main.from, eb.state.selection.main.to)).toBe('three');
  });

  it('undo takes back local edits only, never a remote one', () => {
    const a = new FakeText('a');
    const b = new FakeText('b');
    const ea = new FakeEditor(a);
    const eb = new FakeEditor(b);
    ea.dispatch({ changes: { from: 0, insert: 'local ' } });
    eb.dispatch({ changes: { from: 0, insert: 'remote' } });
    a.receive(b);
    expect(['remotelocal ', 'local remote']).toContain(ea.doc); // the order is the CRDT's
    expect(ea.doc).toBe(a.toString());
    expect(undo({ state: ea.state, dispatch: (tr) => ea.apply(tr) })).toBe(true);
    expect(ea.doc).toBe('remote');
    expect(a.toString()).toBe('remote');
    b.receive(a);
    expect(eb.doc).toBe('remote');
  });

  it('puts the editor back to the text when the text refuses an edit', async () => {
    const text = new FakeText('a');
    const ed = new FakeEditor(text);
    ed.dispatch({ changes: { from: 0, insert: 'kept' } });
    const insert = text.insert.bind(text);
    text.insert = () => {
      throw new Error('refused');
    };
    ed.dispatch({ changes: { from: 4, insert: ' lost' } });
    expect(ed.errors).toHaveLength(1);
    await Promise.resolve();
    expect(ed.doc).toBe('kept');
    text.insert = insert;
  });

  it('two editors typing concurrently (multi-range edits, line breaks, surrogate pairs) converge on the texts', () => {
    const edit = fc.record({
      ranges: fc.array(
        fc.record({
          at: fc.nat(),
          len: fc.nat({ max: 4 }),
          insert: fc.constantFrom('', 'x', 'ab', '\n', '😀', 'é\r\n'),
        }),
        { minLength: 1, maxLength: 3 },
      ),
    });
    const step = fc.oneof(
      fc.record({ kind: fc.constant('edit' as const), who: fc.constantFrom(0, 1), edit }),
      fc.record({ kind: fc.constant('sync' as const), who: fc.constantFrom(0, 1) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        const texts = [new FakeText('a'), new FakeText('b')] as const;
        const eds = [new FakeEditor(texts[0]), new FakeEditor(texts[1])] as const;
        for (const s of steps) {
          const ed = eds[s.who];
          if (s.kind === 'edit') {
            // Non-overlapping ranges in document order, as CodeMirror requires of one transaction.
            const len = ed.state.doc.length;
            let cursor = 0;
            const changes = [];
            for (const r of s.edit.ranges) {
              if (cursor > len) break;
              const from = cursor + (r.at % (len - cursor + 1));
              const to = Math.min(len, from + r.len);
              changes.push({ from, to, insert: r.insert });
              cursor = to + 1;
            }
            ed.dispatch({ changes });
            ed.dispatch({ selection: { anchor: Math.min(cursor, ed.state.doc.length) } });
          } else {
            texts[1 - s.who]!.receive(texts[s.who]);
          }
          for (const e of eds) expect(e.doc).toBe(e.text.toString());
        }
        texts[0].receive(texts[1]);
        texts[1].receive(texts[0]);
        expect(eds[0].doc).toBe(eds[1].doc);
        expect(eds[0].doc).toBe(texts[0].toString());
      }),
      { numRuns: 200 },
    );
  });
});

describe('cursors from presence', () => {
  it('shows a caret for each peer, and a selection background over a non-empty selection', () => {
    const doc = Text.of(['hello world']);
    const set = remoteCursorDecorations(
      [
        { id: 'p1', state: { name: 'Ada', color: '#d33', anchor: 0, head: 5 } },
        { id: 'p2', state: { name: 'Grace', color: '#2a7', anchor: 99, head: 99 } }, // clamped to the end
        { id: 'p3', state: { hello: 'no cursor here' } },
      ],
      doc,
    );
    const found: { from: number; to: number; caret: boolean }[] = [];
    set.between(0, doc.length, (from, to, deco) => {
      found.push({ from, to, caret: deco.spec.widget !== undefined });
    });
    expect(found).toEqual([
      { from: 0, to: 5, caret: false },
      { from: 5, to: 5, caret: true },
      { from: 11, to: 11, caret: true },
    ]);
  });

  it('refuses colours and names that could break out of CSS or the page', () => {
    expect(cleanUser({ name: '  Ada  ', color: 'red; background: url(x)' })).toEqual({
      name: 'Ada',
      color: '#808080',
    });
    expect(cleanUser({ name: 'x'.repeat(100), color: 'hsl(120, 50%, 40%)' }).name).toHaveLength(40);
    expect(cleanUser({ color: 'hsl(120, 50%, 40%)' })).toEqual({ name: 'anonymous', color: 'hsl(120, 50%, 40%)' });
    expect(cursorOf({ name: 'a', color: '#fff', anchor: 1.5, head: 2 })).toBeNull();
    expect(cursorOf(null)).toBeNull();
  });

  it('moves remote cursors with local edits, and leaves them where published on remote ones', () => {
    const text = new FakeText('a');
    text.insert(0, 'hello world');
    const state = EditorState.create({ doc: text.toString(), extensions: collab({ text }) });
    const carets = (s: EditorState): number[] => {
      const at: number[] = [];
      for (const set of s.facet(EditorView.decorations)) {
        if (typeof set === 'function') continue;
        set.between(0, s.doc.length, (from, _to, deco) => {
          if (deco.spec.widget !== undefined) at.push(from);
        });
      }
      return at;
    };
    const peer = { id: 'p', state: { name: 'Ada', color: '#d33', anchor: 6, head: 6 } };
    const shown = state.update({ effects: showRemoteCursors.of([peer]) }).state;
    expect(carets(shown)).toEqual([6]);
    expect(remoteCursorsOf(shown)).toEqual([{ name: 'Ada', color: '#d33', anchor: 6, head: 6 }]);
    // Typed here, before the caret: no one else has it yet, so the caret moves with "world".
    const local = shown.update({ changes: { from: 0, insert: '>> ' } }).state;
    expect(carets(local)).toEqual([9]);
    expect(remoteCursorsOf(local)[0]?.head).toBe(9);
    // From elsewhere (Ada's own typing, say): the offsets she published already count it.
    const remote = local.update({ changes: { from: 0, insert: 'Ada: ' }, annotations: remoteTextChange.of(true) });
    expect(carets(remote.state)).toEqual([9]);
    // An offset past the end (presence came before the text) is clamped until the text arrives.
    const early = remote.state.update({
      effects: showRemoteCursors.of([{ ...peer, state: { ...peer.state, head: 40, anchor: 40 } }]),
    });
    expect(carets(early.state)).toEqual([early.state.doc.length]);
    const filled = early.state.update({
      changes: { from: early.state.doc.length, insert: ' and much more text here' },
      annotations: remoteTextChange.of(true),
    });
    expect(carets(filled.state)).toEqual([40]);
  });
});
