//! Solving the registration proof-of-work. The puzzle itself (its hash and
//! the check the server makes) is protocol, in [`wisp_proto::pow`]; what a
//! client is willing to do about it is policy, here: refuse a puzzle harder
//! than [`MAX_POW_DIFFICULTY`], and bound the attempts so solving ends.
//! Pure CPU work: a native caller runs it off its async threads, a browser
//! in a worker.

use wisp_proto::limits::MAX_POW_DIFFICULTY;

/// Why a puzzle was not solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PowError {
    /// The server asked for more work than a client will do.
    #[error("the server asks for a {0}-bit proof-of-work, more than this client will solve")]
    TooHard(u32),
    /// No solution within the attempts allowed (a 1-in-e^64 event).
    #[error("no proof-of-work solution found")]
    NoSolution,
}

/// Solves the registration puzzle `nonce` at `difficulty` bits for the
/// Ed25519 key being registered.
pub fn solve_registration(
    nonce: &[u8],
    ed25519_key: &[u8; 32],
    difficulty: u32,
) -> Result<u64, PowError> {
    let attempts = attempts_allowed(difficulty)?;
    wisp_proto::pow::solve(nonce, ed25519_key, difficulty, attempts).ok_or(PowError::NoSolution)
}

/// One slice of [`solve_registration`]'s search: the candidates
/// `start..start + attempts`, within the same bounds. `Ok(None)` when the
/// slice holds no solution (go on with the next); [`PowError::NoSolution`]
/// once the slices passed the bound. For a caller that reports progress
/// between slices (the browser's worker).
pub fn solve_registration_slice(
    nonce: &[u8],
    ed25519_key: &[u8; 32],
    difficulty: u32,
    start: u64,
    attempts: u64,
) -> Result<Option<u64>, PowError> {
    let allowed = attempts_allowed(difficulty)?;
    if start >= allowed {
        return Err(PowError::NoSolution);
    }
    let attempts = attempts.min(allowed - start);
    Ok(wisp_proto::pow::solve_from(
        nonce,
        ed25519_key,
        difficulty,
        start,
        attempts,
    ))
}

/// 64 times the expected work at `difficulty` (failing is a 1-in-e^64
/// event), or [`PowError::TooHard`].
fn attempts_allowed(difficulty: u32) -> Result<u64, PowError> {
    if difficulty > MAX_POW_DIFFICULTY {
        return Err(PowError::TooHard(difficulty));
    }
    Ok(1u64 << (difficulty + 6).min(63))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solution_checks_and_a_too_hard_puzzle_is_refused() {
        let solution = solve_registration(&[1; 32], &[2; 32], 8).unwrap();
        assert!(wisp_proto::pow::check(&[1; 32], &[2; 32], 8, solution));
        assert_eq!(
            solve_registration(&[1; 32], &[2; 32], MAX_POW_DIFFICULTY + 1),
            Err(PowError::TooHard(MAX_POW_DIFFICULTY + 1))
        );
    }

    #[test]
    fn slices_find_the_same_solution_and_end_at_the_bound() {
        let whole = solve_registration(&[1; 32], &[2; 32], 8).unwrap();
        let mut start = 0;
        let sliced = loop {
            if let Some(found) = solve_registration_slice(&[1; 32], &[2; 32], 8, start, 7).unwrap()
            {
                break found;
            }
            start += 7;
        };
        assert_eq!(sliced, whole);
        assert_eq!(
            solve_registration_slice(&[1; 32], &[2; 32], 8, 1 << 14, 1),
            Err(PowError::NoSolution)
        );
        assert_eq!(
            solve_registration_slice(&[1; 32], &[2; 32], 29, 0, 1),
            Err(PowError::TooHard(29))
        );
    }
}
