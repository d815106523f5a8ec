import { describe, expect, it } from 'vitest';
import {
  MAX_NAME_CHARS,
  cleanName,
  invitationFromHash,
  nameOf,
  nameText,
  normaliseInvitation,
  passphraseStrength,
  safetyRows,
  shortId,
  typedName,
  webLink,
} from './text';

const ID = 'n4mag7x5iurlqsokoemzddqof4c64act';

describe('invitation links', () => {
  it('read the #/add/ route as the wisp:// link the core parses', () => {
    expect(invitationFromHash(`#/add/${ID}`)).toBe(`wisp://add/${ID}`);
    expect(invitationFromHash(`#/add/${ID}/TOKEN`)).toBe(`wisp://add/${ID}/TOKEN`);
    expect(invitationFromHash('#/settings')).toBeUndefined();
    expect(invitationFromHash('#/add/')).toBeUndefined();
    expect(invitationFromHash(`#/add/${ID} x`)).toBeUndefined();
    // A malformed escape is no link, not a crash of the page.
    expect(invitationFromHash('#/add/%')).toBeUndefined();
    expect(invitationFromHash('#/add/%zz')).toBeUndefined();
  });

  it('turn into web links on this origin and back', () => {
    const link = webLink('http://127.0.0.1:7700', `wisp://add/${ID}/TOKEN`);
    expect(link).toBe(`http://127.0.0.1:7700/#/add/${ID}/TOKEN`);
    expect(normaliseInvitation(` ${link} `)).toBe(`wisp://add/${ID}/TOKEN`);
    expect(normaliseInvitation(ID)).toBe(ID);
    expect(normaliseInvitation(`wisp://add/${ID}`)).toBe(`wisp://add/${ID}`);
  });
});

describe('passphrase strength', () => {
  it('grows with length and variety, and calls repeats weak', () => {
    expect(passphraseStrength('abc').score).toBe(0);
    expect(passphraseStrength('aaaaaaaaaaaaaaaaaaaa').score).toBe(0);
    expect(passphraseStrength('password').score).toBeLessThan(2);
    expect(passphraseStrength('correct horse battery staple').score).toBeGreaterThanOrEqual(3);
    expect(passphraseStrength('Tr0ub4dor&3-extra-long').score).toBe(4);
  });
});

describe('safety numbers', () => {
  it('print in three rows of four groups', () => {
    const groups = Array.from({ length: 12 }, (_, i) => String(10000 + i)).join(' ');
    expect(safetyRows(groups)).toEqual(['10000 10001 10002 10003', '10004 10005 10006 10007', '10008 10009 10010 10011']);
  });
});

describe('names', () => {
  const HOSTILE = '<img src=x onerror=alert(1)>\u202Eevil\nline\u2066x\u200B\u0007';

  it('are one visible line: no controls, line breaks, direction overrides or invisible characters', () => {
    expect(cleanName(HOSTILE)).toBe('<img src=x onerror=alert(1)> evil line x');
    expect(cleanName('  Alice \t Martin ')).toBe('Alice Martin');
    expect(cleanName('a\u2028b\u2029c\u202Ad\u061Ce\uFEFFf')).toBe('a b c d e f');
    expect(cleanName('\u202E\u200F\n ')).toBe('');
    for (const c of ['\u202A', '\u202B', '\u202C', '\u202D', '\u202E', '\u2066', '\u2067', '\u2068', '\u2069', '\u200E', '\u200F']) {
      expect(cleanName(`a${c}b`)).toBe('a b');
    }
  });

  it('are cut to 64 characters, not UTF-16 units, and keep what is visible', () => {
    expect([...cleanName('🐉'.repeat(100))]).toHaveLength(MAX_NAME_CHARS);
    expect(cleanName('李小龍 🐉')).toBe('李小龍 🐉');
  });

  it('call a friend by the petname first, then their own claim, then the short id', () => {
    const id = ID;
    expect(nameOf({ id, petname: 'Bob', display_name: 'Robert' })).toEqual({ kind: 'petname', text: 'Bob' });
    expect(nameOf({ id, petname: null, display_name: 'Robert' })).toEqual({ kind: 'claimed', text: 'Robert' });
    expect(nameOf({ id, petname: ' ', display_name: '\u202E' })).toEqual({ kind: 'id', text: shortId(id) });
    expect(nameOf({ id })).toEqual({ kind: 'id', text: 'n4mag7x5…4act' });
    expect(nameOf({ id, display_name: HOSTILE }).text).not.toMatch(/[\u202E\n]/);
    expect(nameText({ id, display_name: 'Robert' })).toBe('“Robert” (their name)');
    expect(nameText({ id, petname: 'Bob' })).toBe('Bob');
  });

  it('typed blank mean none', () => {
    expect(typedName('  ')).toBeNull();
    expect(typedName(' Bob ')).toBe('Bob');
  });
});
