//! sea-orm entities, one per table. Columns hold plain values (uuids, text, JSON, UTC timestamps);
//! the repositories convert them to and from `careloop-core` types, so these never leave the crate.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod organizations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "organizations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub slug: String,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod staff_users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "staff_users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub email: String,
        pub display_name: String,
        pub role: String,
        pub password_hash: String,
        pub active: bool,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod patients {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "patients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub display_name: String,
        pub language: String,
        pub reading_level: String,
        pub timezone: String,
        pub quiet_hours: Option<String>,
        pub consent_state: String,
        pub consent_updated_at: DateTimeUtc,
        pub tags: Json,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod patient_channel_opt_outs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "patient_channel_opt_outs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub patient_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel: String,
        pub organization_id: Uuid,
        pub opted_out_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod conditions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "conditions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub code: String,
        pub name: String,
    }

    no_relations!();
}

pub mod patient_conditions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "patient_conditions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub patient_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub condition_id: Uuid,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod channel_identities {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "channel_identities")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub patient_id: Uuid,
        pub channel: String,
        pub address: String,
        pub verified_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod content_items {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "content_items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub kind: String,
        pub key: String,
        /// `""` when the item is not specific to a condition.
        pub condition_code: String,
        pub topic: Option<String>,
        pub language: String,
        pub reading_level: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod content_versions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "content_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub content_item_id: Uuid,
        pub version: i32,
        pub title: String,
        pub body: String,
        pub front_matter: Json,
        pub review_state: String,
        pub authored_by: Option<Uuid>,
        pub submitted_at: Option<DateTimeUtc>,
        pub approved_by: Option<Uuid>,
        pub approved_at: Option<DateTimeUtc>,
        pub retired_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod conversations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "conversations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub patient_id: Uuid,
        pub channel: String,
        pub started_at: DateTimeUtc,
        pub last_message_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod messages {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub conversation_id: Uuid,
        pub patient_id: Uuid,
        pub direction: String,
        pub channel: String,
        pub status: String,
        pub body: String,
        pub language: Option<String>,
        pub idempotency_key: Option<String>,
        pub provenance: Option<Json>,
        pub failure_reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub attempts: i32,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub delivery_meta: Option<Json>,
        pub provider_message_id: Option<String>,
    }

    no_relations!();
}

pub mod medication_schedules {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "medication_schedules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub patient_id: Uuid,
        pub medicine_name: String,
        pub dose_text: String,
        pub rrule: String,
        pub timezone: String,
        pub starts_on: Date,
        pub ends_on: Option<Date>,
        pub quiet_hours_policy: String,
        pub channels: Json,
        pub active: bool,
        pub created_by: Option<Uuid>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod campaigns {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "campaigns")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub name: String,
        pub state: String,
        pub audience: Json,
        pub steps: Json,
        pub created_by: Uuid,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod reminder_occurrences {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "reminder_occurrences")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub schedule_id: Option<Uuid>,
        pub campaign_id: Option<Uuid>,
        pub patient_id: Uuid,
        pub due_at: DateTimeUtc,
        pub state: String,
        pub idempotency_key: String,
        pub message_id: Option<Uuid>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub campaign_step: Option<i32>,
        pub slot_at: Option<DateTimeUtc>,
        pub reason: Option<String>,
    }

    no_relations!();
}

pub mod patient_dates {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "patient_dates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub patient_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub organization_id: Uuid,
        pub date: Date,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod delivery_attempts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub message_id: Uuid,
        pub attempt: i32,
        pub outcome: String,
        pub error: Option<String>,
        pub provider_message_id: Option<String>,
        pub attempted_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod adherence_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "adherence_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub patient_id: Uuid,
        pub occurrence_id: Option<Uuid>,
        pub kind: String,
        pub source_channel: Option<String>,
        pub recorded_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod audit_log {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Option<Uuid>,
        pub actor: String,
        pub action: String,
        pub entity_type: String,
        pub entity_id: String,
        pub details: Json,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod alerts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alerts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub patient_id: Uuid,
        pub kind: String,
        pub category: Option<String>,
        pub message_id: Option<Uuid>,
        pub details: Json,
        pub created_at: DateTimeUtc,
        pub acknowledged_at: Option<DateTimeUtc>,
        pub acknowledged_by: Option<Uuid>,
        pub notified_at: Option<DateTimeUtc>,
    }

    no_relations!();
}

pub mod patient_dialogs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "patient_dialogs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub patient_id: Uuid,
        pub organization_id: Uuid,
        pub state: Json,
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

pub mod inbound_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbound_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub channel: String,
        #[sea_orm(unique)]
        pub idempotency_key: String,
        pub payload: Option<Json>,
        pub status: String,
        pub attempts: i32,
        pub error: Option<String>,
        pub received_at: DateTimeUtc,
        pub next_attempt_at: Option<DateTimeUtc>,
        pub processed_at: Option<DateTimeUtc>,
    }

    no_relations!();
}

pub mod enrolment_codes {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "enrolment_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub organization_id: Uuid,
        pub patient_id: Uuid,
        #[sea_orm(unique)]
        pub code_hash: String,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}
