//! `careloop schedule …` as a care team uses it: a schedule with wrong fields is refused with
//! every wrong field named and nothing stored; a right one is stored and planned at once, in the
//! patient's time, and listed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use careloop_core::ConsentState;
use careloop_store::NewPatient;

fn careloop(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(careloop_e2e::careloop_bin().unwrap())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("CARELOOP_LOG__FILTER", "warn")
        .env(
            "CARELOOP_CONTENT__DIR",
            careloop_e2e::workspace_root().join("content"),
        )
        .output()
        .unwrap()
}

#[tokio::test]
async fn schedules_are_checked_stored_planned_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let imported = careloop(dir.path(), &["content", "import"]);
    assert!(imported.status.success(), "{imported:?}");
    let store = careloop_store::Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("data/careloop.sqlite").display()
    ))
    .await
    .unwrap();
    let org = store
        .organizations()
        .find_by_slug(&"default".parse().unwrap())
        .await
        .unwrap()
        .expect("the default organization")
        .id;
    let patient = store
        .patients()
        .create(
            org,
            NewPatient {
                display_name: "Sam".parse().unwrap(),
                language: "en".parse().unwrap(),
                reading_level: "easy".parse().unwrap(),
                timezone: "Australia/Sydney".parse().unwrap(),
                quiet_hours: Some("22:00-07:00".parse().unwrap()),
                consent: ConsentState::Granted,
                tags: vec![],
            },
        )
        .await
        .unwrap();
    let id = patient.id.to_string();

    let refused = careloop(
        dir.path(),
        &[
            "schedule",
            "add",
            "--patient",
            &id,
            "--medicine",
            "Salbutamol",
            "--dose",
            "2 puffs",
            "--rrule",
            "FREQ=DAILY;BYHOUR=25",
            "--timezone",
            "Moon/Base",
            "--channels",
            "telegram,fax",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "bad input exits with 2");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    for field in ["rrule", "timezone", "channels"] {
        assert!(stderr.contains(field), "{field} not named: {stderr}");
    }
    assert!(
        store
            .medication_schedules()
            .list_for_patient(org, patient.id)
            .await
            .unwrap()
            .is_empty()
    );

    let starts = (chrono::Utc::now() + chrono::TimeDelta::days(1))
        .date_naive()
        .to_string();
    let added = careloop(
        dir.path(),
        &[
            "schedule",
            "add",
            "--patient",
            &id,
            "--medicine",
            "Salbutamol",
            "--dose",
            "2 puffs",
            "--rrule",
            "FREQ=DAILY;BYHOUR=6,21;BYMINUTE=30",
            "--starts",
            &starts,
            "--channels",
            "telegram",
        ],
    );
    let stdout = String::from_utf8_lossy(&added.stdout).into_owned();
    assert!(
        added.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(stdout.contains("planned: "), "{stdout}");
    // 06:30 is inside the patient's quiet hours (22:00-07:00): delayed to 07:00; 21:30 is not.
    assert!(stdout.contains(" 07:00 AE"), "{stdout}");
    assert!(stdout.contains(" 21:30 AE"), "{stdout}");
    assert!(!stdout.contains(" 06:30 "), "{stdout}");
    let schedules = store
        .medication_schedules()
        .list_for_patient(org, patient.id)
        .await
        .unwrap();
    assert_eq!(schedules.len(), 1);
    assert_eq!(schedules[0].dose_text.as_str(), "2 puffs");

    let listed = careloop(dir.path(), &["schedule", "list", "--patient", &id]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains(&schedules[0].id.to_string()) && listed.contains("next: "),
        "{listed}"
    );
}
