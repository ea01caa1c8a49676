//! Small builders shared by the tests.

use careloop_core::*;
use careloop_store::*;

pub fn slug(s: &str) -> Slug {
    s.parse().unwrap()
}

pub async fn org(store: &Store, slug_text: &str) -> Organization {
    store
        .organizations()
        .create(&format!("Clinic {slug_text}"), &slug(slug_text))
        .await
        .unwrap()
}

/// A second organization, for tests of scoping.
pub async fn org_other(store: &Store) -> OrganizationId {
    org(store, "other-clinic").await.id
}

pub fn new_patient(name: &str) -> NewPatient {
    NewPatient {
        display_name: name.parse().unwrap(),
        language: "es".parse().unwrap(),
        reading_level: ReadingLevel::Easy,
        timezone: "America/Mexico_City".parse().unwrap(),
        quiet_hours: Some("22:00-07:00".parse().unwrap()),
        consent: ConsentState::Granted,
        tags: vec!["pilot".to_owned(), "cohort-a".to_owned()],
    }
}

pub async fn patient(store: &Store, org: OrganizationId, name: &str) -> Patient {
    store
        .patients()
        .create(org, new_patient(name))
        .await
        .unwrap()
}

pub async fn staff(store: &Store, org: OrganizationId, email: &str, role: Role) -> StaffUser {
    store
        .staff_users()
        .create(
            org,
            NewStaffUser {
                email: email.parse().unwrap(),
                display_name: "Dr. Ana Pérez".parse().unwrap(),
                role,
            },
            "correct horse battery staple",
        )
        .await
        .unwrap()
}

pub fn new_schedule(patient: PatientId, created_by: Option<StaffUserId>) -> NewMedicationSchedule {
    NewMedicationSchedule {
        patient_id: patient,
        medicine_name: "Metformin".parse().unwrap(),
        dose_text: "500 mg with breakfast and dinner".parse().unwrap(),
        rrule: "FREQ=DAILY;BYHOUR=8,20;BYMINUTE=0;BYSECOND=0"
            .parse()
            .unwrap(),
        timezone: "Europe/Berlin".parse().unwrap(),
        starts_on: chrono::NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(),
        ends_on: Some(chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()),
        quiet_hours_policy: QuietHoursPolicy::Delay,
        channels: vec![ChannelKind::Telegram, ChannelKind::Email],
        created_by,
    }
}

pub fn inbound(conversation: ConversationId, body: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        conversation_id: conversation,
        direction: MessageDirection::Inbound,
        status: MessageStatus::Received,
        body: body.to_owned(),
        language: Some(Language::Spanish),
        idempotency_key: key.map(str::to_owned),
        provenance: None,
        delivery_meta: None,
        hold_until: None,
    }
}

pub fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().unwrap()
}
