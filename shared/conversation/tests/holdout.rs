#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The held-out triage sets in `tests/labelled/holdout.<lang>.toml`: messages written without
//! looking at the lexicons, so they measure how well the word lists generalise. Same targets as
//! the labelled sets (`labelled.rs`); the numbers are printed per language as well.

mod common;

use careloop_conversation::eval;
use careloop_conversation::lexicon::Lexicons;
use careloop_core::Language;
use common::repo;

fn report(label: &str, score: &eval::TriageScore) {
    eprintln!("{label}: {score}");
}

#[test]
fn triage_meets_its_targets_on_the_held_out_messages() {
    let lexicons = Lexicons::load_dir(&repo().join("content/safety")).unwrap();
    let cases = eval::holdout_cases(&repo().join("tests/labelled")).unwrap();
    assert!(
        cases.len() >= 144,
        "the held-out set has {} messages; at least 144",
        cases.len()
    );
    for &language in Language::ALL {
        let own: Vec<_> = cases
            .iter()
            .filter(|(l, _)| *l == language)
            .cloned()
            .collect();
        assert!(
            own.len() >= 24,
            "{language}: {} held-out messages; at least 24",
            own.len()
        );
        let score = eval::score_triage(&lexicons, &own);
        for miss in &score.misses {
            eprintln!("{miss}");
        }
        report(&format!("held out [{}]", language.code()), &score);
    }
    let score = eval::score_triage(&lexicons, &cases);
    report("held out (all)", &score);
    assert_eq!(
        score.urgent_caught, score.urgent,
        "every red flag is caught"
    );
    assert!(
        score.dosing_recall() >= 0.95,
        "dosing recall {:.3}",
        score.dosing_recall()
    );
    assert!(
        score.false_alarm_rate() <= 0.05,
        "false alarms {:.3}",
        score.false_alarm_rate()
    );
}
