/**
 * polyarch/codemirror: binds a CodeMirror 6 editor to a replicated text (`db.text`) and shows the
 * cursors of the other editors from a presence room (`db.presence`). Invariant: between
 * transactions the editor's document equals the text, so every local edit reaches the text once
 * and every remote edit reaches the editor once (annotated, so it is never sent back).
 * CodeMirror is an optional peer: polyarch/client never imports this module.
 */
import { Annotation, ChangeSet, EditorState, StateEffect, StateField, Transaction } from '@codemirror/state';
import type { Extension, Range, Text, TransactionSpec } from '@codemirror/state';
import { Decoration, EditorView, ViewPlugin, WidgetType } from '@codemirror/view';
import type { DecorationSet, PluginValue, ViewUpdate } from '@codemirror/view';

/** One visible change of a text: `deleted` code units removed at `pos`, then `inserted` put there. */
export interface BindableTextChange {
  pos: number;
  deleted: number;
  inserted: string;
}

/** What a text reports: changes that apply one after another, each to the text left by the previous one. */
export interface BindableTextEvent {
  origin: 'local' | 'remote';
  changes: readonly BindableTextChange[];
}

/**
 * What the binding needs of a text: `db.text(collection, id)` gives one. Positions count UTF-16
 * code units, as CodeMirror does. Events must be reported synchronously, from inside the call
 * that made them (insert, delete, or the application of remote changes).
 */
export interface BindableText {
  insert(pos: number, text: string): unknown;
  delete(pos: number, len: number): unknown;
  toString(): string;
  readonly length: number;
  subscribe(listener: (event: BindableTextEvent) => void): () => void;
}

/**
 * What the binding publishes in presence: the user, and the main selection as plain offsets
 * into the text (`anchor` where it started, `head` where the caret is). A `type`, not an
 * interface, so it is assignable to JSON value types.
 */
export type CursorPresence = {
  name: string;
  color: string;
  anchor: number;
  head: number;
};

/** Another editor in the room, as presence lists it; its state is checked before use. */
export interface PresencePeer {
  id: string;
  state: unknown;
}

/** What the binding needs of a presence room: `db.presence(room)` gives one. */
export interface BindablePresence {
  set(state: CursorPresence): unknown;
  others(): readonly PresencePeer[];
  subscribe(listener: (others: readonly PresencePeer[]) => void): () => void;
}

/** The local user as others see them: a name and a CSS colour. */
export interface CollabUser {
  name: string;
  color: string;
}

export interface CollabOptions {
  /** The replicated text; await its `ready` before creating the editor. */
  text: BindableText;
  /** Where to publish this editor's cursor and read the others'; omit for no cursors. */
  presence?: BindablePresence;
  /** Name and colour published with the cursor (default: "anonymous", grey). */
  user?: CollabUser;
  /** Told when the text refused an edit (the editor is then put back to the text). */
  onError?: (error: unknown) => void;
}

/** Marks the transactions the binding makes from the text's changes: they are not written back. */
export const remoteTextChange = Annotation.define<boolean>();

const userChanged = StateEffect.define<CollabUser>();
/**
 * Replaces the other editors' cursors the editor shows (the binding dispatches it when presence
 * changes; an app with presence of its own may too).
 */
export const showRemoteCursors = StateEffect.define<readonly PresencePeer[]>();

const NAME_CHARS_MAX = 40;
const FALLBACK_COLOR = '#808080';
// Colours reach CSS: only plain forms (hex and the functional notations with numbers) pass.
const COLOR_PATTERN = /^(#[0-9a-fA-F]{3,8}|(rgb|rgba|hsl|hsla)\([0-9.,%\s/a-z]{1,60}\))$/;

/**
 * Sequential changes (each on the text left by the previous one, as the text reports them) as
 * one CodeMirror ChangeSet on a document of `length` code units. Throws RangeError when a
 * change falls outside the document.
 */
export function changeSetOf(changes: readonly BindableTextChange[], length: number): ChangeSet {
  let set = ChangeSet.empty(length);
  for (const c of changes) {
    // '\n' only: the text counts "\r\n" as two code units, and so must the editor.
    const step = ChangeSet.of({ from: c.pos, to: c.pos + c.deleted, insert: c.inserted }, set.newLength, '\n');
    set = set.compose(step);
  }
  return set;
}

/**
 * Writes a CodeMirror ChangeSet into `text`. iterChanges reports the changed ranges in
 * ascending order, `fromA..toA` in the old document and `fromB` in the new one; once the
 * earlier ranges are written, what precedes this range is the new document up to `fromB`,
 * so each range is deleted and inserted at `fromB`:
 *
 *   old:  ab[cd]ef[g]h        ranges (2..4 -> "X") and (6..7 -> "YZ")
 *   new:  abXefYZh            the second starts at fromB = 5 once "cd" became "X"
 */
export function writeChanges(changes: ChangeSet, text: BindableText): void {
  changes.iterChanges((fromA, toA, fromB, _toB, inserted: Text) => {
    if (toA > fromA) text.delete(fromB, toA - fromA);
    if (inserted.length > 0) text.insert(fromB, inserted.sliceString(0, inserted.length, '\n'));
  });
}

/** Where the binding reads the editor's state and dispatches into it: an EditorView, or a test's stand-in. */
export interface EditorHost {
  readonly state: EditorState;
  dispatch(spec: TransactionSpec): void;
}

/**
 * The text half of the binding, without a view: local transactions to the text, the text's
 * changes to the editor. The CodeMirror extension runs one per view; tests drive it with an
 * EditorState.
 */
export class TextBinding {
  /** True while the binding writes to the text: the events that come back are its own. */
  private writing = false;
  private readonly unsubscribe: () => void;
  private destroyed = false;

  constructor(
    private readonly host: EditorHost,
    private readonly text: BindableText,
    private readonly onError: (error: unknown) => void = () => {},
  ) {
    this.unsubscribe = text.subscribe((event) => this.onTextEvent(event));
  }

  /** Writes one transaction's changes into the text, unless they came from it. */
  localTransaction(tr: Transaction): void {
    if (!tr.docChanged || tr.annotation(remoteTextChange) === true || this.destroyed) return;
    this.writing = true;
    try {
      writeChanges(tr.changes, this.text);
    } catch (e) {
      this.onError(e);
      // The text refused part of it (too large, say): show the text as it is. Not from inside
      // the editor's update, where dispatching is not allowed.
      queueMicrotask(() => this.resync());
    } finally {
      this.writing = false;
    }
  }

  /** Puts the editor back to the text, replacing only the span where they differ. */
  resync(): void {
    if (this.destroyed) return;
    const want = this.text.toString();
    const have = this.host.state.doc.sliceString(0, this.host.state.doc.length, '\n');
    if (want === have) return;
    let start = 0;
    const shorter = Math.min(want.length, have.length);
    while (start < shorter && want.charCodeAt(start) === have.charCodeAt(start)) start++;
    let end = 0;
    while (end < shorter - start && want.charCodeAt(want.length - 1 - end) === have.charCodeAt(have.length - 1 - end))
      end++;
    const changes = ChangeSet.of(
      { from: start, to: have.length - end, insert: want.slice(start, want.length - end) },
      have.length,
      '\n',
    );
    this.host.dispatch({ changes, annotations: [remoteTextChange.of(true), Transaction.addToHistory.of(false)] });
  }

  destroy(): void {
    this.destroyed = true;
    this.unsubscribe();
  }

  private onTextEvent(event: BindableTextEvent): void {
    // Our own writes come back as events (origin 'local'); edits by anyone else, local or
    // remote, are shown.
    if (this.writing || this.destroyed || event.changes.length === 0) return;
    let changes: ChangeSet;
    try {
      changes = changeSetOf(event.changes, this.host.state.doc.length);
    } catch {
      this.resync();
      return;
    }
    // Not in the undo history: undo takes back this user's edits only. The selection maps
    // through the changes, so the caret stays on the character it was next to.
    this.host.dispatch({ changes, annotations: [remoteTextChange.of(true), Transaction.addToHistory.of(false)] });
    // A cheap check that both still agree; a full comparison would cost a copy of the text.
    if (this.host.state.doc.length !== this.text.length) this.resync();
  }
}

/** A user's name and colour made safe to show: trimmed and cut, and a colour CSS cannot misread. */
export function cleanUser(user: Partial<CollabUser> | undefined): CollabUser {
  const name = typeof user?.name === 'string' ? user.name.trim().slice(0, NAME_CHARS_MAX) : '';
  const color = typeof user?.color === 'string' && COLOR_PATTERN.test(user.color.trim()) ? user.color.trim() : '';
  return { name: name === '' ? 'anonymous' : name, color: color === '' ? FALLBACK_COLOR : color };
}

/** A peer's presence state as a cursor, or null when it carries none (or a malformed one). */
export function cursorOf(state: unknown): CursorPresence | null {
  if (typeof state !== 'object' || state === null) return null;
  const s = state as Record<string, unknown>;
  if (!Number.isSafeInteger(s.anchor) || !Number.isSafeInteger(s.head)) return null;
  const user = cleanUser({
    ...(typeof s.name === 'string' ? { name: s.name } : {}),
    ...(typeof s.color === 'string' ? { color: s.color } : {}),
  });
  return { ...user, anchor: s.anchor as number, head: s.head as number };
}

/** The caret of another editor, with its user's name above it. */
class RemoteCaret extends WidgetType {
  constructor(
    readonly name: string,
    readonly color: string,
  ) {
    super();
  }

  override eq(other: RemoteCaret): boolean {
    return other.name === this.name && other.color === this.color;
  }

  toDOM(): HTMLElement {
    const caret = document.createElement('span');
    caret.className = 'cm-polyarch-caret';
    // CSSOM properties, not a style attribute: allowed under a strict Content-Security-Policy.
    caret.style.borderLeftColor = this.color;
    const label = document.createElement('span');
    label.className = 'cm-polyarch-caret-name';
    label.style.backgroundColor = this.color;
    label.textContent = this.name;
    caret.appendChild(label);
    return caret;
  }

  override ignoreEvent(): boolean {
    return true;
  }
}

/**
 * The decorations showing other editors' selections: a caret widget with the name at each
 * head, and a tinted background over each non-empty selection. Offsets past the end of `doc`
 * (the other editor may hold text this one has not received yet) are clamped.
 */
export function remoteCursorDecorations(others: readonly PresencePeer[], doc: Text): DecorationSet {
  const ranges: Range<Decoration>[] = [];
  for (const peer of others) {
    const cursor = cursorOf(peer.state);
    if (cursor === null) continue;
    const clamp = (n: number): number => Math.max(0, Math.min(doc.length, n));
    const anchor = clamp(cursor.anchor);
    const head = clamp(cursor.head);
    const from = Math.min(anchor, head);
    const to = Math.max(anchor, head);
    if (from < to) {
      ranges.push(
        Decoration.mark({
          class: 'cm-polyarch-selection',
          attributes: { style: `background-color: color-mix(in srgb, ${cursor.color} 25%, transparent)` },
        }).range(from, to),
      );
    }
    ranges.push(
      Decoration.widget({ widget: new RemoteCaret(cursor.name, cursor.color), side: head === to ? 1 : -1 }).range(head),
    );
  }
  return Decoration.set(ranges, true);
}

/**
 * Other editors' cursors, as offsets into this editor's text. Presence and text travel apart,
 * so a cursor may arrive before or after the edits its offsets already count:
 *   - a local edit moves them (mapped), since no other editor has seen it yet;
 *   - a remote edit does not: it is most often the cursor's own typing, which its offsets
 *     already count when presence overtook the text; mapping it would push the caret past
 *     its place. The decorations are rebuilt from the published offsets (clamped), and every
 *     editor republishes after each remote edit it receives, so a third party's edit is
 *     corrected by the next update.
 */
const remoteCursors = StateField.define<{ others: readonly PresencePeer[]; decorations: DecorationSet }>({
  create: () => ({ others: [], decorations: Decoration.none }),
  update(value, tr) {
    for (const effect of tr.effects) {
      if (effect.is(showRemoteCursors)) {
        const others = effect.value.flatMap((peer) => {
          const cursor = cursorOf(peer.state);
          return cursor === null ? [] : [{ id: peer.id, state: cursor }];
        });
        return { others, decorations: remoteCursorDecorations(others, tr.state.doc) };
      }
    }
    if (!tr.docChanged) return value;
    let others = value.others;
    if (tr.annotation(remoteTextChange) !== true) {
      others = others.map((peer) => {
        const cursor = peer.state as CursorPresence;
        const anchor = tr.changes.mapPos(Math.min(cursor.anchor, tr.startState.doc.length), -1);
        const head = tr.changes.mapPos(Math.min(cursor.head, tr.startState.doc.length), -1);
        return { id: peer.id, state: { ...cursor, anchor, head } };
      });
    }
    return { others, decorations: remoteCursorDecorations(others, tr.state.doc) };
  },
  provide: (field) => EditorView.decorations.from(field, (value) => value.decorations),
});

const cursorTheme = EditorView.baseTheme({
  '.cm-polyarch-caret': {
    position: 'relative',
    borderLeft: '2px solid',
    marginLeft: '-1px',
    marginRight: '-1px',
    pointerEvents: 'none',
  },
  '.cm-polyarch-caret-name': {
    position: 'absolute',
    top: '-1.35em',
    left: '-2px',
    padding: '0 4px',
    borderRadius: '3px 3px 3px 0',
    color: 'white',
    fontSize: '0.75em',
    lineHeight: '1.3em',
    whiteSpace: 'nowrap',
    fontFamily: 'system-ui, sans-serif',
    userSelect: 'none',
  },
});

/** One per view: the text binding, and the cursor published to and read from presence. */
class CollabPlugin implements PluginValue {
  private readonly binding: TextBinding;
  private user: CollabUser;
  private published: CursorPresence | null = null;
  private readonly unsubscribePresence: () => void;
  private updating = false;
  private destroyed = false;

  constructor(
    private readonly view: EditorView,
    private readonly options: CollabOptions,
  ) {
    this.user = cleanUser(options.user);
    this.binding = new TextBinding(view, options.text, options.onError);
    const presence = options.presence;
    this.unsubscribePresence =
      presence === undefined ? () => {} : presence.subscribe((others) => this.showOthers(others));
    // The view exists but may not dispatch from its constructor: start on the next microtask,
    // before any input or network event can reach it.
    queueMicrotask(() => {
      if (this.destroyed) return;
      this.binding.resync();
      if (presence !== undefined) this.showOthers(presence.others());
      this.publish();
    });
  }

  update(update: ViewUpdate): void {
    this.updating = true;
    try {
      let userSet = false;
      for (const tr of update.transactions) {
        this.binding.localTransaction(tr);
        for (const effect of tr.effects) {
          if (effect.is(userChanged)) {
            this.user = cleanUser(effect.value);
            userSet = true;
          }
        }
      }
      // Offsets move with every edit, ours or not: republish them.
      if (update.docChanged || update.selectionSet || userSet) this.publish();
    } finally {
      this.updating = false;
    }
  }

  destroy(): void {
    this.destroyed = true;
    this.binding.destroy();
    this.unsubscribePresence();
  }

  private publish(): void {
    const presence = this.options.presence;
    if (presence === undefined || this.destroyed) return;
    const { anchor, head } = this.view.state.selection.main;
    const next: CursorPresence = { name: this.user.name, color: this.user.color, anchor, head };
    const last = this.published;
    if (
      last !== null &&
      last.anchor === next.anchor &&
      last.head === next.head &&
      last.name === next.name &&
      last.color === next.color
    )
      return;
    this.published = next;
    try {
      presence.set(next);
    } catch (e) {
      this.options.onError?.(e);
    }
  }

  private showOthers(others: readonly PresencePeer[]): void {
    if (this.destroyed) return;
    // A room may report from inside our own set(), during the editor's update: wait for its end.
    if (this.updating) {
      queueMicrotask(() => this.showOthers(others));
      return;
    }
    this.view.dispatch({ effects: showRemoteCursors.of(others) });
  }
}

/**
 * The CodeMirror extension binding an editor to a polyarch text, with the other editors'
 * cursors from presence. Create the editor with the text's content (after `await text.ready`);
 * edits then flow both ways, and undo takes back only this user's edits. Cursors are published
 * as plain offsets, refreshed on every selection change and every edit, local or remote, and
 * received ones are mapped through edits until the next presence update.
 *
 * @example
 * import { openReplica } from 'polyarch/client';
 * import { collab } from 'polyarch/codemirror';
 * import { EditorView, minimalSetup } from 'codemirror';
 *
 * const db = await openReplica({ storage: 'memory' });
 * const text = db.text('notes', 'welcome');
 * await text.ready;
 * db.sync('ws://127.0.0.1:7001');
 * const view = new EditorView({
 *   doc: text.toString(),
 *   extensions: [minimalSetup, collab({ text, presence: db.presence('notes/welcome'), user: { name: 'Ada', color: '#d33' } })],
 *   parent: document.body,
 * });
 */
export function collab(options: CollabOptions): Extension {
  return [
    EditorState.lineSeparator.of('\n'),
    remoteCursors,
    cursorTheme,
    ViewPlugin.define((view) => new CollabPlugin(view, options)),
  ];
}

/**
 * Changes the name and colour this editor publishes with its cursor.
 * @example
 * setCollabUser(view, { name: 'Grace', color: '#2a7' });
 */
export function setCollabUser(view: EditorView, user: CollabUser): void {
  view.dispatch({ effects: userChanged.of(user) });
}

/** The other editors' cursors as the editor shows them now (for status lines and tests). */
export function remoteCursorsOf(state: EditorState): CursorPresence[] {
  const field = state.field(remoteCursors, false);
  if (field === undefined) return [];
  return field.others.flatMap((peer) => {
    const cursor = cursorOf(peer.state);
    return cursor === null ? [] : [cursor];
  });
}
