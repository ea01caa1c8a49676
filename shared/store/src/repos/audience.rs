use std::collections::{BTreeMap, HashMap};

use careloop_core::{ChannelKind, OrganizationId, PatientId, Slug};
use chrono::NaiveDate;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::convert::parse;
use crate::entities::{
    channel_identities, conditions, patient_channel_opt_outs as opt_outs, patient_conditions,
    patients,
};
use crate::repos::patients::{ChannelOptOut, Patient, to_opt_out, to_patient};
use crate::{Store, StoreError};

/// A patient with everything a campaign needs to decide whether and when to write to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceMember {
    pub patient: Patient,
    /// Codes of the patient's conditions, sorted.
    pub conditions: Vec<Slug>,
    /// The patient's named dates (`discharge_date`, …).
    pub dates: BTreeMap<Slug, NaiveDate>,
    /// Channels the patient has an identity on (linked), sorted, each once.
    pub channels: Vec<ChannelKind>,
}

/// `store.audience()`: patients of an organization a page at a time, each with its conditions,
/// dates and linked channels, in a fixed number of queries per page (for campaigns of any size).
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    pub(crate) store: &'a Store,
}

impl Audience<'_> {
    /// Up to `limit` patients with ids after `after`, by id.
    pub async fn page(
        &self,
        org: OrganizationId,
        after: Option<PatientId>,
        limit: u64,
    ) -> Result<Vec<AudienceMember>, StoreError> {
        let mut query = patients::Entity::find()
            .filter(patients::Column::OrganizationId.eq(org.as_uuid()))
            .order_by_asc(patients::Column::Id)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(patients::Column::Id.gt(after.as_uuid()));
        }
        let rows = query.all(self.store.connection()).await?;
        self.complete(org, rows).await
    }

    /// These patients of the organization (others are left out), by id.
    pub async fn members(
        &self,
        org: OrganizationId,
        ids: &[PatientId],
    ) -> Result<Vec<AudienceMember>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = patients::Entity::find()
            .filter(patients::Column::OrganizationId.eq(org.as_uuid()))
            .filter(patients::Column::Id.is_in(ids.iter().map(|p| p.as_uuid())))
            .order_by_asc(patients::Column::Id)
            .all(self.store.connection())
            .await?;
        self.complete(org, rows).await
    }

    async fn complete(
        &self,
        org: OrganizationId,
        rows: Vec<patients::Model>,
    ) -> Result<Vec<AudienceMember>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let db = self.store.connection();
        let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.id).collect();

        let mut opt_outs_of: HashMap<uuid::Uuid, Vec<ChannelOptOut>> = HashMap::new();
        for o in opt_outs::Entity::find()
            .filter(opt_outs::Column::OrganizationId.eq(org.as_uuid()))
            .filter(opt_outs::Column::PatientId.is_in(ids.clone()))
            .all(db)
            .await?
        {
            opt_outs_of
                .entry(o.patient_id)
                .or_default()
                .push(to_opt_out(&o)?);
        }

        let links = patient_conditions::Entity::find()
            .filter(patient_conditions::Column::PatientId.is_in(ids.clone()))
            .all(db)
            .await?;
        let mut codes: HashMap<uuid::Uuid, Slug> = HashMap::new();
        if !links.is_empty() {
            for c in conditions::Entity::find()
                .filter(conditions::Column::Id.is_in(links.iter().map(|l| l.condition_id)))
                .all(db)
                .await?
            {
                codes.insert(c.id, parse("conditions", "code", &c.code)?);
            }
        }
        let mut conditions_of: HashMap<uuid::Uuid, Vec<Slug>> = HashMap::new();
        for link in links {
            if let Some(code) = codes.get(&link.condition_id) {
                conditions_of
                    .entry(link.patient_id)
                    .or_default()
                    .push(code.clone());
            }
        }

        let mut channels_of: HashMap<uuid::Uuid, Vec<ChannelKind>> = HashMap::new();
        for identity in channel_identities::Entity::find()
            .filter(channel_identities::Column::OrganizationId.eq(org.as_uuid()))
            .filter(channel_identities::Column::PatientId.is_in(ids.clone()))
            .all(db)
            .await?
        {
            channels_of
                .entry(identity.patient_id)
                .or_default()
                .push(parse("channel_identities", "channel", &identity.channel)?);
        }

        let patient_ids: Vec<PatientId> = ids.iter().copied().map(PatientId::from_uuid).collect();
        let mut dates_of = self
            .store
            .patient_dates()
            .for_patients(org, &patient_ids)
            .await?;

        rows.into_iter()
            .map(|row| {
                let id = row.id;
                let patient = to_patient(row, opt_outs_of.remove(&id).unwrap_or_default())?;
                let mut conditions = conditions_of.remove(&id).unwrap_or_default();
                conditions.sort();
                conditions.dedup();
                let mut channels = channels_of.remove(&id).unwrap_or_default();
                channels.sort_by_key(|c| c.as_str());
                channels.dedup();
                let dates = dates_of.remove(&patient.id).unwrap_or_default();
                Ok(AudienceMember {
                    patient,
                    conditions,
                    dates,
                    channels,
                })
            })
            .collect()
    }
}
