//! Queueing an approved template to a patient through the outbox: the one path reminders and
//! their confirmations take, recording which content version was sent and why.

use careloop_channels::DeliveryMeta;
use careloop_core::{
    ChannelKind, ConversationId, Language, MessageDirection, MessageStatus, OrganizationId,
    PatientId,
};
use careloop_store::{ApprovedContent, Message, NewMessage, Provenance, Store, StoreError};

/// One templated message to queue.
pub(crate) struct Outgoing<'a> {
    pub channel: ChannelKind,
    pub template: &'a ApprovedContent,
    /// The template's body with its placeholders filled.
    pub body: String,
    pub language: Language,
    /// Derived from what the message is for, so queueing it again stores it once.
    pub idempotency_key: String,
    pub meta: DeliveryMeta,
    /// Provenance checks beside the content version (`stage`, `template`, …).
    pub checks: Vec<(&'static str, serde_json::Value)>,
}

/// The message `queued` in the patient's conversation on the channel (opened if need be), ready
/// to store: by [`queue`], or together with what it settles (a dose's `sent` state).
pub(crate) async fn prepare(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    out: Outgoing<'_>,
) -> Result<NewMessage, StoreError> {
    let conversation = store
        .messages()
        .open_or_get_conversation(org, patient, out.channel)
        .await?;
    Ok(message_in(conversation.id, out))
}

/// The message `queued` in `conversation` (the patient's, on `out.channel`).
pub(crate) fn message_in(conversation: ConversationId, out: Outgoing<'_>) -> NewMessage {
    let mut provenance = Provenance {
        content_version_ids: vec![out.template.version.id],
        ..Provenance::default()
    };
    for (name, value) in out.checks {
        provenance.checks.insert(name.into(), value);
    }
    NewMessage {
        conversation_id: conversation,
        direction: MessageDirection::Outbound,
        status: MessageStatus::Queued,
        body: out.body,
        language: Some(out.language),
        idempotency_key: Some(out.idempotency_key),
        provenance: Some(provenance),
        delivery_meta: serde_json::to_value(&out.meta).ok(),
        hold_until: None,
    }
}

/// Stores the message `queued` in the patient's conversation on the channel (the existing one
/// when the idempotency key was used before).
pub(crate) async fn queue(
    store: &Store,
    org: OrganizationId,
    patient: PatientId,
    out: Outgoing<'_>,
) -> Result<Message, StoreError> {
    let message = prepare(store, org, patient, out).await?;
    Ok(store
        .messages()
        .append_message(org, message)
        .await?
        .into_inner())
}
