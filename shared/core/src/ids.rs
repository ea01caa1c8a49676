//! Typed identifiers. A `PatientId` can never be passed where an `OrganizationId` is expected.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ParseError;

macro_rules! id_type {
    ($($name:ident => $field:literal),* $(,)?) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| ParseError::new($field, "must be a UUID"))
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    )*};
}

id_type! {
    OrganizationId => "organization_id",
    StaffUserId => "staff_user_id",
    PatientId => "patient_id",
    ChannelIdentityId => "channel_identity_id",
    ConditionId => "condition_id",
    ContentItemId => "content_item_id",
    ContentVersionId => "content_version_id",
    ConversationId => "conversation_id",
    MessageId => "message_id",
    MedicationScheduleId => "medication_schedule_id",
    ReminderOccurrenceId => "reminder_occurrence_id",
    CampaignId => "campaign_id",
    DeliveryAttemptId => "delivery_attempt_id",
    AdherenceEventId => "adherence_event_id",
    AuditEntryId => "audit_entry_id",
    AlertId => "alert_id",
    InboundEventId => "inbound_event_id",
    EnrolmentCodeId => "enrolment_code_id",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let id = PatientId::new();
        let parsed: PatientId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
    }

    #[test]
    fn bad_id_names_the_field() {
        let err = "not-a-uuid".parse::<OrganizationId>().unwrap_err();
        assert_eq!(err.field, "organization_id");
        assert_eq!(err.to_string(), "invalid organization_id: must be a UUID");
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a < b);
    }
}
