use std::collections::HashMap;

use careloop_core::{
    ChannelKind, ConditionId, ConsentState, DisplayName, Language, OrganizationId, PatientId,
    QuietHours, ReadingLevel, TimeZone,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, sea_query::Expr,
};

use crate::convert::{from_json, micros, now, parse, parse_opt, to_json};
use crate::entities::{
    conditions, patient_channel_opt_outs as opt_outs, patient_conditions, patients,
};
use crate::repos::audit::{Actor, NewAuditEntry, append_in};
use crate::repos::conditions::Condition;
use crate::repos::{ensure_patient, updated_one};
use crate::{Store, StoreError};

const TABLE: &str = "patients";
const OPT_OUTS: &str = "patient_channel_opt_outs";

/// A person the care team looks after. `Debug` shows no personal data (the name is redacted by
/// its type; tags are not meant to hold any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub id: PatientId,
    pub organization_id: OrganizationId,
    pub display_name: DisplayName,
    pub language: Language,
    pub reading_level: ReadingLevel,
    pub timezone: TimeZone,
    pub quiet_hours: Option<QuietHours>,
    pub consent: ConsentState,
    pub consent_updated_at: DateTime<Utc>,
    pub tags: Vec<String>,
    /// Channels the patient asked not to be contacted on, by channel name.
    pub opt_outs: Vec<ChannelOptOut>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Patient {
    pub fn is_opted_out(&self, channel: ChannelKind) -> bool {
        self.opt_outs.iter().any(|o| o.channel == channel)
    }

    /// Consent granted and this channel not opted out.
    pub fn may_contact_on(&self, channel: ChannelKind) -> bool {
        self.consent == ConsentState::Granted && !self.is_opted_out(channel)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOptOut {
    pub channel: ChannelKind,
    pub opted_out_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPatient {
    pub display_name: DisplayName,
    pub language: Language,
    pub reading_level: ReadingLevel,
    pub timezone: TimeZone,
    pub quiet_hours: Option<QuietHours>,
    pub consent: ConsentState,
    pub tags: Vec<String>,
}

/// What a patient (or staff on their behalf) may change about how they are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatientPreferences {
    pub language: Language,
    pub reading_level: ReadingLevel,
    pub timezone: TimeZone,
    pub quiet_hours: Option<QuietHours>,
}

pub(crate) fn to_patient(
    m: patients::Model,
    mut opt_outs: Vec<ChannelOptOut>,
) -> Result<Patient, StoreError> {
    opt_outs.sort_by_key(|o| o.channel.as_str());
    Ok(Patient {
        id: PatientId::from_uuid(m.id),
        organization_id: OrganizationId::from_uuid(m.organization_id),
        display_name: parse(TABLE, "display_name", &m.display_name)?,
        language: parse(TABLE, "language", &m.language)?,
        reading_level: parse(TABLE, "reading_level", &m.reading_level)?,
        timezone: parse(TABLE, "timezone", &m.timezone)?,
        quiet_hours: parse_opt(TABLE, "quiet_hours", m.quiet_hours.as_deref())?,
        consent: parse(TABLE, "consent_state", &m.consent_state)?,
        consent_updated_at: m.consent_updated_at,
        tags: from_json(TABLE, "tags", m.tags)?,
        opt_outs,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub(crate) fn to_opt_out(m: &opt_outs::Model) -> Result<ChannelOptOut, StoreError> {
    Ok(ChannelOptOut {
        channel: parse(OPT_OUTS, "channel", &m.channel)?,
        opted_out_at: m.opted_out_at,
    })
}

fn clean_tags(tags: &[String]) -> Result<Vec<String>, StoreError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = crate::convert::required_text("tag", tag, 64)?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

/// `store.patients()`.
#[derive(Debug, Clone, Copy)]
pub struct Patients<'a> {
    pub(crate) store: &'a Store,
}

impl Patients<'_> {
    pub async fn create(
        &self,
        org: OrganizationId,
        new: NewPatient,
    ) -> Result<Patient, StoreError> {
        let tags = clean_tags(&new.tags)?;
        let at = now();
        let model = patients::ActiveModel {
            id: Set(PatientId::new().as_uuid()),
            organization_id: Set(org.as_uuid()),
            display_name: Set(new.display_name.as_str().to_owned()),
            language: Set(new.language.to_string()),
            reading_level: Set(new.reading_level.as_str().to_owned()),
            timezone: Set(new.timezone.to_string()),
            quiet_hours: Set(new.quiet_hours.map(|q| q.to_string())),
            consent_state: Set(new.consent.as_str().to_owned()),
            consent_updated_at: Set(at),
            tags: Set(to_json(&tags)),
            created_at: Set(at),
            updated_at: Set(at),
        }
        .insert(self.store.connection())
        .await?;
        let patient = to_patient(model, Vec::new())?;
        tracing::info!(organization_id = %org, patient_id = %patient.id, "patient created");
        Ok(patient)
    }

    pub async fn get(
        &self,
        org: OrganizationId,
        id: PatientId,
    ) -> Result<Option<Patient>, StoreError> {
        get_in(self.store.connection(), org, id).await
    }

    /// Every patient of the organization, oldest first.
    pub async fn list(&self, org: OrganizationId) -> Result<Vec<Patient>, StoreError> {
        let db = self.store.connection();
        let rows = patients::Entity::find()
            .filter(patients::Column::OrganizationId.eq(org.as_uuid()))
            .order_by_asc(patients::Column::CreatedAt)
            .order_by_asc(patients::Column::Id)
            .all(db)
            .await?;
        let mut opt_outs_by_patient: HashMap<uuid::Uuid, Vec<ChannelOptOut>> = HashMap::new();
        for o in opt_outs::Entity::find()
            .filter(opt_outs::Column::OrganizationId.eq(org.as_uuid()))
            .all(db)
            .await?
        {
            opt_outs_by_patient
                .entry(o.patient_id)
                .or_default()
                .push(to_opt_out(&o)?);
        }
        rows.into_iter()
            .map(|m| {
                let o = opt_outs_by_patient.remove(&m.id).unwrap_or_default();
                to_patient(m, o)
            })
            .collect()
    }

    pub async fn update_preferences(
        &self,
        org: OrganizationId,
        id: PatientId,
        prefs: &PatientPreferences,
    ) -> Result<Patient, StoreError> {
        let db = self.store.connection();
        let res = patients::Entity::update_many()
            .col_expr(
                patients::Column::Language,
                Expr::value(prefs.language.to_string()),
            )
            .col_expr(
                patients::Column::ReadingLevel,
                Expr::value(prefs.reading_level.as_str()),
            )
            .col_expr(
                patients::Column::Timezone,
                Expr::value(prefs.timezone.to_string()),
            )
            .col_expr(
                patients::Column::QuietHours,
                Expr::value(prefs.quiet_hours.map(|q| q.to_string())),
            )
            .col_expr(patients::Column::UpdatedAt, Expr::value(now()))
            .filter(patients::Column::Id.eq(id.as_uuid()))
            .filter(patients::Column::OrganizationId.eq(org.as_uuid()))
            .exec(db)
            .await?;
        updated_one(res.rows_affected, "patient")?;
        get_in(db, org, id)
            .await?
            .ok_or(StoreError::NotFound { entity: "patient" })
    }

    /// Records a consent decision and appends an audit entry, in one transaction.
    pub async fn set_consent(
        &self,
        org: OrganizationId,
        id: PatientId,
        consent: ConsentState,
        actor: &Actor,
    ) -> Result<Patient, StoreError> {
        let txn = self.store.begin_write().await?;
        let before = get_in(&txn, org, id)
            .await?
            .ok_or(StoreError::NotFound { entity: "patient" })?;
        let at = now();
        patients::Entity::update_many()
            .col_expr(
                patients::Column::ConsentState,
                Expr::value(consent.as_str()),
            )
            .col_expr(patients::Column::ConsentUpdatedAt, Expr::value(at))
            .col_expr(patients::Column::UpdatedAt, Expr::value(at))
            .filter(patients::Column::Id.eq(id.as_uuid()))
            .filter(patients::Column::OrganizationId.eq(org.as_uuid()))
            .exec(&txn)
            .await?;
        append_in(
            &txn,
            NewAuditEntry {
                organization_id: Some(org),
                actor: *actor,
                action: "patient.consent_changed".to_owned(),
                entity_type: "patient".to_owned(),
                entity_id: id.to_string(),
                details: serde_json::json!({
                    "from": before.consent.as_str(),
                    "to": consent.as_str(),
                }),
            },
        )
        .await?;
        let after = get_in(&txn, org, id)
            .await?
            .ok_or(StoreError::NotFound { entity: "patient" })?;
        txn.commit().await?;
        Ok(after)
    }

    /// Opts the patient out of (`true`) or back into (`false`) one channel. Opting out twice
    /// keeps the first time.
    pub async fn set_channel_opt_out(
        &self,
        org: OrganizationId,
        id: PatientId,
        channel: ChannelKind,
        opted_out: bool,
    ) -> Result<(), StoreError> {
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, id).await?;
        if opted_out {
            opt_outs::Entity::insert(opt_outs::ActiveModel {
                patient_id: Set(id.as_uuid()),
                channel: Set(channel.as_str().to_owned()),
                organization_id: Set(org.as_uuid()),
                opted_out_at: Set(now()),
            })
            .on_conflict_do_nothing()
            .exec_without_returning(&txn)
            .await?;
        } else {
            opt_outs::Entity::delete_many()
                .filter(opt_outs::Column::PatientId.eq(id.as_uuid()))
                .filter(opt_outs::Column::OrganizationId.eq(org.as_uuid()))
                .filter(opt_outs::Column::Channel.eq(channel.as_str()))
                .exec(&txn)
                .await?;
        }
        touch(&txn, org, id).await?;
        txn.commit().await?;
        tracing::info!(organization_id = %org, patient_id = %id, %channel, opted_out, "channel preference changed");
        Ok(())
    }

    /// The patients of this organization who opted out of `channel`.
    pub async fn list_opted_out(
        &self,
        org: OrganizationId,
        channel: ChannelKind,
    ) -> Result<Vec<PatientId>, StoreError> {
        Ok(opt_outs::Entity::find()
            .filter(opt_outs::Column::OrganizationId.eq(org.as_uuid()))
            .filter(opt_outs::Column::Channel.eq(channel.as_str()))
            .order_by_asc(opt_outs::Column::PatientId)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(|o| PatientId::from_uuid(o.patient_id))
            .collect())
    }

    /// Replaces the patient's tags (trimmed, de-duplicated, order kept).
    pub async fn set_tags(
        &self,
        org: OrganizationId,
        id: PatientId,
        tags: &[String],
    ) -> Result<(), StoreError> {
        let tags = clean_tags(tags)?;
        let res = patients::Entity::update_many()
            .col_expr(patients::Column::Tags, Expr::value(to_json(&tags)))
            .col_expr(patients::Column::UpdatedAt, Expr::value(now()))
            .filter(patients::Column::Id.eq(id.as_uuid()))
            .filter(patients::Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "patient")
    }

    /// Links a condition to the patient; linking it again is a no-op.
    pub async fn add_condition(
        &self,
        org: OrganizationId,
        id: PatientId,
        condition: ConditionId,
    ) -> Result<(), StoreError> {
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, id).await?;
        if conditions::Entity::find_by_id(condition.as_uuid())
            .one(&txn)
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound {
                entity: "condition",
            });
        }
        patient_conditions::Entity::insert(patient_conditions::ActiveModel {
            patient_id: Set(id.as_uuid()),
            condition_id: Set(condition.as_uuid()),
            created_at: Set(now()),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&txn)
        .await?;
        touch(&txn, org, id).await?;
        txn.commit().await?;
        Ok(())
    }

    pub async fn remove_condition(
        &self,
        org: OrganizationId,
        id: PatientId,
        condition: ConditionId,
    ) -> Result<(), StoreError> {
        let txn = self.store.begin_write().await?;
        ensure_patient(&txn, org, id).await?;
        patient_conditions::Entity::delete_many()
            .filter(patient_conditions::Column::PatientId.eq(id.as_uuid()))
            .filter(patient_conditions::Column::ConditionId.eq(condition.as_uuid()))
            .exec(&txn)
            .await?;
        touch(&txn, org, id).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Patients of every organization changed since `since` (exclusive) up to `until`
    /// (inclusive): created, or their preferences, consent, tags, conditions or channel opt-outs
    /// changed, a channel linked or a date set. Oldest change first, each patient once; for the
    /// reminder worker, which re-plans their doses and enrols them in running campaigns.
    pub async fn changed_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(OrganizationId, PatientId)>, StoreError> {
        use crate::entities::{channel_identities as identities, patient_dates as dates};
        let db = self.store.connection();
        let (since, until) = (micros(since), micros(until));
        let mut changed: Vec<(DateTime<Utc>, uuid::Uuid, uuid::Uuid)> = Vec::new();
        for p in patients::Entity::find()
            .filter(patients::Column::UpdatedAt.gt(since))
            .filter(patients::Column::UpdatedAt.lte(until))
            .all(db)
            .await?
        {
            changed.push((p.updated_at, p.organization_id, p.id));
        }
        for i in identities::Entity::find()
            .filter(identities::Column::CreatedAt.gt(since))
            .filter(identities::Column::CreatedAt.lte(until))
            .all(db)
            .await?
        {
            changed.push((i.created_at, i.organization_id, i.patient_id));
        }
        for d in dates::Entity::find()
            .filter(dates::Column::UpdatedAt.gt(since))
            .filter(dates::Column::UpdatedAt.lte(until))
            .all(db)
            .await?
        {
            changed.push((d.updated_at, d.organization_id, d.patient_id));
        }
        changed.sort();
        let mut seen = std::collections::HashSet::new();
        Ok(changed
            .into_iter()
            .filter(|(_, _, id)| seen.insert(*id))
            .map(|(_, org, id)| (OrganizationId::from_uuid(org), PatientId::from_uuid(id)))
            .collect())
    }

    /// The patient's conditions, by code.
    pub async fn list_conditions(
        &self,
        org: OrganizationId,
        id: PatientId,
    ) -> Result<Vec<Condition>, StoreError> {
        let db = self.store.connection();
        ensure_patient(db, org, id).await?;
        let ids: Vec<uuid::Uuid> = patient_conditions::Entity::find()
            .filter(patient_conditions::Column::PatientId.eq(id.as_uuid()))
            .all(db)
            .await?
            .into_iter()
            .map(|pc| pc.condition_id)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        conditions::Entity::find()
            .filter(conditions::Column::Id.is_in(ids))
            .order_by_asc(conditions::Column::Code)
            .all(db)
            .await?
            .into_iter()
            .map(Condition::try_from)
            .collect()
    }
}

/// Marks the patient changed (`updated_at`), so that what follows patients' changes (re-planned
/// doses, campaign enrolment) sees this one.
async fn touch<C: ConnectionTrait>(
    db: &C,
    org: OrganizationId,
    id: PatientId,
) -> Result<(), StoreError> {
    patients::Entity::update_many()
        .col_expr(patients::Column::UpdatedAt, Expr::value(now()))
        .filter(patients::Column::Id.eq(id.as_uuid()))
        .filter(patients::Column::OrganizationId.eq(org.as_uuid()))
        .exec(db)
        .await?;
    Ok(())
}

pub(crate) async fn get_in<C: ConnectionTrait>(
    db: &C,
    org: OrganizationId,
    id: PatientId,
) -> Result<Option<Patient>, StoreError> {
    let Some(model) = patients::Entity::find_by_id(id.as_uuid())
        .filter(patients::Column::OrganizationId.eq(org.as_uuid()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let opt_outs = opt_outs::Entity::find()
        .filter(opt_outs::Column::PatientId.eq(id.as_uuid()))
        .filter(opt_outs::Column::OrganizationId.eq(org.as_uuid()))
        .all(db)
        .await?
        .iter()
        .map(to_opt_out)
        .collect::<Result<Vec<_>, _>>()?;
    to_patient(model, opt_outs).map(Some)
}
