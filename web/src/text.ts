// Small pure helpers the page uses: the passphrase strength hint, reading
// the `#/add/...` route, and turning an invitation into a web link. The
// invitation itself is parsed by the Rust core (in the worker); here it is
// only moved between its `wisp://add/` and `#/add/` spellings.

export const INVITATION_PREFIX = 'wisp://add/';
const ADD_ROUTE = '#/add/';

export interface Strength {
  /** 0 (very weak) to 4 (strong). */
  score: number;
  label: string;
  advice: string;
}

/** A rough hint, not a guarantee: length counts most, then variety. */
export function passphraseStrength(passphrase: string): Strength {
  const length = [...passphrase].length;
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^A-Za-z0-9]/].filter((re) => re.test(passphrase)).length;
  const words = passphrase.trim().split(/\s+/).filter((w) => w.length > 0).length;
  const repeated = /^(.)\1*$/.test(passphrase);
  let score = 0;
  if (length >= 8) score++;
  if (length >= 12) score++;
  if (length >= 16 || (words >= 4 && length >= 14)) score++;
  if (classes >= 3 || words >= 5) score++;
  if (repeated || length < 6) score = 0;
  score = Math.min(score, 4);
  const labels = ['very weak', 'weak', 'fair', 'good', 'strong'];
  const advice =
    score >= 3
      ? 'Nobody can reset it: keep it somewhere safe.'
      : 'Longer is stronger: try four or more unrelated words.';
  return { score, label: labels[score] ?? 'very weak', advice };
}

/** The invitation a `#/add/ID[/TOKEN]` hash carries, as a `wisp://add/`
 * link for the core to parse; undefined for any other hash. */
export function invitationFromHash(hash: string): string | undefined {
  if (!hash.startsWith(ADD_ROUTE)) return undefined;
  let rest: string;
  try {
    rest = decodeURIComponent(hash.slice(ADD_ROUTE.length)).trim();
  } catch {
    // A malformed escape (#/add/%zz): not a link of ours.
    return undefined;
  }
  if (rest.length === 0 || /[\s?#]/.test(rest)) return undefined;
  return INVITATION_PREFIX + rest;
}

/** The web link of a `wisp://add/...` invitation on this origin. */
export function webLink(origin: string, invitation: string): string {
  const rest = invitation.startsWith(INVITATION_PREFIX) ? invitation.slice(INVITATION_PREFIX.length) : invitation;
  return `${origin}/${ADD_ROUTE}${rest}`;
}

/** What a user pasted into "add a friend": a web link becomes the
 * `wisp://add/` link it carries; anything else is passed on as typed. */
export function normaliseInvitation(typed: string): string {
  const text = typed.trim();
  const at = text.indexOf(ADD_ROUTE);
  if (/^https?:\/\//i.test(text) && at >= 0) return invitationFromHash(text.slice(at)) ?? text;
  return text;
}

/** The 60 digits in rows of four groups, as `wisp verify` prints them. */
export function safetyRows(groups: string): string[] {
  const parts = groups.split(' ');
  const rows: string[] = [];
  for (let i = 0; i < parts.length; i += 4) rows.push(parts.slice(i, i + 4).join(' '));
  return rows;
}
