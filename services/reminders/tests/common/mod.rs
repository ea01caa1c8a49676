//! Set-up shared by the reminder tests: a fresh SQLite store with one organization and one patient
//! who has consented.

use careloop_core::{ConsentState, OrganizationId};
use careloop_store::{NewPatient, Patient, Store};

pub struct Clinic {
    pub _dir: tempfile::TempDir,
    pub store: Store,
    pub org: OrganizationId,
    pub patient: Patient,
}

/// `language`, `timezone` and `quiet_hours` as a care team would type them.
pub async fn clinic(language: &str, timezone: &str, quiet_hours: Option<&str>) -> Clinic {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("careloop.sqlite").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let org = store
        .organizations()
        .create("Clinic", &"clinic".parse().unwrap())
        .await
        .unwrap()
        .id;
    let patient = store
        .patients()
        .create(
            org,
            NewPatient {
                display_name: "Ana".parse().unwrap(),
                language: language.parse().unwrap(),
                reading_level: "easy".parse().unwrap(),
                timezone: timezone.parse().unwrap(),
                quiet_hours: quiet_hours.map(|q| q.parse().unwrap()),
                consent: ConsentState::Granted,
                tags: vec![],
            },
        )
        .await
        .unwrap();
    Clinic {
        _dir: dir,
        store,
        org,
        patient,
    }
}
