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
    if difficulty > MAX_POW_DIFFICULTY {
        return Err(PowError::TooHard(difficulty));
    }
    // 64 times the expected work: failing is a 1-in-e^64 event.
    let attempts = 1u64 << (difficulty + 6).min(63);
    wisp_proto::pow::solve(nonce, ed25519_key, difficulty, attempts).ok_or(PowError::NoSolution)
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
}
