#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The labelled sets in `tests/labelled/`: triage and retrieval must meet their targets.

mod common;

use careloop_conversation::eval;
use careloop_conversation::lexicon::Lexicons;
use careloop_conversation::library::Library;
use careloop_core::ReadingLevel;
use common::repo;

#[test]
fn triage_meets_its_targets_on_the_labelled_messages() {
    let lexicons = Lexicons::load_dir(&repo().join("content/safety")).unwrap();
    let cases = eval::triage_cases(&repo().join("tests/labelled")).unwrap();
    assert!(
        cases.len() >= 200,
        "the labelled set has {} messages; at least 200",
        cases.len()
    );
    let score = eval::score_triage(&lexicons, &cases);
    for miss in &score.misses {
        eprintln!("{miss}");
    }
    eprintln!("triage: {score}");
    assert_eq!(
        score.urgent_caught, score.urgent,
        "every red flag is caught"
    );
    assert!(score.dosing_recall() >= 0.95);
    assert!(score.false_alarm_rate() <= 0.05);
}

#[test]
fn retrieval_ranks_the_right_article_in_the_top_three() {
    let docs = careloop_content::load_dir(&repo().join("content")).unwrap();
    let library = Library::from_documents(&docs);
    let questions = eval::questions(&repo().join("tests/labelled")).unwrap();
    assert!(
        questions.len() >= 120,
        "the labelled set has {} questions; at least 120",
        questions.len()
    );
    for level in [ReadingLevel::Easy, ReadingLevel::Standard] {
        let score = eval::score_retrieval(&library, &questions, level);
        for miss in &score.misses {
            eprintln!("{miss}");
        }
        eprintln!(
            "retrieval ({level}): top-1 {:.3}, top-3 {:.3}, top-3 knowing the condition {:.3} of {}",
            score.top1_rate(),
            score.top3_rate(),
            score.top3_with_profile_rate(),
            score.questions
        );
        assert!(
            score.top3_rate() >= 0.90,
            "top-3 hit rate at {level}: {:.3}",
            score.top3_rate()
        );
    }
}
