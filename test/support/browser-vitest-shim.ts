/**
 * Stands in for `vitest` when a test-suite file is bundled for a real browser page (the bundler
 * aliases the `vitest` import here): describe/it/hooks only collect the tests, `runCollected`
 * runs them in order the way Vitest would, and `expect` is Vitest's own matchers from the
 * standalone @vitest/expect on chai, so assertions mean exactly what they mean under Vitest.
 * Only the functions below exist: a suite importing anything else fails to bundle, loudly.
 */
import {
  ASYMMETRIC_MATCHERS_OBJECT,
  GLOBAL_EXPECT,
  JestAsymmetricMatchers,
  JestChaiExpect,
  JestExtend,
  chai,
  customMatchers,
  getState,
  setState,
} from '@vitest/expect';
import type { ExpectStatic, MatchersObject } from '@vitest/expect';

chai.use(JestExtend);
chai.use(JestChaiExpect);
chai.use(JestAsymmetricMatchers);

type Fn = () => unknown;

interface Test {
  kind: 'test';
  name: string;
  fn: Fn;
  timeoutMs: number | undefined;
}

interface Suite {
  kind: 'suite';
  name: string;
  children: (Suite | Test)[];
  beforeAll: Fn[];
  afterAll: Fn[];
  beforeEach: Fn[];
  afterEach: Fn[];
}

/** One test's outcome, as the page hands it to the Node side. */
export interface TestResult {
  /** Enclosing describe names, then the test's own name. */
  path: string[];
  passed: boolean;
  /** The failure (message, diff values, stack); empty when passed. */
  error: string;
}

function newSuite(name: string): Suite {
  return { kind: 'suite', name, children: [], beforeAll: [], afterAll: [], beforeEach: [], afterEach: [] };
}

const root = newSuite('');
let current = root;
let running = false;

function collecting(what: string): void {
  if (running) throw new Error(`${what} called while the tests run: the browser shim only collects at load time`);
}

export function describe(name: string, body: () => void): void {
  collecting('describe');
  const suite = newSuite(name);
  current.children.push(suite);
  const parent = current;
  current = suite;
  try {
    body();
  } finally {
    current = parent;
  }
}

export function it(name: string, fn: Fn, timeoutMs?: number): void {
  collecting('it');
  current.children.push({ kind: 'test', name, fn, timeoutMs });
}
export const test = it;

export function beforeAll(fn: Fn): void {
  collecting('beforeAll');
  current.beforeAll.push(fn);
}
export function afterAll(fn: Fn): void {
  collecting('afterAll');
  current.afterAll.push(fn);
}
export function beforeEach(fn: Fn): void {
  collecting('beforeEach');
  current.beforeEach.push(fn);
}
export function afterEach(fn: Fn): void {
  collecting('afterEach');
  current.afterEach.push(fn);
}

/** Built as Vitest's createExpect builds its `expect`, minus snapshots, polling and soft mode. */
function createExpect(): ExpectStatic {
  const expect = ((value: unknown, message?: string) => {
    const { assertionCalls } = getState(expect);
    setState({ assertionCalls: assertionCalls + 1 }, expect);
    return chai.expect(value, message);
  }) as ExpectStatic;
  Object.assign(expect, chai.expect);
  Object.assign(expect, (globalThis as Record<PropertyKey, unknown>)[ASYMMETRIC_MATCHERS_OBJECT]);
  expect.getState = () => getState(expect);
  expect.setState = (state) => setState(state, expect);
  setState({ assertionCalls: 0, isExpectingAssertions: false, expectedAssertionsNumber: null }, expect);
  expect.assert = chai.assert;
  // JestExtend adds `extend` to chai.expect; chai's types do not know it.
  const chaiExpect = chai.expect as unknown as { extend(e: ExpectStatic, m: MatchersObject): void };
  expect.extend = (matchers) => chaiExpect.extend(expect, matchers);
  expect.extend(customMatchers);
  (globalThis as Record<PropertyKey, unknown>)[GLOBAL_EXPECT] = expect;
  return expect;
}

export const expect: ExpectStatic = createExpect();

/** How many tests were collected, so the caller can tell an empty collection from a pass. */
export function countCollected(suite: Suite = root): number {
  return suite.children.reduce((n, c) => n + (c.kind === 'test' ? 1 : countCollected(c)), 0);
}

/** A value in full (chai's message truncates it), up to a length a log can carry. */
function full(value: unknown): string {
  const threshold = chai.config.truncateThreshold;
  chai.config.truncateThreshold = 0;
  try {
    const text = chai.util.inspect(value, false, 8);
    return text.length > 4000 ? `${text.slice(0, 4000)}…` : text;
  } finally {
    chai.config.truncateThreshold = threshold;
  }
}

/** A failure as text: chai's message, the compared values when it has them, and the stack. */
function describeError(e: unknown): string {
  if (!(e instanceof Error)) return `thrown non-Error: ${chai.util.inspect(e)}`;
  const parts = [`${e.name}: ${e.message}`];
  const a = e as Error & { showDiff?: boolean; expected?: unknown; actual?: unknown };
  if (a.showDiff === true) parts.push(`expected: ${full(a.expected)}`, `actual:   ${full(a.actual)}`);
  if (e.stack !== undefined) parts.push(e.stack.split('\n').slice(1, 8).join('\n'));
  return parts.join('\n');
}

/**
 * Fails after `ms` instead of hanging the page, as Vitest's testTimeout does; the Node side
 * then reports which test stuck rather than timing out with no answer.
 */
async function within<T>(ms: number, what: string, fn: () => T | Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([Promise.resolve().then(fn), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface RunOptions {
  /** Per test and per hook, as Vitest's testTimeout/hookTimeout. */
  timeoutMs: number;
  /** Called as each test finishes, e.g. to log progress to the console. */
  onResult?: (result: TestResult) => void;
}

/**
 * Runs every collected test in order, with Vitest's hook order: beforeAll before a suite's
 * first test, beforeEach outermost first, afterEach innermost first (each in reverse order of
 * registration, Vitest's default `stack`), afterAll after its last test. An error a test leaves
 * unhandled (an unhandled rejection or an uncaught error while it runs) fails that test, as
 * Vitest fails the run.
 */
export async function runCollected(options: RunOptions): Promise<TestResult[]> {
  running = true;
  const results: TestResult[] = [];
  const stray: unknown[] = [];
  const onRejection = (e: PromiseRejectionEvent): void => {
    e.preventDefault();
    stray.push(e.reason);
  };
  const onError = (e: ErrorEvent): void => {
    e.preventDefault();
    stray.push(e.error ?? e.message);
  };
  addEventListener('unhandledrejection', onRejection);
  addEventListener('error', onError);

  const hook = (fn: Fn, what: string): Promise<unknown> => within(options.timeoutMs, what, fn);

  async function runSuite(suite: Suite, path: string[], eachBefore: Fn[], eachAfter: Fn[]): Promise<void> {
    const before = [...eachBefore, ...suite.beforeEach];
    const after = [...[...suite.afterEach].reverse(), ...eachAfter];
    const failAll = (s: Suite | Test, p: string[], error: string): void => {
      if (s.kind === 'test') record({ path: [...p, s.name], passed: false, error });
      else for (const c of s.children) failAll(c, [...p, s.name], error);
    };
    try {
      for (const fn of suite.beforeAll) await hook(fn, `beforeAll of "${suite.name}"`);
    } catch (e) {
      const error = `beforeAll failed: ${describeError(e)}`;
      for (const c of suite.children) failAll(c, path, error);
      return;
    }
    for (const child of suite.children) {
      if (child.kind === 'suite') {
        await runSuite(child, [...path, child.name], before, after);
        continue;
      }
      const errors: string[] = [];
      stray.length = 0;
      try {
        for (const fn of before) await hook(fn, 'beforeEach');
        await within(child.timeoutMs ?? options.timeoutMs, 'the test', child.fn);
      } catch (e) {
        errors.push(describeError(e));
      }
      for (const fn of after) {
        try {
          await hook(fn, 'afterEach');
        } catch (e) {
          errors.push(`afterEach failed: ${describeError(e)}`);
        }
      }
      // A rejection nobody handled surfaces a turn later: let it land on this test.
      await new Promise((resolve) => setTimeout(resolve, 0));
      for (const e of stray.splice(0)) errors.push(`unhandled error: ${describeError(e)}`);
      record({ path: [...path, child.name], passed: errors.length === 0, error: errors.join('\n---\n') });
    }
    for (const fn of [...suite.afterAll].reverse()) {
      try {
        await hook(fn, `afterAll of "${suite.name}"`);
      } catch (e) {
        record({ path: [...path, `(afterAll)`], passed: false, error: describeError(e) });
      }
    }
  }

  function record(result: TestResult): void {
    results.push(result);
    options.onResult?.(result);
  }

  try {
    await runSuite(root, [], [], []);
  } finally {
    removeEventListener('unhandledrejection', onRejection);
    removeEventListener('error', onError);
  }
  return results;
}
