//! Campaigns on a real SQLite store (and one run on PostgreSQL), with the clock passed in:
//! relative and absolute steps in each patient's zone across DST, the preview and its reasons,
//! validation, pause / resume / cancel, opt-out, late enrolment, progress, dispatch, completion,
//! and a 10,000-patient start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use careloop_core::{
    CampaignId, CampaignState, ChannelKind, ConsentState, Language, OccurrenceState,
    OrganizationId, PatientId, Role, StaffUserId, TelegramChatId,
};
use careloop_queue::ReminderDue;
use careloop_reminders::campaign::{
    self, CampaignError, CampaignService, Format, Pacing, SkipReason, StepPlan,
};
use careloop_reminders::{Dispatch, dispatch};
use careloop_store::{
    Actor, ChannelAddress, NewPatient, NewStaffUser, Patient, ReminderOccurrence, Store,
};
use chrono::{DateTime, NaiveDate, Utc};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn template(
    key: &str,
    language: &str,
    body: &str,
    approved: bool,
) -> careloop_content::ContentDocument {
    let text = format!(
        "+++\nkind = \"template\"\nkey = \"{key}\"\nlanguage = \"{language}\"\nreading_level = \"easy\"\n\
         version = 1\nreview_state = \"draft\"\ntitle = \"{key}\"\nseed = {approved}\n+++\n\n{body}\n"
    );
    careloop_content::ContentDocument::parse(std::path::Path::new("t.md"), &text).unwrap()
}

struct Fx {
    store: Store,
    org: OrganizationId,
    staff: StaffUserId,
    chats: std::sync::atomic::AtomicI64,
    /// The database's folder or PostgreSQL database; dropped after the store.
    _guard: Box<dyn std::any::Any>,
}

/// An organization with a care team member, the condition `heart_failure`, approved campaign
/// templates (`hf-day-3` in English and Spanish, `hf-week` in English only) and one draft one
/// (`hf-draft`).
async fn setup(store: Store, guard: Box<dyn std::any::Any>) -> Fx {
    let org = store
        .organizations()
        .create("Clinic", &"campaign-clinic".parse().unwrap())
        .await
        .unwrap()
        .id;
    prepare(store, org, guard).await
}

async fn prepare(store: Store, org: OrganizationId, guard: Box<dyn std::any::Any>) -> Fx {
    let staff = store
        .staff_users()
        .create(
            org,
            NewStaffUser {
                email: "nurse@example.org".parse().unwrap(),
                display_name: "Nurse".parse().unwrap(),
                role: Role::CareTeam,
            },
            "correct horse battery staple",
        )
        .await
        .unwrap()
        .id;
    store
        .conditions()
        .upsert(&"heart_failure".parse().unwrap(), "Heart failure")
        .await
        .unwrap();
    let docs = vec![
        template(
            "hf-day-3",
            "en",
            "How are you three days after leaving hospital?",
            true,
        ),
        template(
            "hf-day-3",
            "es",
            "¿Cómo está tres días después del alta?",
            true,
        ),
        template(
            "hf-week",
            "en",
            "One week home: weigh yourself every morning.",
            true,
        ),
        template("hf-draft", "en", "Not reviewed yet.", false),
    ];
    store
        .content()
        .import_documents(org, &docs, true)
        .await
        .unwrap();
    Fx {
        store,
        org,
        staff,
        chats: std::sync::atomic::AtomicI64::new(1000),
        _guard: guard,
    }
}

async fn fixture() -> Fx {
    let c = common::clinic("en", "UTC", None).await;
    // The clinic's own patient (no `hf` tag) is outside every audience here.
    assert!(c.patient.tags.is_empty());
    prepare(c.store, c.org, Box::new(c._dir)).await
}

struct P<'a> {
    language: &'a str,
    timezone: &'a str,
    quiet: Option<&'a str>,
    consent: ConsentState,
    telegram: bool,
    tags: &'a [&'a str],
    discharge: Option<&'a str>,
}

impl Default for P<'_> {
    fn default() -> Self {
        P {
            language: "en",
            timezone: "America/New_York",
            quiet: None,
            consent: ConsentState::Granted,
            telegram: true,
            tags: &["hf"],
            discharge: None,
        }
    }
}

impl Fx {
    fn service(&self) -> CampaignService<'_> {
        CampaignService::new(&self.store, self.org, Actor::Staff(self.staff))
    }

    async fn patient(&self, p: P<'_>) -> Patient {
        let patient = self
            .store
            .patients()
            .create(
                self.org,
                NewPatient {
                    display_name: "Pat".parse().unwrap(),
                    language: p.language.parse().unwrap(),
                    reading_level: "easy".parse().unwrap(),
                    timezone: p.timezone.parse().unwrap(),
                    quiet_hours: p.quiet.map(|q| q.parse().unwrap()),
                    consent: p.consent,
                    tags: p.tags.iter().map(|t| (*t).to_owned()).collect(),
                },
            )
            .await
            .unwrap();
        if p.telegram {
            let chat = self
                .chats
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.store
                .channel_identities()
                .link(
                    self.org,
                    patient.id,
                    &ChannelAddress::Telegram(TelegramChatId::new(chat)),
                    None,
                )
                .await
                .unwrap();
        }
        if let Some(date) = p.discharge {
            self.set_discharge(patient.id, date).await;
        }
        patient
    }

    async fn set_discharge(&self, patient: PatientId, date: &str) {
        self.store
            .patient_dates()
            .set(
                self.org,
                patient,
                &"discharge_date".parse().unwrap(),
                date.parse::<NaiveDate>().unwrap(),
                &Actor::Staff(self.staff),
            )
            .await
            .unwrap();
    }

    async fn create(&self, toml: &str) -> CampaignId {
        let file = campaign::parse_document(toml, Format::Toml).unwrap();
        self.service().create(self.staff, &file).await.unwrap().id
    }

    /// The patient's occurrences of the campaign, by step.
    async fn steps(&self, campaign: CampaignId, patient: PatientId) -> Vec<ReminderOccurrence> {
        let mut rows = self
            .store
            .campaign_occurrences()
            .for_patients(self.org, campaign, &[patient])
            .await
            .unwrap();
        rows.sort_by_key(|r| r.campaign_step);
        rows
    }

    async fn dispatch(&self, occurrence: &ReminderOccurrence) -> Dispatch {
        dispatch(
            &self.store,
            &ReminderDue {
                organization_id: self.org,
                occurrence_id: occurrence.id,
            },
        )
        .await
        .unwrap()
    }
}

const RELATIVE: &str = r#"
name = "After discharge"
[audience]
conditions = []
tags = ["hf"]
channels = ["telegram"]
[[steps]]
template = "hf-day-3"
relative_to = "discharge_date"
days = 3
time = "10:00"
[[steps]]
template = "hf-day-3"
relative_to = "discharge_date"
days = 3
time = "02:30"
"#;

#[tokio::test]
async fn relative_steps_fall_at_local_time_in_each_zone_across_dst() {
    let fx = fixture().await;
    let ny = "America/New_York";
    let berlin = "Europe/Berlin";
    // New York springs forward on 2026-03-08, Berlin on 2026-03-29.
    let cases = [
        (
            ny,
            "2026-03-04",
            "2026-03-07T15:00:00Z",
            "2026-03-07T07:30:00Z",
        ),
        // 02:30 does not exist on 2026-03-08 in New York: the end of the gap, 03:00 EDT.
        (
            ny,
            "2026-03-05",
            "2026-03-08T14:00:00Z",
            "2026-03-08T07:00:00Z",
        ),
        (
            berlin,
            "2026-03-25",
            "2026-03-28T09:00:00Z",
            "2026-03-28T01:30:00Z",
        ),
        (
            berlin,
            "2026-03-27",
            "2026-03-30T08:00:00Z",
            "2026-03-30T00:30:00Z",
        ),
    ];
    let mut patients = Vec::new();
    for (zone, discharge, ..) in cases {
        patients.push(
            fx.patient(P {
                timezone: zone,
                discharge: Some(discharge),
                ..P::default()
            })
            .await,
        );
    }
    let id = fx.create(RELATIVE).await;
    let done = fx
        .service()
        .start(id, at("2026-03-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!((done.patients, done.planned, done.skipped), (4, 8, 0));
    for (patient, (zone, _, ten, half_past_two)) in patients.iter().zip(cases) {
        let rows = fx.steps(id, patient.id).await;
        let due: Vec<_> = rows.iter().map(|r| r.due_at).collect();
        assert_eq!(due, vec![at(ten), at(half_past_two)], "{zone}");
        assert!(rows.iter().all(|r| r.state == OccurrenceState::Planned));
        assert_eq!(rows[0].slot_at, Some(at(ten)));
        assert_eq!(
            rows[1].idempotency_key,
            format!("campaign:{id}:step1:patient:{}", patient.id)
        );
    }
    // Starting again changes nothing.
    let again = fx
        .service()
        .start(id, at("2026-03-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!((again.planned, again.replanned), (0, 0));
}

#[tokio::test]
async fn absolute_steps_are_local_wall_clock_or_one_instant() {
    let fx = fixture().await;
    let ny = fx.patient(P::default()).await;
    let berlin = fx
        .patient(P {
            timezone: "Europe/Berlin",
            ..P::default()
        })
        .await;
    let id = fx
        .create(
            r#"
            name = "Flu season"
            [audience]
            tags = ["hf"]
            [[steps]]
            template = "hf-week"
            at = "2026-12-01T10:00"
            [[steps]]
            template = "hf-week"
            at = "2026-12-01T12:00:00Z"
            "#,
        )
        .await;
    fx.service()
        .start(id, at("2026-11-01T00:00:00Z"))
        .await
        .unwrap();
    let due = |rows: Vec<ReminderOccurrence>| rows.iter().map(|r| r.due_at).collect::<Vec<_>>();
    assert_eq!(
        due(fx.steps(id, ny.id).await),
        vec![at("2026-12-01T15:00:00Z"), at("2026-12-01T12:00:00Z")]
    );
    assert_eq!(
        due(fx.steps(id, berlin.id).await),
        vec![at("2026-12-01T09:00:00Z"), at("2026-12-01T12:00:00Z")]
    );
}

#[tokio::test]
async fn preview_says_who_gets_what_when_and_why_not_without_writing() {
    let fx = fixture().await;
    let ok = fx
        .patient(P {
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let spanish = fx
        .patient(P {
            language: "es",
            timezone: "Europe/Madrid",
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let arabic = fx
        .patient(P {
            language: "ar",
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let no_date = fx.patient(P::default()).await;
    let pending = fx
        .patient(P {
            consent: ConsentState::Pending,
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let opted_out = fx
        .patient(P {
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    fx.store
        .patients()
        .set_channel_opt_out(fx.org, opted_out.id, ChannelKind::Telegram, true)
        .await
        .unwrap();
    let unlinked = fx
        .patient(P {
            telegram: false,
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let past = fx
        .patient(P {
            discharge: Some("2026-02-01"),
            ..P::default()
        })
        .await;
    let quiet = fx
        .patient(P {
            quiet: Some("09:00-12:00"),
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let _outside = fx
        .patient(P {
            tags: &["other"],
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let id = fx
        .create(
            r#"
            name = "Day 3"
            [audience]
            tags = ["hf"]
            channels = ["telegram"]
            [[steps]]
            template = "hf-day-3"
            relative_to = "discharge_date"
            days = 3
            time = "10:00"
            "#,
        )
        .await;
    let preview = fx
        .service()
        .preview(id, at("2026-03-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(preview.patients, 9);
    let by_patient: HashMap<PatientId, &campaign::PreviewRow> =
        preview.rows.iter().map(|r| (r.patient_id, r)).collect();
    assert_eq!(by_patient.len(), 9);

    let StepPlan::Send(d) = &by_patient[&ok.id].plan else {
        panic!("expected a send")
    };
    assert_eq!(d.template.item.language, Language::English);
    assert_eq!(d.template.version.version, 1);
    assert_eq!(d.channel, ChannelKind::Telegram);
    // 2026-03-13 10:00 EDT.
    assert_eq!(d.slot_at, at("2026-03-13T14:00:00Z"));
    assert_eq!(d.local.to_string(), "2026-03-13 10:00:00");
    assert_eq!(by_patient[&ok.id].due_at, Some(at("2026-03-13T14:00:00Z")));

    let StepPlan::Send(d) = &by_patient[&spanish.id].plan else {
        panic!("expected a send")
    };
    assert_eq!(d.template.item.language, Language::Spanish);
    assert_eq!(d.slot_at, at("2026-03-13T09:00:00Z"));

    let StepPlan::Send(d) = &by_patient[&quiet.id].plan else {
        panic!("expected a send")
    };
    assert!(d.delayed_by_quiet_hours);
    assert_eq!(d.local.to_string(), "2026-03-13 12:00:00");

    let skip = |p: &Patient| match &by_patient[&p.id].plan {
        StepPlan::Skip(why) => why.clone(),
        StepPlan::Send(_) => panic!("expected a skip"),
    };
    assert_eq!(skip(&arabic), SkipReason::NoTemplate(Language::Arabic));
    assert_eq!(skip(&arabic).to_string(), "no approved template in ar");
    assert!(matches!(skip(&no_date), SkipReason::NoDate(_)));
    assert_eq!(skip(&no_date).to_string(), "no discharge_date date");
    assert_eq!(skip(&pending), SkipReason::NoConsent);
    assert_eq!(skip(&opted_out), SkipReason::OptedOut);
    assert_eq!(skip(&unlinked), SkipReason::NoChannel);
    assert_eq!(skip(&past), SkipReason::Past);

    let summary = &preview.steps[0];
    assert_eq!((summary.send, summary.delayed_by_quiet_hours), (3, 1));
    assert_eq!(summary.skipped.values().sum::<u64>(), 6);
    assert_eq!(summary.skipped["no_template"], 1);

    // Nothing was written.
    let progress = fx
        .service()
        .progress(id, at("2026-03-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(progress.state, CampaignState::Draft);
    assert_eq!(progress.steps[0], campaign::StepProgress::default());
}

#[tokio::test]
async fn invalid_campaigns_name_the_field_and_store_nothing() {
    let fx = fixture().await;
    let service = fx.service();
    let file = |toml: &str| campaign::parse_document(toml, Format::Toml).unwrap();

    let err = service
        .create(
            fx.staff,
            &file(
                r#"
                name = "Bad"
                [audience]
                conditions = ["Heart Failure"]
                [[steps]]
                template = "hf-day-3"
                at = "next tuesday"
                [[steps]]
                template = "no-such-template"
                at = "2026-12-01T10:00"
                "#,
            ),
        )
        .await
        .unwrap_err();
    let CampaignError::Invalid(invalid) = err else {
        panic!("expected invalid, got {err}")
    };
    assert!(invalid.names("audience.conditions[0]"), "{invalid}");
    assert!(invalid.names("steps[0].at"), "{invalid}");
    // Problems that need the database are reported in the same round.
    assert!(invalid.names("steps[1].template"), "{invalid}");

    let err = service
        .create(
            fx.staff,
            &file(
                r#"
                name = "Unknown things"
                [audience]
                conditions = ["heart_failure", "gout"]
                [[steps]]
                template = "hf-day-3"
                at = "2026-12-01T10:00"
                [[steps]]
                template = "hf-draft"
                at = "2026-12-02T10:00"
                [[steps]]
                template = "no-such-template"
                at = "2026-12-03T10:00"
                "#,
            ),
        )
        .await
        .unwrap_err();
    let CampaignError::Invalid(invalid) = err else {
        panic!("expected invalid, got {err}")
    };
    let fields: Vec<&str> = invalid.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "audience.conditions[1]",
            "steps[1].template",
            "steps[2].template"
        ]
    );
    assert!(
        invalid
            .to_string()
            .contains("steps[1].template: has no approved template")
    );

    assert!(fx.store.campaigns().list(fx.org).await.unwrap().is_empty());
}

#[tokio::test]
async fn pause_holds_resume_replans_late_steps_and_cancel_stops_the_rest() {
    let fx = fixture().await;
    let mut patients = Vec::new();
    for _ in 0..3 {
        patients.push(fx.patient(P::default()).await);
    }
    let id = fx
        .create(
            r#"
            name = "Two steps"
            [audience]
            tags = ["hf"]
            [[steps]]
            template = "hf-week"
            at = "2026-03-10T10:00"
            [[steps]]
            template = "hf-week"
            at = "2026-03-20T10:00"
            "#,
        )
        .await;
    let service = fx.service();
    let start = at("2026-03-01T00:00:00Z");
    assert_eq!(service.start(id, start).await.unwrap().planned, 6);

    // One step is already claimed by the sweeper when the pause comes.
    let in_flight = fx.steps(id, patients[0].id).await.remove(0);
    assert!(
        fx.store
            .reminder_occurrences()
            .transition_state(
                fx.org,
                in_flight.id,
                OccurrenceState::Planned,
                OccurrenceState::Dispatching
            )
            .await
            .unwrap()
    );
    assert_eq!(service.pause(id).await.unwrap(), 5);
    let due = fx
        .store
        .reminder_occurrences()
        .due(at("2027-01-01T00:00:00Z"), 100)
        .await
        .unwrap();
    assert!(
        due.iter().all(|o| o.campaign_id != Some(id)),
        "paused steps are not due"
    );
    assert_eq!(
        fx.dispatch(&in_flight).await,
        Dispatch::Cancelled("campaign paused")
    );
    let progress = service.progress(id, start).await.unwrap();
    assert_eq!(progress.state, CampaignState::Paused);
    assert_eq!((progress.steps[0].paused, progress.steps[1].paused), (3, 3));
    assert!(matches!(
        service.pause(id).await,
        Err(CampaignError::State {
            state: CampaignState::Paused,
            ..
        })
    ));

    // Resumed after step 0's time: it goes late, from the resume on; step 1 keeps its time.
    let resumed_at = at("2026-03-15T12:00:00Z");
    let (released, _) = service.resume(id, resumed_at).await.unwrap();
    assert_eq!(released, 6);
    for p in &patients {
        let rows = fx.steps(id, p.id).await;
        assert!(rows.iter().all(|r| r.state == OccurrenceState::Planned));
        assert!(
            rows[0].due_at >= resumed_at
                && rows[0].due_at < resumed_at + chrono::TimeDelta::seconds(5)
        );
        assert_eq!(rows[1].due_at, at("2026-03-20T14:00:00Z"));
    }
    assert_eq!(fx.dispatch(&in_flight).await, Dispatch::Queued);

    assert_eq!(service.cancel(id).await.unwrap(), 5);
    let progress = service.progress(id, resumed_at).await.unwrap();
    assert_eq!(progress.state, CampaignState::Cancelled);
    assert_eq!(
        (progress.steps[0].sent, progress.steps[0].cancelled),
        (1, 2)
    );
    assert_eq!(progress.steps[1].cancelled, 3);
    assert_eq!(progress.steps[1].reasons["campaign_cancelled"], 3);
    let rest = fx.steps(id, patients[1].id).await.remove(0);
    assert_eq!(fx.dispatch(&rest).await, Dispatch::AlreadyHandled);
    assert!(matches!(
        service.resume(id, resumed_at).await,
        Err(CampaignError::State {
            state: CampaignState::Cancelled,
            ..
        })
    ));
}

#[tokio::test]
async fn an_opt_out_mid_campaign_removes_the_patient_from_the_remaining_steps() {
    let fx = fixture().await;
    let stops = fx.patient(P::default()).await;
    let withdrawn = fx.patient(P::default()).await;
    let stays = fx.patient(P::default()).await;
    let id = fx
        .create(
            r#"
            name = "Three steps"
            [audience]
            tags = ["hf"]
            [[steps]]
            template = "hf-week"
            at = "2026-03-10T10:00"
            [[steps]]
            template = "hf-week"
            at = "2026-03-20T10:00"
            [[steps]]
            template = "hf-week"
            at = "2026-03-30T10:00"
            "#,
        )
        .await;
    let service = fx.service();
    service.start(id, at("2026-03-01T00:00:00Z")).await.unwrap();
    for p in [&stops, &withdrawn, &stays] {
        let first = fx.steps(id, p.id).await.remove(0);
        assert_eq!(fx.dispatch(&first).await, Dispatch::Queued);
    }

    // STOP: consent withdrawn, and the patient removed from every campaign.
    fx.store
        .patients()
        .set_consent(
            fx.org,
            stops.id,
            ConsentState::Withdrawn,
            &Actor::Patient(stops.id),
        )
        .await
        .unwrap();
    assert_eq!(
        campaign::remove_patient(&fx.store, fx.org, stops.id)
            .await
            .unwrap(),
        2
    );
    let rows = fx.steps(id, stops.id).await;
    assert_eq!(rows[0].state, OccurrenceState::Sent);
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.state == OccurrenceState::Cancelled
                && r.reason.as_deref() == Some("opted_out"))
    );

    // Consent withdrawn elsewhere: the dispatcher finds out and removes the patient too.
    fx.store
        .patients()
        .set_consent(
            fx.org,
            withdrawn.id,
            ConsentState::Withdrawn,
            &Actor::System,
        )
        .await
        .unwrap();
    let second = fx.steps(id, withdrawn.id).await.remove(1);
    assert!(matches!(fx.dispatch(&second).await, Dispatch::Cancelled(_)));
    let rows = fx.steps(id, withdrawn.id).await;
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.state == OccurrenceState::Cancelled)
    );

    let rows = fx.steps(id, stays.id).await;
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.state == OccurrenceState::Planned)
    );
    let progress = service
        .progress(id, at("2026-03-11T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(progress.steps[0].sent, 3);
    assert_eq!(
        (progress.steps[2].planned, progress.steps[2].cancelled),
        (1, 2)
    );

    // Consent given again: enrolment plans the steps still to come.
    fx.store
        .patients()
        .set_consent(
            fx.org,
            stops.id,
            ConsentState::Granted,
            &Actor::Patient(stops.id),
        )
        .await
        .unwrap();
    let done = campaign::enrol_patient(&fx.store, fx.org, stops.id, at("2026-03-25T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(done.replanned, 1);
    let rows = fx.steps(id, stops.id).await;
    assert_eq!(
        rows.iter().map(|r| r.state).collect::<Vec<_>>(),
        [
            OccurrenceState::Sent,
            OccurrenceState::Cancelled,
            OccurrenceState::Planned
        ]
    );
}

#[tokio::test]
async fn late_enrolment_and_date_changes_schedule_the_patients_steps() {
    let fx = fixture().await;
    let early = fx
        .patient(P {
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let id = fx.create(RELATIVE).await;
    let service = fx.service();
    let now = at("2026-03-01T00:00:00Z");
    service.start(id, now).await.unwrap();
    assert_eq!(fx.steps(id, early.id).await.len(), 2);

    // A patient created after the start, without a date yet: stored as skipped, with the reason.
    let late = fx.patient(P::default()).await;
    let done = campaign::enrol_patient(&fx.store, fx.org, late.id, now)
        .await
        .unwrap();
    assert_eq!((done.planned, done.skipped), (0, 2));
    let rows = fx.steps(id, late.id).await;
    assert!(
        rows.iter()
            .all(|r| r.state == OccurrenceState::Skipped && r.reason.as_deref() == Some("no_date"))
    );

    // The date is set: the steps are planned.
    fx.set_discharge(late.id, "2026-03-12").await;
    let done = campaign::enrol_patient(&fx.store, fx.org, late.id, now)
        .await
        .unwrap();
    assert_eq!(done.replanned, 2);
    let rows = fx.steps(id, late.id).await;
    assert_eq!(rows[0].due_at, at("2026-03-15T14:00:00Z"));
    assert!(rows.iter().all(|r| r.state == OccurrenceState::Planned));

    // The date changes: the planned steps move, nothing is duplicated.
    fx.set_discharge(late.id, "2026-03-20").await;
    campaign::enrol_patient(&fx.store, fx.org, late.id, now)
        .await
        .unwrap();
    let rows = fx.steps(id, late.id).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].due_at, at("2026-03-23T14:00:00Z"));

    // Removed from the audience: the planned steps are cancelled.
    fx.store
        .patients()
        .set_tags(fx.org, late.id, &[])
        .await
        .unwrap();
    let done = campaign::enrol_patient(&fx.store, fx.org, late.id, now)
        .await
        .unwrap();
    assert_eq!(done.withdrawn, 2);
    assert!(
        fx.steps(id, late.id)
            .await
            .iter()
            .all(|r| r.reason.as_deref() == Some("left_audience"))
    );

    // A paused campaign catches up on resume.
    service.pause(id).await.unwrap();
    let during = fx
        .patient(P {
            discharge: Some("2026-03-11"),
            ..P::default()
        })
        .await;
    let done = campaign::enrol_patient(&fx.store, fx.org, during.id, now)
        .await
        .unwrap();
    assert_eq!(done.planned, 0);
    assert!(fx.steps(id, during.id).await.is_empty());
    let (_, done) = service.resume(id, now).await.unwrap();
    assert_eq!(done.planned, 2);
    assert_eq!(
        fx.steps(id, during.id).await[0].due_at,
        at("2026-03-14T14:00:00Z")
    );
}

#[tokio::test]
async fn a_step_becomes_one_campaign_message_in_the_patients_language_and_progress_counts_it() {
    let fx = fixture().await;
    let spanish = fx
        .patient(P {
            language: "es",
            timezone: "Europe/Madrid",
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let arabic = fx
        .patient(P {
            language: "ar",
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    let id = fx.create(RELATIVE).await;
    let service = fx.service();
    let done = service.start(id, at("2026-03-01T00:00:00Z")).await.unwrap();
    assert_eq!((done.planned, done.skipped), (2, 2));

    let step = fx.steps(id, spanish.id).await.remove(0);
    assert_eq!(fx.dispatch(&step).await, Dispatch::Queued);
    assert_eq!(fx.dispatch(&step).await, Dispatch::AlreadyHandled);
    let messages = fx
        .store
        .messages()
        .list_for_patient(fx.org, spanish.id, 10)
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.body, "¿Cómo está tres días después del alta?");
    assert_eq!(m.language, Some(Language::Spanish));
    assert_eq!(m.channel, ChannelKind::Telegram);
    assert_eq!(
        m.idempotency_key.as_deref(),
        Some(format!("reminder:{}", step.idempotency_key).as_str())
    );
    let meta: careloop_channels::DeliveryMeta =
        serde_json::from_value(m.delivery_meta.clone().unwrap()).unwrap();
    assert_eq!(meta.purpose, careloop_channels::Purpose::Campaign);
    assert!(meta.buttons.is_empty());
    assert_eq!(
        fx.store
            .reminder_occurrences()
            .get(fx.org, step.id)
            .await
            .unwrap()
            .unwrap()
            .message_id,
        Some(m.id)
    );

    let progress = service
        .progress(id, at("2026-03-13T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!(progress.state, CampaignState::Running);
    let s = &progress.steps[0];
    assert_eq!((s.sent, s.planned, s.skipped), (1, 0, 1));
    assert_eq!(s.reasons["no_template"], 1);
    assert_eq!(s.messages["queued"], 1);
    assert_eq!(
        (progress.steps[1].planned, progress.steps[1].skipped),
        (1, 1)
    );
    let audit = fx.store.audit().list(fx.org, 50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "campaign_step.sent" && e.entity_id == step.id.to_string())
    );
    assert!(audit.iter().any(|e| e.action == "campaign.started"));
    let _ = arabic;
}

#[tokio::test]
async fn an_absolute_campaign_completes_when_nothing_is_left() {
    let fx = fixture().await;
    let p = fx.patient(P::default()).await;
    let id = fx
        .create(
            r#"
            name = "Once"
            [audience]
            tags = ["hf"]
            [[steps]]
            template = "hf-week"
            at = "2026-03-10T12:00:00Z"
            "#,
        )
        .await;
    let service = fx.service();
    service.start(id, at("2026-03-01T00:00:00Z")).await.unwrap();
    let before = service
        .progress(id, at("2026-03-05T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(before.state, CampaignState::Running);
    let step = fx.steps(id, p.id).await.remove(0);
    assert_eq!(fx.dispatch(&step).await, Dispatch::Queued);
    let after = service
        .progress(id, at("2026-03-10T12:00:01Z"))
        .await
        .unwrap();
    assert_eq!(after.state, CampaignState::Completed);
    assert_eq!(after.steps[0].sent, 1);

    // A relative campaign stays open for patients whose dates come later.
    let relative = fx.create(RELATIVE).await;
    service
        .start(relative, at("2026-03-01T00:00:00Z"))
        .await
        .unwrap();
    let progress = service
        .progress(relative, at("2027-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(progress.state, CampaignState::Running);
}

#[tokio::test]
async fn ten_thousand_patients_start_in_batches_paced_per_channel() {
    let fx = fixture().await;
    const N: usize = 10_000;
    for _ in 0..N {
        fx.patient(P {
            timezone: "UTC",
            ..P::default()
        })
        .await;
    }
    let id = fx
        .create(
            r#"
            name = "Everyone at noon"
            [audience]
            tags = ["hf"]
            [[steps]]
            template = "hf-week"
            at = "2026-12-01T12:00:00Z"
            [[steps]]
            template = "hf-week"
            relative_to = "enrolled"
            days = 400
            time = "09:00"
            "#,
        )
        .await;
    let service = CampaignService {
        pacing: Pacing {
            telegram: 25,
            ..Pacing::default()
        },
        ..fx.service()
    };
    let now = at("2026-11-01T00:00:00Z");
    let done = service.start(id, now).await.unwrap();
    assert_eq!(
        (done.patients, done.planned, done.skipped),
        (N as u64, 2 * N as u64, 0)
    );
    let progress = service.progress(id, now).await.unwrap();
    assert_eq!(progress.steps[0].planned, N as u64);
    assert_eq!(progress.steps[1].planned, N as u64);

    // The fan-out is paced: at most 25 a second, from noon on, without gaps.
    let due = fx
        .store
        .reminder_occurrences()
        .due(at("2026-12-02T00:00:00Z"), 2 * N as u64)
        .await
        .unwrap();
    assert_eq!(due.len(), N);
    let mut per_second: HashMap<i64, usize> = HashMap::new();
    for o in &due {
        *per_second.entry(o.due_at.timestamp()).or_default() += 1;
    }
    assert!(per_second.values().all(|&n| n <= 25));
    assert_eq!(per_second.len(), N / 25);
    assert_eq!(due.first().unwrap().due_at, at("2026-12-01T12:00:00Z"));
    assert_eq!(due.last().unwrap().due_at, at("2026-12-01T12:06:39Z"));

    let again = service.start(id, now).await.unwrap();
    assert_eq!((again.planned, again.replanned), (0, 0));
}

/// The same life cycle on PostgreSQL (skipped with `CARELOOP_TEST_SKIP_POSTGRES=1`).
#[tokio::test]
async fn start_pause_resume_and_progress_on_postgres() {
    let Some((store, guard)) = postgres().await else {
        return;
    };
    let fx = setup(store, Box::new(guard)).await;
    let a = fx
        .patient(P {
            discharge: Some("2026-03-10"),
            ..P::default()
        })
        .await;
    fx.patient(P {
        language: "ar",
        discharge: Some("2026-03-10"),
        ..P::default()
    })
    .await;
    let id = fx.create(RELATIVE).await;
    let service = fx.service();
    let now = at("2026-03-01T00:00:00Z");
    let done = service.start(id, now).await.unwrap();
    assert_eq!((done.planned, done.skipped), (2, 2));
    assert_eq!(service.pause(id).await.unwrap(), 2);
    assert_eq!(service.resume(id, now).await.unwrap().0, 2);
    let step = fx.steps(id, a.id).await.remove(0);
    assert_eq!(step.due_at, at("2026-03-13T14:00:00Z"));
    assert_eq!(fx.dispatch(&step).await, Dispatch::Queued);
    let progress = service.progress(id, now).await.unwrap();
    assert_eq!((progress.steps[0].sent, progress.steps[0].skipped), (1, 1));
    assert_eq!(progress.steps[0].messages["queued"], 1);
    assert_eq!(progress.steps[1].reasons["no_template"], 1);
}

/// A fresh PostgreSQL database, dropped with the guard.
async fn postgres() -> Option<(Store, PgGuard)> {
    use sea_orm::ConnectionTrait;
    if std::env::var("CARELOOP_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        return None;
    }
    let admin = std::env::var("CARELOOP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("careloop_campaigns_{}", uuid::Uuid::new_v4().simple());
    let db = sea_orm::Database::connect(&admin).await.unwrap();
    db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    db.close().await.unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let store = Store::connect(&format!("{base}/{name}")).await.unwrap();
    store.migrate().await.unwrap();
    Some((store, PgGuard { admin, name }))
}

struct PgGuard {
    admin: String,
    name: String,
}

impl Drop for PgGuard {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sea_orm::ConnectionTrait;
                let db = sea_orm::Database::connect(&admin).await?;
                db.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await?;
                db.close().await
            })
        })
        .join();
    }
}

#[tokio::test]
async fn the_workers_follower_enrols_patients_whoever_changed_them() {
    use careloop_reminders::follow::follow_once;
    let fx = fixture().await;
    let id = fx.create(RELATIVE).await;
    let now = at("2026-03-01T00:00:00Z");
    fx.service().start(id, now).await.unwrap();
    // The follower reads changes by the wall clock; the plan uses the test's clock.
    let window = || {
        let wall = chrono::Utc::now();
        (wall - chrono::TimeDelta::minutes(5), wall)
    };

    // Created, linked and given a date after the start, by other parts of careloop.
    let late = fx
        .patient(P {
            discharge: Some("2026-03-12"),
            ..P::default()
        })
        .await;
    assert!(fx.steps(id, late.id).await.is_empty());
    let (since, until) = window();
    let done = follow_once(&fx.store, since, until, now).await.unwrap();
    assert!(done.patients >= 1);
    assert_eq!(done.steps_scheduled, 2);
    let rows = fx.steps(id, late.id).await;
    assert_eq!(rows[0].due_at, at("2026-03-15T14:00:00Z"));
    assert!(rows.iter().all(|r| r.state == OccurrenceState::Planned));

    // Looking again changes nothing.
    let (since, until) = window();
    let again = follow_once(&fx.store, since, until, now).await.unwrap();
    assert_eq!(again.steps_scheduled, 0);
    assert_eq!(fx.steps(id, late.id).await.len(), 2);

    // Taken out of the audience: their planned steps are cancelled.
    fx.store
        .patients()
        .set_tags(fx.org, late.id, &[])
        .await
        .unwrap();
    let (since, until) = window();
    follow_once(&fx.store, since, until, now).await.unwrap();
    assert!(
        fx.steps(id, late.id)
            .await
            .iter()
            .all(|r| r.state == OccurrenceState::Cancelled
                && r.reason.as_deref() == Some("left_audience"))
    );

    // A change outside the window is not seen.
    let wall = chrono::Utc::now();
    let none = follow_once(
        &fx.store,
        wall + chrono::TimeDelta::minutes(1),
        wall + chrono::TimeDelta::minutes(2),
        now,
    )
    .await
    .unwrap();
    assert_eq!(none.patients, 0);
}
