import { describe, expect, it } from 'vitest';
import { DbError, ErrorCode } from '../shared/errors.js';
import { checkCollectionConfig, constraintPointer, fieldAt } from './kinds.js';

function refused(input: unknown): string {
  try {
    checkCollectionConfig(input);
  } catch (e) {
    expect(e).toBeInstanceOf(DbError);
    expect((e as DbError).code).toBe(ErrorCode.invalidInput);
    return (e as DbError).message;
  }
  throw new Error(`accepted ${JSON.stringify(input)}`);
}

describe('checkCollectionConfig: unique and references', () => {
  it('accepts unique fields and references on records and maps, keeping their spelling', () => {
    expect(checkCollectionConfig({ unique: ['email', '/profile/handle'] })).toEqual({
      kind: 'record',
      policy: 'keep',
      unique: ['email', '/profile/handle'],
    });
    expect(checkCollectionConfig({ kind: 'map', references: { owner: 'users', '/meta/team': 'teams' } })).toEqual({
      kind: 'map',
      policy: 'keep',
      references: { owner: 'users', '/meta/team': 'teams' },
    });
    // One field may be both unique and a reference (one-to-one).
    expect(checkCollectionConfig({ unique: ['owner'], references: { owner: 'users' } })).toMatchObject({
      unique: ['owner'],
      references: { owner: 'users' },
    });
  });

  it('drops empty settings, so "no constraint" has one form', () => {
    expect(checkCollectionConfig({ unique: [], references: {} })).toEqual({ kind: 'record', policy: 'keep' });
  });

  it('refuses them on counters and sets', () => {
    expect(refused({ kind: 'counter', unique: ['n'] })).toMatch(/"record" or "map"/);
    expect(refused({ kind: 'set', references: { owner: 'users' } })).toMatch(/"record" or "map"/);
  });

  it('refuses malformed unique settings', () => {
    expect(refused({ unique: 'email' })).toMatch(/array/);
    expect(refused({ unique: [''] })).toMatch(/field name or a JSON pointer/);
    expect(refused({ unique: [42] })).toMatch(/field name or a JSON pointer/);
    expect(refused({ unique: ['/bad~2escape'] })).toMatch(/not a JSON pointer/);
    expect(refused({ unique: ['x'.repeat(300)] })).toMatch(/longer than/);
    expect(refused({ unique: ['email', 'email'] })).toMatch(/twice/);
    // A plain name and the pointer to it are one field.
    expect(refused({ unique: ['email', '/email'] })).toMatch(/twice/);
    expect(refused({ unique: ['a/b', '/a~1b'] })).toMatch(/twice/);
  });

  it('refuses malformed references', () => {
    expect(refused({ references: ['users'] })).toMatch(/must map fields/);
    expect(refused({ references: { owner: 'bad name' } })).toMatch(/invalid collection name/);
    expect(refused({ references: { owner: '_config' } })).toMatch(/invalid collection name/);
    expect(refused({ references: { owner: 7 } })).toMatch(/invalid collection name/);
    expect(refused({ references: { owner: 'users', '/owner': 'teams' } })).toMatch(/twice/);
    expect(refused({ references: { '': 'users' } })).toMatch(/field name or a JSON pointer/);
  });

  it('keeps a field named __proto__ a field', () => {
    const config = checkCollectionConfig(JSON.parse('{"references": {"__proto__": "users"}}'));
    expect(Object.keys(config.references ?? {})).toEqual(['__proto__']);
    expect(fieldAt(JSON.parse('{"a": 1}'), constraintPointer('__proto__'))).toBeUndefined();
    expect(fieldAt({ constructor: 'x' }, constraintPointer('constructor'))).toBe('x');
  });
});

describe('fieldAt', () => {
  it('reads a top-level or nested field, undefined when absent or not inside objects', () => {
    expect(fieldAt({ email: 'a@x' }, constraintPointer('email'))).toBe('a@x');
    expect(fieldAt({ 'e/mail': 1 }, constraintPointer('e/mail'))).toBe(1);
    expect(fieldAt({ p: { h: null } }, '/p/h')).toBeNull();
    expect(fieldAt({ p: [1] }, '/p/0')).toBeUndefined();
    expect(fieldAt('text', '/p')).toBeUndefined();
    expect(fieldAt({}, '/p/h')).toBeUndefined();
  });
});
