// Small pure helpers the page uses: the passphrase strength hint, reading
// the `#/add/...` route, turning an invitation into a web link, and what to
// call someone. The invitation itself is parsed by the Rust core (in the
// worker); here it is only moved between its `wisp://add/` and `#/add/`
// spellings. Names are checked and cleaned by the core too; `cleanName`
// does it again here, so the page never relies on one layer alone.

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

/** The longest name shown, in characters (the core's `MAX_NAME_CHARS`). */
export const MAX_NAME_CHARS = 64;

/** What must never reach the screen from a name: controls (line breaks
 * included), the bidirectional embeddings, overrides, isolates and marks,
 * zero-width and invisible formatting characters, line and paragraph
 * separators: the core's `is_forbidden_in_name`. */
const FORBIDDEN_IN_NAME =
  /[\p{Cc}\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u2028\u2029\u202A-\u202E\u2060-\u206F\u3164\uFEFF\uFFA0\uFFF9-\uFFFB\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0000}-\u{E007F}]/gu;

/** A name as one visible line: each forbidden character and each run of
 * white space becomes one space, cut to {@link MAX_NAME_CHARS} characters;
 * empty when nothing is left. Render the result as text, inside `<bdi>`. */
export function cleanName(text: string): string {
  const line = text.replace(FORBIDDEN_IN_NAME, ' ').replace(/\s+/gu, ' ').trim();
  return [...line].slice(0, MAX_NAME_CHARS).join('').trimEnd();
}

/** Short form of an id for lists; the whole id is always one click away. */
export function shortId(id: string): string {
  return id.length <= 14 ? id : `${id.slice(0, 8)}…${id.slice(-4)}`;
}

/** Someone, with the names this device knows for them. */
export interface Named {
  id: string;
  petname?: string | null;
  display_name?: string | null;
}

/** What to call someone: the user's own name for them (a petname) first;
 * else the name they gave themselves, which is only their claim and must
 * be shown marked as such; else their short id. */
export type NameLabel =
  | { kind: 'petname'; text: string }
  | { kind: 'claimed'; text: string }
  | { kind: 'id'; text: string };

export function nameOf(peer: Named): NameLabel {
  const petname = cleanName(peer.petname ?? '');
  if (petname) return { kind: 'petname', text: petname };
  const claimed = cleanName(peer.display_name ?? '');
  if (claimed) return { kind: 'claimed', text: claimed };
  return { kind: 'id', text: shortId(peer.id) };
}

/** The same as one plain string, for where markup cannot go (a tooltip,
 * a confirmation): a claimed name in quotes, marked as theirs. */
export function nameText(peer: Named): string {
  const label = nameOf(peer);
  return label.kind === 'claimed' ? `“${label.text}” (their name)` : label.text;
}

/** What the user typed as a name: `null` (remove, clear) when blank. */
export function typedName(text: string): string | null {
  const name = text.trim();
  return name === '' ? null : name;
}
