//! The registration proof-of-work puzzle.
//!
//! Without phone numbers anyone can register, so registering costs a little
//! CPU: find `solution` such that
//! `SHA-256("wisp-pow-v1\0" || nonce || ed25519_key || solution_le64)` starts
//! with `difficulty` zero bits. The nonce is fresh per connection, so work
//! cannot be saved up; the key is inside, so one solution registers one key.

use sha2::{Digest, Sha256};

const POW_LABEL: &[u8] = b"wisp-pow-v1\0";

/// True when `solution` solves the puzzle. Difficulty 0 accepts anything.
pub fn check(nonce: &[u8], ed25519_key: &[u8], difficulty: u32, solution: u64) -> bool {
    leading_zero_bits(&digest(nonce, ed25519_key, solution)) >= difficulty
}

/// Finds a solution, trying at most `max_attempts` candidates.
///
/// Expected work is `2^difficulty` hashes; callers bound difficulty (see
/// [`crate::limits::MAX_POW_DIFFICULTY`]) and attempts so this always ends.
pub fn solve(nonce: &[u8], ed25519_key: &[u8], difficulty: u32, max_attempts: u64) -> Option<u64> {
    solve_from(nonce, ed25519_key, difficulty, 0, max_attempts)
}

/// Like [`solve`], trying only the candidates `start..start + attempts`:
/// for a caller that solves in slices to report progress in between (a
/// browser's worker).
pub fn solve_from(
    nonce: &[u8],
    ed25519_key: &[u8],
    difficulty: u32,
    start: u64,
    attempts: u64,
) -> Option<u64> {
    let prefix = Sha256::new()
        .chain_update(POW_LABEL)
        .chain_update(nonce)
        .chain_update(ed25519_key);
    (start..start.saturating_add(attempts)).find(|candidate| {
        let hash = prefix
            .clone()
            .chain_update(candidate.to_le_bytes())
            .finalize();
        leading_zero_bits(&hash) >= difficulty
    })
}

fn digest(nonce: &[u8], ed25519_key: &[u8], solution: u64) -> [u8; 32] {
    Sha256::new()
        .chain_update(POW_LABEL)
        .chain_update(nonce)
        .chain_update(ed25519_key)
        .chain_update(solution.to_le_bytes())
        .finalize()
        .into()
}

fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solutions_check_and_wrong_ones_do_not() {
        let nonce = [3u8; 32];
        let key = [9u8; 32];
        let solution = solve(&nonce, &key, 12, 1 << 24).unwrap();
        assert!(check(&nonce, &key, 12, solution));
        // The same solution is worthless for another key or another nonce
        // (with overwhelming probability at 12 bits: checked for these inputs).
        assert!(!check(&nonce, &[8u8; 32], 12, solution));
        assert!(!check(&[4u8; 32], &key, 12, solution));
    }

    #[test]
    fn difficulty_zero_accepts_anything() {
        assert!(check(&[0; 32], &[0; 32], 0, 12345));
    }

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        assert_eq!(leading_zero_bits(&[0, 0, 0b0001_0000]), 19);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn slices_find_what_one_search_finds() {
        let (nonce, key) = ([5u8; 32], [6u8; 32]);
        let whole = solve(&nonce, &key, 10, 1 << 20).unwrap();
        let sliced = (0..)
            .step_by(100)
            .find_map(|start| solve_from(&nonce, &key, 10, start, 100))
            .unwrap();
        assert_eq!(sliced, whole);
        assert_eq!(solve_from(&nonce, &key, 10, whole + 1, 0), None);
    }

    #[test]
    fn solving_is_bounded() {
        assert_eq!(solve(&[0; 32], &[0; 32], 64, 1000), None);
    }
}
