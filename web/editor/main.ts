/**
 * The collaborative editor page: a replica in memory inside the page, synced with one leader
 * over a WebSocket, a CodeMirror editor bound to one text document, and the other editors'
 * cursors from presence. Editing goes on while offline; db.sync redials, and the texts merge.
 *
 * URL parameters: `doc` (collection/id, default notes/welcome), `leader` (host:port or a
 * ws(s):// or http(s):// url; default the server that served the page), `cluster` (default:
 * the serving leader's, from ../config.json).
 */
import { EditorView, minimalSetup } from 'codemirror';
import { openReplica } from '../../src/client/index.js';
import type { PresencePeer, SyncStatus, SyncStatusDetail } from '../../src/client/index.js';
import { collab, cursorOf, remoteCursorsOf, setCollabUser } from '../../src/client/codemirror.js';
import type { CollabUser } from '../../src/client/codemirror.js';
import { clusterOf, element, leaderOf } from '../shared/page.js';

/** What the end-to-end test reads (it types through real keyboard events, not through this). */
export interface EditorTestHook {
  /** The editor's text. */
  text(): string;
  /** The replica's text (equal to the editor's between transactions). */
  replicaText(): string;
  status(): SyncStatus;
  /** The names of the other editors present. */
  others(): string[];
  /** This editor's caret offset. */
  head(): number;
  /** The other editors' carets as this editor shows them. */
  remoteHeads(): { name: string; head: number }[];
}

declare global {
  interface Window {
    polyarchEditor?: EditorTestHook;
  }
}

const PALETTE = ['#d1495b', '#00798c', '#edae49', '#6a4c93', '#2a9d8f', '#e76f51', '#3d5a80', '#8ab17d'];
const ADJECTIVES = ['Quick', 'Quiet', 'Brave', 'Clever', 'Gentle', 'Lucky', 'Merry', 'Swift'];
const ANIMALS = ['Otter', 'Heron', 'Lynx', 'Badger', 'Falcon', 'Marten', 'Puffin', 'Wombat'];
const USER_KEY = 'polyarch.editor.user';

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)] as T;
}

function showError(message: string): void {
  const box = element<HTMLParagraphElement>('error');
  box.textContent = message;
  box.hidden = false;
}

/** This tab's user: kept for the tab's life (sessionStorage), so two tabs are two people. */
function loadUser(): CollabUser {
  try {
    const saved = JSON.parse(sessionStorage.getItem(USER_KEY) ?? 'null') as Partial<CollabUser> | null;
    if (typeof saved?.name === 'string' && typeof saved.color === 'string' && /^#[0-9a-f]{6}$/i.test(saved.color)) {
      return { name: saved.name, color: saved.color };
    }
  } catch {
    // A malformed saved user is replaced.
  }
  return { name: `${pick(ADJECTIVES)} ${pick(ANIMALS)}`, color: pick(PALETTE) };
}

function saveUser(user: CollabUser): void {
  try {
    sessionStorage.setItem(USER_KEY, JSON.stringify(user));
  } catch {
    // Storage may be off (private modes): the user lasts for this page only.
  }
}

/** `collection/id` from `?doc=`; the id may itself contain slashes. */
function docOf(params: URLSearchParams): { collection: string; id: string } {
  const doc = params.get('doc') ?? 'notes/welcome';
  const slash = doc.indexOf('/');
  if (slash <= 0 || slash === doc.length - 1) {
    throw new Error(`?doc=${doc} is not collection/id (for example ?doc=notes/welcome)`);
  }
  return { collection: doc.slice(0, slash), id: doc.slice(slash + 1) };
}

function statusText(status: SyncStatus, detail: SyncStatusDetail | undefined): string {
  if (status === 'online') return detail?.peer === undefined ? 'online' : `online (${detail.peer})`;
  if (status === 'syncing') return `syncing ${detail?.pending ?? ''}`.trim();
  if (status === 'offline' && detail?.retryInMs !== undefined) {
    return `offline, retrying in ${Math.ceil(detail.retryInMs / 1000)} s`;
  }
  return status;
}

function renderPeople(list: HTMLUListElement, me: CollabUser, others: readonly PresencePeer[]): void {
  const people = [{ ...me, self: true }];
  for (const peer of others) {
    const cursor = cursorOf(peer.state);
    if (cursor !== null) people.push({ name: cursor.name, color: cursor.color, self: false });
  }
  list.replaceChildren(
    ...people.map((p) => {
      const li = document.createElement('li');
      li.textContent = p.self ? `${p.name} (you)` : p.name;
      li.style.backgroundColor = p.color;
      if (p.self) li.className = 'me';
      return li;
    }),
  );
}

async function start(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const { collection, id } = docOf(params);
  const leader = leaderOf(params);
  element('doc-name').textContent = `${collection}/${id}`;
  element('leader').textContent = `Syncing with ${leader}; this page keeps its own replica in memory.`;
  document.title = `${collection}/${id} · polyarch editor`;

  const user = loadUser();
  const nameInput = element<HTMLInputElement>('user-name');
  const colorInput = element<HTMLInputElement>('user-color');
  nameInput.value = user.name;
  colorInput.value = user.color;

  const cluster = await clusterOf(params);
  const db = await openReplica({ storage: 'memory' });
  const text = db.text(collection, id);
  await text.ready;
  const presence = db.presence(`${collection}/${id}`);
  const sync = db.sync(leader, { cluster });

  const statusBox = element('status');
  const showStatus = (status: SyncStatus, detail?: SyncStatusDetail): void => {
    statusBox.className = `status ${status}`;
    statusBox.textContent = statusText(status, detail);
    if (status === 'offline' && sync.lastError !== null) statusBox.title = sync.lastError.message;
  };
  showStatus(sync.status);
  sync.subscribe(showStatus);

  const view = new EditorView({
    doc: text.toString(),
    extensions: [
      minimalSetup,
      EditorView.lineWrapping,
      EditorView.contentAttributes.of({ 'aria-label': `text of ${collection}/${id}` }),
      collab({ text, presence, user, onError: (e) => showError(`an edit was refused: ${(e as Error).message}`) }),
    ],
    parent: element('editor'),
  });

  const people = element<HTMLUListElement>('people');
  renderPeople(people, user, presence.others());
  presence.subscribe((others) => renderPeople(people, user, others));
  const userEdited = (): void => {
    const name = nameInput.value.trim();
    if (name !== '') user.name = name;
    if (/^#[0-9a-f]{6}$/i.test(colorInput.value)) user.color = colorInput.value;
    saveUser(user);
    setCollabUser(view, user);
    renderPeople(people, user, presence.others());
  };
  nameInput.addEventListener('change', userEdited);
  colorInput.addEventListener('input', userEdited);
  saveUser(user);

  // Back online in the browser's eyes: dial now rather than at the end of the backoff.
  window.addEventListener('online', () => sync.reconnect());
  // Leave the room at once instead of lapsing after the presence timeout.
  window.addEventListener('pagehide', () => presence.close());

  window.polyarchEditor = {
    text: () => view.state.doc.toString(),
    replicaText: () => text.toString(),
    status: () => sync.status,
    others: () => presence.others().flatMap((p) => cursorOf(p.state)?.name ?? []),
    head: () => view.state.selection.main.head,
    remoteHeads: () => remoteCursorsOf(view.state).map(({ name, head }) => ({ name, head })),
  };
  view.focus();
}

start().catch((e: unknown) => showError(`The editor could not start: ${e instanceof Error ? e.message : String(e)}`));
