//! Safety numbers: what two friends compare, in person or on a call, to know
//! that the server has not put someone else between them.
//!
//! A user id is the hash of its owner's Ed25519 identity key, and every other
//! key used for a friend is checked against that id ([`crate::e2e`]). So if
//! both devices agree on both ids, they agree on both identity keys, and no
//! key the server hands out can be swapped undetected. The safety number is
//! those two ids made easy to compare by ear: 60 decimal digits in 12 groups
//! of 5, the same on both devices, different for any other pair.
//!
//! Construction (modelled on Signal's numeric fingerprint): for each party,
//! `h = SHA-512(version || id || h)` iterated [`ITERATIONS`] times from an
//! empty `h` (the iterations make it costly to search for an id whose digits
//! collide with a given one); the first 30 bytes of `h` become six 5-digit
//! groups (each 5 bytes read as a big-endian integer, modulo 100 000). The
//! two 30-digit halves are concatenated in a canonical order, the smaller id
//! bytes first, so both sides compute the same number.
//!
//! The QR code carries the two ids themselves ([`SafetyNumber::qr_payload`]):
//! a device that scans it compares all 160 bits of each id rather than the
//! roughly 100 bits the digits keep.

use std::fmt;

use sha2::{Digest, Sha512};
use wisp_proto::UserId;

/// Version of the construction, hashed in and written into the QR payload.
const VERSION: u8 = 1;

/// SHA-512 rounds per party.
pub const ITERATIONS: usize = 5200;

/// Digits per group.
const GROUP_DIGITS: usize = 5;
/// Groups per party.
const GROUPS_PER_PARTY: usize = 6;
/// Digest bytes read per group.
const BYTES_PER_GROUP: usize = 5;

/// How the QR payload starts; upper case so it fits QR's compact
/// alphanumeric mode (digits, A-Z and a few symbols).
const QR_PREFIX: &str = "WISP-VERIFY";

/// The safety number of two users: 60 digits, the same whichever of the two
/// computes it. Holds no secret: it is derived from two public ids.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber {
    /// The two ids, smaller bytes first.
    ids: [UserId; 2],
    /// 60 ASCII digits.
    digits: String,
}

/// The safety number of `a` and `b`; `safety_number(a, b) ==
/// safety_number(b, a)`.
pub fn safety_number(a: UserId, b: UserId) -> SafetyNumber {
    let ids = if a.as_bytes() <= b.as_bytes() {
        [a, b]
    } else {
        [b, a]
    };
    let mut digits = String::with_capacity(2 * GROUPS_PER_PARTY * GROUP_DIGITS);
    for id in &ids {
        digits.push_str(&party_digits(id));
    }
    SafetyNumber { ids, digits }
}

/// One party's 30 digits.
fn party_digits(id: &UserId) -> String {
    let mut digest = Sha512::new()
        .chain_update([VERSION])
        .chain_update(id.as_bytes())
        .finalize();
    for _ in 1..ITERATIONS {
        digest = Sha512::new()
            .chain_update([VERSION])
            .chain_update(id.as_bytes())
            .chain_update(digest)
            .finalize();
    }
    let mut digits = String::with_capacity(GROUPS_PER_PARTY * GROUP_DIGITS);
    for chunk in digest.chunks_exact(BYTES_PER_GROUP).take(GROUPS_PER_PARTY) {
        let mut wide = [0u8; 8];
        wide[8 - BYTES_PER_GROUP..].copy_from_slice(chunk);
        let group = u64::from_be_bytes(wide) % 100_000;
        digits.push_str(&format!("{group:05}"));
    }
    digits
}

impl SafetyNumber {
    /// The 60 digits, without spaces.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The 12 groups of 5 digits, in order.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        // The digits are ASCII, so every 5-byte slice is on a boundary.
        (0..self.digits.len() / GROUP_DIGITS)
            .map(|i| &self.digits[i * GROUP_DIGITS..(i + 1) * GROUP_DIGITS])
    }

    /// The two ids, in the canonical order (smaller bytes first).
    pub fn ids(&self) -> [UserId; 2] {
        self.ids
    }

    /// What the QR code carries: `WISP-VERIFY:1:<ID>:<ID>`, the two ids in
    /// the canonical order, all upper case so the code stays small.
    pub fn qr_payload(&self) -> String {
        let [a, b] = self.ids;
        format!("{QR_PREFIX}:{VERSION}:{a}:{b}").to_ascii_uppercase()
    }

    /// Whether a scanned QR payload is this safety number's (any letter
    /// case, surrounding whitespace ignored): the two ids must match
    /// exactly. A payload of another version, or malformed, does not match.
    pub fn matches_qr_payload(&self, scanned: &str) -> bool {
        let mut parts = scanned.trim().split(':');
        let (Some(prefix), Some(version), Some(a), Some(b), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return false;
        };
        if !prefix.eq_ignore_ascii_case(QR_PREFIX) || version != VERSION.to_string() {
            return false;
        }
        match (a.parse::<UserId>(), b.parse::<UserId>()) {
            (Ok(a), Ok(b)) => safety_number(a, b) == *self,
            _ => false,
        }
    }
}

/// Three lines of four groups, e.g. `12345 67890 ...`, as people read it.
impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.groups().enumerate() {
            if i > 0 {
                f.write_str(if i % 4 == 0 { "\n" } else { " " })?;
            }
            f.write_str(group)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({})", self.digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u8) -> UserId {
        UserId::from_ed25519(&[seed; 32])
    }

    #[test]
    fn both_sides_compute_the_same_number() {
        let (a, b) = (id(1), id(2));
        assert_eq!(safety_number(a, b), safety_number(b, a));
        assert_eq!(safety_number(a, b).digits(), safety_number(b, a).digits());
        assert_eq!(
            safety_number(a, b).qr_payload(),
            safety_number(b, a).qr_payload()
        );
    }

    #[test]
    fn another_pair_has_another_number() {
        let (a, b, c) = (id(1), id(2), id(3));
        let ab = safety_number(a, b);
        let ac = safety_number(a, c);
        let bc = safety_number(b, c);
        assert_ne!(ab.digits(), ac.digits());
        assert_ne!(ab.digits(), bc.digits());
        assert_ne!(ac.digits(), bc.digits());
        // Each half belongs to one party: a's half is the same in both.
        let half = |n: &SafetyNumber, who: UserId| {
            let at = n.ids().iter().position(|x| *x == who).unwrap();
            n.digits()[at * 30..(at + 1) * 30].to_owned()
        };
        assert_eq!(half(&ab, a), half(&ac, a));
        assert_ne!(half(&ab, b), half(&ac, c));
    }

    #[test]
    fn sixty_digits_in_twelve_groups_on_three_lines() {
        let number = safety_number(id(1), id(2));
        assert_eq!(number.digits().len(), 60);
        assert!(number.digits().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(number.groups().count(), 12);
        let shown = number.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3);
        for line in lines {
            let groups: Vec<&str> = line.split(' ').collect();
            assert_eq!(groups.len(), 4);
            assert!(groups.iter().all(|g| g.len() == 5));
        }
        assert_eq!(shown.replace([' ', '\n'], ""), number.digits());
    }

    /// Pinned once computed (and checked against an independent Python
    /// implementation of the construction in the module doc): a change here
    /// changes every user's number and needs a new [`VERSION`].
    #[test]
    fn a_known_pair_has_a_known_number() {
        let number = safety_number(id(1), id(2));
        assert_eq!(
            number.digits(),
            "774495558576266962194321077823325100768309300373781389477224"
        );
        assert_eq!(
            number.to_string(),
            "77449 55585 76266 96219\n\
             43210 77823 32510 07683\n\
             09300 37378 13894 77224"
        );
    }

    #[test]
    fn the_qr_payload_names_both_ids_and_matches_only_them() {
        let (a, b, c) = (id(1), id(2), id(3));
        let number = safety_number(a, b);
        let payload = number.qr_payload();
        let [first, second] = number.ids();
        assert_eq!(
            payload,
            format!("WISP-VERIFY:1:{first}:{second}").to_ascii_uppercase()
        );
        assert!(number.matches_qr_payload(&payload));
        assert!(number.matches_qr_payload(&format!(" {} ", payload.to_ascii_lowercase())));
        // The ids in the other order still name the same pair.
        assert!(number.matches_qr_payload(&format!("WISP-VERIFY:1:{second}:{first}")));
        assert!(!number.matches_qr_payload(&safety_number(a, c).qr_payload()));
        assert!(!number.matches_qr_payload(&payload.replace(":1:", ":2:")));
        assert!(!number.matches_qr_payload(&format!("{payload}:extra")));
        assert!(!number.matches_qr_payload("WISP-VERIFY:1"));
        assert!(!number.matches_qr_payload(""));
    }
}
