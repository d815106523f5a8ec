import { describe, expect, it } from 'vitest';
import { invitationFromHash, normaliseInvitation, passphraseStrength, safetyRows, webLink } from './text';

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
