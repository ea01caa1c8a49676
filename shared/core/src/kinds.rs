//! Closed sets of values (roles, states, channels). Each is stored as its lowercase name.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::ParseError;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| {
                        let allowed: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        ParseError::new($field, format!("must be one of: {}", allowed.join(", ")))
                    })
            }
        }
    };
}

string_enum!(
    /// What a staff member may do.
    Role, "role" { Admin => "admin", CareTeam => "care_team", Reviewer => "reviewer" }
);
string_enum!(
    /// The ways a patient talks to careloop.
    ChannelKind, "channel" { Telegram => "telegram", Email => "email", WebChat => "web_chat" }
);
string_enum!(
    /// Whether the patient agreed to be contacted.
    ConsentState, "consent" { Pending => "pending", Granted => "granted", Withdrawn => "withdrawn" }
);
string_enum!(
    /// Life cycle of one content version.
    ReviewState, "review_state" {
        Draft => "draft", InReview => "in_review", Approved => "approved", Retired => "retired",
    }
);
string_enum!(
    /// What a piece of content is for.
    ContentKind, "content_kind" { Article => "article", Template => "template" }
);
string_enum!(MessageDirection, "direction" { Inbound => "inbound", Outbound => "outbound" });
string_enum!(
    /// Delivery state of a message; inbound messages are `Received`.
    MessageStatus, "message_status" {
        Received => "received", Queued => "queued", Sent => "sent", Delivered => "delivered",
        Failed => "failed",
    }
);
string_enum!(
    /// Where a stored inbound channel event (update, mail) is in its processing; `Failed` is
    /// given up on.
    InboundStatus, "inbound_status" {
        Pending => "pending", Processed => "processed", Failed => "failed",
    }
);
string_enum!(
    /// Life cycle of one planned reminder.
    OccurrenceState, "occurrence_state" {
        Planned => "planned", Dispatching => "dispatching", Sent => "sent",
        Skipped => "skipped", Cancelled => "cancelled", Failed => "failed",
    }
);
string_enum!(
    /// What a patient did about one dose.
    AdherenceKind, "adherence" { Taken => "taken", Skipped => "skipped", Snoozed => "snoozed", Missed => "missed" }
);
string_enum!(
    /// Why the care team is asked to look at a patient.
    AlertKind, "alert_kind" { Urgent => "urgent", Dosing => "dosing", MissedDoses => "missed_doses" }
);
string_enum!(
    CampaignState, "campaign_state" {
        Draft => "draft", Running => "running", Paused => "paused", Completed => "completed",
        Cancelled => "cancelled",
    }
);
string_enum!(
    /// What happens to a reminder that falls inside the patient's quiet hours.
    QuietHoursPolicy, "quiet_hours_policy" { Delay => "delay", Skip => "skip" }
);
string_enum!(
    DeliveryOutcome, "delivery_outcome" {
        Sent => "sent", Delivered => "delivered", TransientFailure => "transient_failure",
        PermanentFailure => "permanent_failure",
    }
);

impl ReviewState {
    /// The review workflow: draft → in review → approved → retired; a reviewer may send a version
    /// back to draft. Approved text is never edited: a change is a new version.
    pub fn can_move_to(self, next: ReviewState) -> bool {
        use ReviewState::*;
        matches!(
            (self, next),
            (Draft, InReview) | (InReview, Approved) | (InReview, Draft) | (Approved, Retired)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_case_insensitively_and_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().to_uppercase().parse::<Role>().unwrap(), *role);
        }
        assert_eq!(
            "web_chat".parse::<ChannelKind>().unwrap(),
            ChannelKind::WebChat
        );
    }

    #[test]
    fn unknown_value_lists_the_allowed_ones() {
        let err = "superuser".parse::<Role>().unwrap_err();
        assert_eq!(err.field, "role");
        assert!(err.reason.contains("admin, care_team, reviewer"), "{err}");
    }

    #[test]
    fn review_workflow_only_allows_forward_moves() {
        assert!(ReviewState::Draft.can_move_to(ReviewState::InReview));
        assert!(ReviewState::InReview.can_move_to(ReviewState::Approved));
        assert!(!ReviewState::Draft.can_move_to(ReviewState::Approved));
        assert!(!ReviewState::Retired.can_move_to(ReviewState::Approved));
        assert!(!ReviewState::Approved.can_move_to(ReviewState::Draft));
    }
}
