//! The fuzz targets' properties on every test run: each decoder over the
//! corpus committed in `fuzz/corpus/<target>/` (inputs the fuzzers found
//! interesting, crashes once fixed included) and over a bounded number of
//! seeded mutations of valid inputs. The fuzzers themselves run outside the
//! suite (`fuzz/README.md`).

use std::path::PathBuf;
use std::time::Duration;

use wisp_test_support::decoders::{TARGETS, replay};

/// Mutated inputs per decoder on each run.
const MUTATIONS: usize = 20_000;

/// However slow the machine, a decoder's replay stops after this long.
const BUDGET: Duration = Duration::from_secs(20);

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_decoder_survives_its_corpus_and_mutations() {
    for target in TARGETS {
        let replayed = replay(target, &corpus(target.name), MUTATIONS, BUDGET);
        eprintln!(
            "{}: {} corpus files, {} mutations",
            target.name, replayed.corpus, replayed.mutations
        );
        assert!(replayed.mutations > 0, "{}: nothing mutated", target.name);
    }
}

#[test]
fn every_fuzz_target_has_a_committed_corpus() {
    for target in TARGETS {
        let files = std::fs::read_dir(corpus(target.name))
            .map(|dir| dir.count())
            .unwrap_or(0);
        assert!(files > 0, "fuzz/corpus/{} is empty or missing", target.name);
    }
}

/// Starts a target's corpus from its seeds (the fuzzers grow it from
/// there): `cargo test -p wisp-server --test it fuzz_replay::write_seeds --
/// --ignored`.
#[test]
#[ignore = "writes into fuzz/corpus; run by hand when a target is added"]
fn write_seeds() {
    for target in TARGETS {
        let dir = corpus(target.name);
        std::fs::create_dir_all(&dir).unwrap();
        for (n, seed) in wisp_test_support::decoders::seeds(target.name)
            .iter()
            .enumerate()
        {
            std::fs::write(dir.join(format!("seed-{n}")), seed).unwrap();
        }
    }
}
