//! The conversation engine: one inbound message in, one recorded reply out (streamed as drafts
//! to channels that can show them). The order of the pipeline is the safety argument, so it is
//! written out in [`ConversationEngine::handle`] step by step.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use careloop_core::{
    AdherenceKind, AlertKind, ChannelKind, ConsentState, ContentVersionId, Language,
    MessageDirection, MessageId, MessageStatus, OrganizationId, ReadingLevel, Slug, TimeZone,
};
use careloop_llm_api::{ChatMessage, GenerationEvent, GenerationRequest, LlmError, LlmService};
use careloop_store::{
    Actor, ChannelAddress, Conversation, Inserted, NewAlert, NewMessage, NewPatient, Patient,
    PatientPreferences, Provenance, Store, StoreError,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

use crate::checks;
use crate::commands::{self, Command};
use crate::language::Detector;
use crate::lexicon::Lexicons;
use crate::library::{Article, Library, Query};
use crate::normalize;
use crate::prompt::{self, Turn};
use crate::reference::Reference;
use crate::triage::{self, Triage};

/// Tunables of the engine, with the defaults documented on each field.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Longest question answered (characters, default 2,000); longer ones get `too-long`.
    pub max_question_chars: usize,
    /// How much of a message is read at all (default 20,000 characters): triage still sees a
    /// red flag in an over-long message up to here.
    pub max_read_chars: usize,
    pub max_reply_tokens: u32,
    pub generation_timeout: Duration,
    /// Past messages given to the model (default 4).
    pub history_messages: u64,
    /// Articles given to the model (default 2).
    pub passages: usize,
    /// Time zone of patients who arrive without one (default UTC).
    pub default_timezone: TimeZone,
    /// How long a loaded library is used before it is read from the store again (default 5 min).
    pub library_ttl: Duration,
    /// How typed answers to reminders ("taken", "tomé") are read.
    pub adherence: careloop_adherence::AdherencePolicy,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_question_chars: 2_000,
            max_read_chars: 20_000,
            max_reply_tokens: 160,
            generation_timeout: Duration::from_secs(60),
            history_messages: 4,
            passages: 2,
            default_timezone: TimeZone::UTC,
            library_ttl: Duration::from_secs(300),
            adherence: careloop_adherence::AdherencePolicy::default(),
        }
    }
}

/// What a channel received.
#[derive(Clone, PartialEq, Eq)]
pub enum InboundContent {
    Text(String),
    /// A sticker, voice note, file… named by kind (`sticker`), never its content.
    Unsupported(String),
    /// The patient opened the conversation (Telegram `/start`): a new sender is welcomed into
    /// onboarding, a known patient whose consent is pending is asked for it, others get HELP.
    Greeting,
}

impl std::fmt::Debug for InboundContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InboundContent::Text(t) => write!(f, "Text(<{} chars>)", t.chars().count()),
            InboundContent::Unsupported(kind) => write!(f, "Unsupported({kind})"),
            InboundContent::Greeting => f.write_str("Greeting"),
        }
    }
}

/// One message from a patient, as a channel hands it over.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub organization_id: OrganizationId,
    pub address: ChannelAddress,
    pub content: InboundContent,
    /// The channel's id for this message (`telegram:<bot>:<update_id>`): a message seen twice is
    /// handled once.
    pub idempotency_key: Option<String>,
    /// How the reply goes out through the outbox.
    pub reply: ReplyDelivery,
    /// The sender is over their message rate: commands and red flags are still handled, but a
    /// question gets the polite `rate-limited` reply instead of an answer (no model call).
    pub rate_limited: bool,
}

/// What the outbox needs to send the reply on the inbound message's channel.
#[derive(Debug, Clone, Default)]
pub struct ReplyDelivery {
    /// Channel data kept with the reply (the channels crate's `DeliveryMeta`: threading ids…).
    pub meta: Option<serde_json::Value>,
    /// Hold the reply in the outbox this long: a channel that streams drafts releases it itself
    /// when its draft is ready to be replaced; if it never does, the outbox sends it after this.
    pub hold: Option<std::time::Duration>,
}

/// What a channel that streams is told while a reply is being made.
#[derive(Debug, Clone)]
pub enum ReplyEvent {
    /// More text of the draft.
    Draft(String),
    /// Take back everything shown so far; the final reply replaces it.
    Retract,
    /// The reply, recorded and ready for the outbox.
    Final(Box<Reply>),
}

/// Where a reply's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplySource {
    /// A model answer that passed every check.
    Model,
    /// An approved article, because no model answer passed (or none was possible).
    Article,
    /// Approved message templates.
    Template(String),
}

impl ReplySource {
    /// `model`, `article` or `template`, as provenance and the API report it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplySource::Model => "model",
            ReplySource::Article => "article",
            ReplySource::Template(_) => "template",
        }
    }
}

/// A recorded reply.
#[derive(Clone)]
pub struct Reply {
    pub message_id: MessageId,
    pub conversation: Conversation,
    pub text: String,
    pub language: Language,
    pub source: ReplySource,
    pub provenance: Provenance,
}

/// What separates a reply's answer from its disclaimer footer.
const FOOTER: &str = "\n\n— ";

impl Reply {
    /// The reply without its disclaimer footer: what the checks and reading level apply to.
    pub fn answer_text(&self) -> &str {
        self.text
            .rsplit_once(FOOTER)
            .map_or(&self.text, |(answer, _)| answer)
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("message_id", &self.message_id)
            .field("language", &self.language)
            .field("source", &self.source)
            .field("text", &"<redacted>")
            .finish()
    }
}

/// The outcome of handling one inbound message.
#[derive(Debug)]
pub enum Handled {
    Replied(Box<Reply>),
    /// Recorded, deliberately not answered (the patient opted out, or STOP was repeated).
    NoReply {
        reason: &'static str,
    },
    /// Seen before (same idempotency key): nothing was done.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the patient record is not consistent: {0}")]
    Inconsistent(&'static str),
}

/// A question careloop has asked and is waiting for an answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Question {
    Language,
    Condition,
    Level,
    Consent,
}

/// What a conversation remembers between messages (stored per patient).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Dialog {
    #[serde(default)]
    asked: Option<Question>,
    /// In the onboarding flow: answering one question asks the next.
    #[serde(default)]
    onboarding: bool,
    /// The patient wrote in this language; a yes keeps it.
    #[serde(default)]
    pending_language: Option<Language>,
}

/// The reply being composed: text parts and their provenance.
#[derive(Debug, Default)]
struct Composed {
    parts: Vec<String>,
    language: Option<Language>,
    content_versions: Vec<ContentVersionId>,
    model_id: Option<String>,
    prompt_version: Option<String>,
    checks: std::collections::BTreeMap<String, serde_json::Value>,
    source: Option<ReplySource>,
}

impl Composed {
    fn push(&mut self, text: String, version: Option<ContentVersionId>) {
        self.parts.push(text);
        if let Some(v) = version {
            self.content_versions.push(v);
        }
    }
}

fn native_name(language: Language) -> &'static str {
    match language {
        Language::English => "English",
        Language::Spanish => "Español",
        Language::French => "Français",
        Language::German => "Deutsch",
        Language::Portuguese => "Português",
        Language::Arabic => "العربية",
    }
}

/// The last-resort urgent message when no approved `urgent` template exists at all: safety
/// before approval, for this one message only.
const BUILT_IN_URGENT: &str = "This may be an emergency. Call {emergency_number} now or go to the nearest emergency department.";

pub struct ConversationEngine {
    store: Store,
    llm: Arc<dyn LlmService>,
    lexicons: Lexicons,
    reference: Reference,
    detector: Arc<Detector>,
    settings: EngineSettings,
    libraries: RwLock<HashMap<OrganizationId, (Instant, Arc<Library>)>>,
}

impl std::fmt::Debug for ConversationEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationEngine")
            .field("settings", &self.settings)
            .finish()
    }
}

fn cut(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

impl ConversationEngine {
    pub fn new(
        store: Store,
        llm: Arc<dyn LlmService>,
        lexicons: Lexicons,
        reference: Reference,
        detector: Arc<Detector>,
        settings: EngineSettings,
    ) -> ConversationEngine {
        ConversationEngine {
            store,
            llm,
            lexicons,
            reference,
            detector,
            settings,
            libraries: RwLock::new(HashMap::new()),
        }
    }

    pub fn lexicons(&self) -> &Lexicons {
        &self.lexicons
    }

    /// The organization's approved content, loaded from the store at most every `library_ttl`.
    pub async fn library(&self, org: OrganizationId) -> Result<Arc<Library>, StoreError> {
        if let Ok(cache) = self.libraries.read()
            && let Some((at, lib)) = cache.get(&org)
            && at.elapsed() < self.settings.library_ttl
        {
            return Ok(Arc::clone(lib));
        }
        self.reload_library(org).await
    }

    /// The settings the engine was built with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Reads the approved content again now (after a review decision).
    pub async fn reload_library(&self, org: OrganizationId) -> Result<Arc<Library>, StoreError> {
        let approved = self.store.content().list_approved(org).await?;
        let lib = Arc::new(Library::from_approved(approved));
        if let Ok(mut cache) = self.libraries.write() {
            cache.insert(org, (Instant::now(), Arc::clone(&lib)));
        }
        Ok(lib)
    }

    /// Handles one inbound message. `events` receives drafts as a model answer streams, and the
    /// final reply.
    pub async fn handle(
        &self,
        inbound: Inbound,
        events: Option<&UnboundedSender<ReplyEvent>>,
    ) -> Result<Handled, ConversationError> {
        let started = Instant::now();
        let org = inbound.organization_id;
        let channel = inbound.address.kind();
        let text = match &inbound.content {
            InboundContent::Text(t) => cut(t, self.settings.max_read_chars).to_owned(),
            InboundContent::Unsupported(_) | InboundContent::Greeting => String::new(),
        };
        let words = normalize::words(&text);

        // 1. Identify the patient (a new sender becomes a patient in onboarding).
        let (mut patient, is_new) = self.identify(org, &inbound.address, &text).await?;
        let conversation = self
            .store
            .messages()
            .open_or_get_conversation(org, patient.id, channel)
            .await?;
        let stored_body = match &inbound.content {
            InboundContent::Text(_) if !text.is_empty() => text.clone(),
            InboundContent::Text(_) => "[empty message]".to_owned(),
            InboundContent::Unsupported(kind) => format!("[unsupported: {kind}]"),
            InboundContent::Greeting => "[conversation opened]".to_owned(),
        };
        let inbound_message = match self
            .store
            .messages()
            .append_message(
                org,
                NewMessage {
                    conversation_id: conversation.id,
                    direction: MessageDirection::Inbound,
                    status: MessageStatus::Received,
                    body: stored_body,
                    language: None,
                    idempotency_key: inbound.idempotency_key.clone(),
                    provenance: None,
                    delivery_meta: None,
                    hold_until: None,
                },
            )
            .await?
        {
            Inserted::New(m) => m,
            Inserted::Duplicate(_) => {
                tracing::info!(organization_id = %org, patient_id = %patient.id, "duplicate inbound message ignored");
                return Ok(Handled::Duplicate);
            }
        };
        let lib = self.library(org).await?;
        let mut dialog: Dialog = self
            .store
            .dialogs()
            .get(org, patient.id)
            .await?
            .unwrap_or_default();
        let dialog_before = dialog.clone();
        let mut out = Composed::default();
        let mut stage = "answer";

        // 2. Commands and opt-out, before anything else.
        let command = commands::command(&self.lexicons, &text, patient.language);
        // 3. Safety triage before any model call, in every language.
        let triage = triage::triage(&self.lexicons, &text, patient.language);
        let opted_out = patient.consent == ConsentState::Withdrawn || patient.is_opted_out(channel);
        // A typed answer to a reminder ("taken", "tomé", "أخذت"), when one is waiting for it;
        // otherwise the words are an ordinary message.
        let reminder_answer =
            match commands::reminder_reply(&self.lexicons, &text, patient.language) {
                Some(kind)
                    if command.is_none() && triage.is_ordinary() && !opted_out && !is_new =>
                {
                    careloop_adherence::open_reminder(
                        &self.store,
                        org,
                        patient.id,
                        chrono::Utc::now(),
                        &self.settings.adherence,
                    )
                    .await?
                    .map(|occ| (kind, occ))
                }
                _ => None,
            };

        if let Some((command, _)) = command.filter(|_| triage.is_ordinary()) {
            stage = "command";
            match command {
                Command::Stop => {
                    if patient.consent == ConsentState::Withdrawn {
                        return self.no_reply(org, &patient, "stop repeated", started);
                    }
                    patient = self.set_consent(&patient, ConsentState::Withdrawn).await?;
                    let cancelled = self
                        .store
                        .reminder_occurrences()
                        .cancel_planned_for_patient(org, patient.id)
                        .await?;
                    out.checks
                        .insert("reminders_cancelled".into(), json!(cancelled));
                    dialog = Dialog::default();
                    self.template(&lib, &mut out, "opt-out-confirmed", patient.language, &[]);
                }
                Command::Start => {
                    patient = self.set_consent(&patient, ConsentState::Granted).await?;
                    self.store
                        .patients()
                        .set_channel_opt_out(org, patient.id, channel, false)
                        .await?;
                    self.template(&lib, &mut out, "opt-in-confirmed", patient.language, &[]);
                }
                Command::Help if !opted_out => {
                    self.template(&lib, &mut out, "help", patient.language, &[]);
                }
                Command::Language(Some(language)) if !opted_out => {
                    patient = self.set_prefs(org, &patient, Some(language), None).await?;
                    dialog.pending_language = None;
                    self.template(
                        &lib,
                        &mut out,
                        "language-changed",
                        language,
                        &[("language", native_name(language))],
                    );
                }
                Command::Language(None) if !opted_out => {
                    dialog.asked = Some(Question::Language);
                    self.template(&lib, &mut out, "onboarding-language", patient.language, &[]);
                }
                Command::Level(Some(level)) if !opted_out => {
                    patient = self.set_prefs(org, &patient, None, Some(level)).await?;
                    let name = self.level_name(level, patient.language);
                    self.template(
                        &lib,
                        &mut out,
                        "level-changed",
                        patient.language,
                        &[("level", &name)],
                    );
                }
                Command::Level(None) if !opted_out => {
                    dialog.asked = Some(Question::Level);
                    self.template(&lib, &mut out, "onboarding-level", patient.language, &[]);
                }
                Command::Simpler if !opted_out => {
                    let level = patient.reading_level.simpler();
                    patient = self.set_prefs(org, &patient, None, Some(level)).await?;
                    let name = self.level_name(level, patient.language);
                    self.template(
                        &lib,
                        &mut out,
                        "level-changed",
                        patient.language,
                        &[("level", &name)],
                    );
                    if let Some(question) = self
                        .last_question(org, &conversation, inbound_message.id)
                        .await?
                    {
                        self.answer(
                            &lib,
                            &mut out,
                            &patient,
                            &conversation,
                            inbound_message.id,
                            &question,
                            patient.language,
                            level,
                            events,
                        )
                        .await?;
                    }
                }
                _ => return self.no_reply(org, &patient, "opted out", started),
            }
        } else if let Triage::Urgent { category, language } = &triage {
            // Urgent replies go out even to a patient who opted out: they wrote to us in distress.
            stage = "urgent";
            // In the language the red flag was written in: that is the one the patient reads now.
            let reply_language = *language;
            let number = self.reference.emergency_number(patient.timezone).to_owned();
            if !self.template(
                &lib,
                &mut out,
                "urgent",
                reply_language,
                &[("emergency_number", &number)],
            ) {
                out.push(BUILT_IN_URGENT.replace("{emergency_number}", &number), None);
                out.language = Some(Language::English);
            }
            out.checks.insert(
                "triage".into(),
                json!({"outcome": "urgent", "category": category}),
            );
            self.alert(
                org,
                &patient,
                AlertKind::Urgent,
                category,
                inbound_message.id,
            )
            .await?;
        } else if opted_out {
            return self.no_reply(org, &patient, "opted out", started);
        } else if let Triage::Dosing { category, language } = &triage {
            stage = "dosing";
            self.template(&lib, &mut out, "dosing-policy", *language, &[]);
            out.checks.insert(
                "triage".into(),
                json!({"outcome": "dosing", "category": category}),
            );
            self.alert(
                org,
                &patient,
                AlertKind::Dosing,
                category,
                inbound_message.id,
            )
            .await?;
        } else if is_new {
            stage = "onboarding";
            dialog = Dialog {
                asked: Some(Question::Language),
                onboarding: true,
                pending_language: None,
            };
            self.template(&lib, &mut out, "welcome", patient.language, &[]);
            self.template(&lib, &mut out, "onboarding-language", patient.language, &[]);
        } else if let Some(asked) = dialog.asked {
            stage = "onboarding";
            patient = self
                .answer_question(&lib, &mut out, &mut dialog, asked, &patient, &words)
                .await?;
        } else if let (Some(pending), Some(yes)) = (
            dialog.pending_language,
            commands::yes_no(&self.lexicons, &text, patient.language),
        ) {
            stage = "language";
            dialog.pending_language = None;
            let kept = if yes { pending } else { patient.language };
            patient = self.set_prefs(org, &patient, Some(kept), None).await?;
            self.template(
                &lib,
                &mut out,
                "language-changed",
                kept,
                &[("language", native_name(kept))],
            );
        } else if let Some((kind, occurrence)) = reminder_answer {
            stage = "adherence";
            self.answer_reminder(&lib, &mut out, &patient, channel, kind, &occurrence)
                .await?;
        } else if matches!(inbound.content, InboundContent::Greeting) {
            stage = "greeting";
            if patient.consent == ConsentState::Pending {
                dialog.asked = Some(Question::Consent);
                self.template(&lib, &mut out, "welcome", patient.language, &[]);
                self.template(&lib, &mut out, "onboarding-consent", patient.language, &[]);
            } else {
                self.template(&lib, &mut out, "help", patient.language, &[]);
            }
        } else if matches!(inbound.content, InboundContent::Unsupported(_)) {
            stage = "unsupported";
            self.template(&lib, &mut out, "unsupported", patient.language, &[]);
        } else if words.is_empty() {
            stage = "not_understood";
            self.template(&lib, &mut out, "not-understood", patient.language, &[]);
        } else if text.chars().count() > self.settings.max_question_chars {
            stage = "too_long";
            let limit = self.settings.max_question_chars.to_string();
            self.template(
                &lib,
                &mut out,
                "too-long",
                patient.language,
                &[("limit", &limit)],
            );
        } else if inbound.rate_limited {
            stage = "rate_limited";
            self.template(&lib, &mut out, "rate-limited", patient.language, &[]);
        } else {
            // 4. Language: a message clearly in another supported language switches the reply.
            let switch = self.detector.clearly_other(&text, patient.language);
            let language = switch.unwrap_or(patient.language);
            out.checks
                .insert("language_switch".into(), json!(switch.map(|l| l.code())));
            // 5–7. Retrieve, generate, check, fall back.
            self.answer(
                &lib,
                &mut out,
                &patient,
                &conversation,
                inbound_message.id,
                &text,
                language,
                patient.reading_level,
                events,
            )
            .await?;
            if let Some(other) = switch {
                dialog.pending_language = Some(other);
                self.template(
                    &lib,
                    &mut out,
                    "language-switch-ask",
                    other,
                    &[("language", native_name(other))],
                );
            }
        }

        if dialog != dialog_before {
            self.store.dialogs().put(org, patient.id, &dialog).await?;
        }
        if out.parts.is_empty() {
            return self.no_reply(org, &patient, "no approved template", started);
        }
        // 8. Record the reply with its provenance.
        out.checks.insert("stage".into(), json!(stage));
        let reply = self
            .record(
                org,
                &patient,
                &conversation,
                inbound_message.id,
                &inbound.reply,
                out,
            )
            .await?;
        if let Some(events) = events {
            let _ = events.send(ReplyEvent::Final(Box::new(reply.clone())));
        }
        tracing::info!(
            organization_id = %org,
            patient_id = %patient.id,
            message_id = %reply.message_id,
            stage,
            source = reply.source.as_str(),
            language = %reply.language,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "conversation reply recorded"
        );
        Ok(Handled::Replied(Box::new(reply)))
    }

    fn no_reply(
        &self,
        org: OrganizationId,
        patient: &Patient,
        reason: &'static str,
        started: Instant,
    ) -> Result<Handled, ConversationError> {
        tracing::info!(
            organization_id = %org,
            patient_id = %patient.id,
            reason,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "conversation: no reply"
        );
        Ok(Handled::NoReply { reason })
    }

    /// The patient behind an address, creating one (in onboarding) for a new sender.
    async fn identify(
        &self,
        org: OrganizationId,
        address: &ChannelAddress,
        text: &str,
    ) -> Result<(Patient, bool), ConversationError> {
        let identities = self.store.channel_identities();
        if let Some(identity) = identities.find_by_address(org, address).await? {
            let patient = self
                .store
                .patients()
                .get(org, identity.patient_id)
                .await?
                .ok_or(ConversationError::Inconsistent(
                    "channel identity without its patient",
                ))?;
            return Ok((patient, false));
        }
        let language = self
            .detector
            .detect(text)
            .filter(|d| d.confidence >= 0.5 && normalize::words(text).len() >= 2)
            .map_or(Language::English, |d| d.language);
        let display_name = "New patient"
            .parse()
            .map_err(|_| ConversationError::Inconsistent("default display name"))?;
        let patient = self
            .store
            .patients()
            .create(
                org,
                NewPatient {
                    display_name,
                    language,
                    reading_level: ReadingLevel::Easy,
                    timezone: self.settings.default_timezone,
                    quiet_hours: None,
                    consent: ConsentState::Pending,
                    tags: Vec::new(),
                },
            )
            .await?;
        identities.link(org, patient.id, address, None).await?;
        tracing::info!(organization_id = %org, patient_id = %patient.id, channel = %address.kind(), "new patient from an unknown sender");
        Ok((patient, true))
    }

    /// The patient's own consent decision (STOP, START, onboarding), audited as theirs.
    async fn set_consent(
        &self,
        patient: &Patient,
        state: ConsentState,
    ) -> Result<Patient, ConversationError> {
        Ok(self
            .store
            .patients()
            .set_consent(
                patient.organization_id,
                patient.id,
                state,
                &Actor::Patient(patient.id),
            )
            .await?)
    }

    async fn set_prefs(
        &self,
        org: OrganizationId,
        patient: &Patient,
        language: Option<Language>,
        level: Option<ReadingLevel>,
    ) -> Result<Patient, ConversationError> {
        Ok(self
            .store
            .patients()
            .update_preferences(
                org,
                patient.id,
                &PatientPreferences {
                    language: language.unwrap_or(patient.language),
                    reading_level: level.unwrap_or(patient.reading_level),
                    timezone: patient.timezone,
                    quiet_hours: patient.quiet_hours,
                },
            )
            .await?)
    }

    fn level_name(&self, level: ReadingLevel, language: Language) -> String {
        self.lexicons
            .get(language)
            .and_then(|l| l.names.get(level.as_str()))
            .and_then(|set| set.phrases.first())
            .map_or_else(|| level.as_str().to_owned(), |p| p.text.clone())
    }

    /// Adds an approved template's text; `false` when the organization has none approved in
    /// this language or in English.
    fn template(
        &self,
        lib: &Library,
        out: &mut Composed,
        key: &str,
        language: Language,
        values: &[(&str, &str)],
    ) -> bool {
        let found = lib
            .template(key, language)
            .or_else(|| lib.template(key, Language::English));
        match found {
            Some(t) => {
                out.push(t.render(values), Some(t.version_id));
                out.language.get_or_insert(t.language);
                out.source
                    .get_or_insert(ReplySource::Template(key.to_owned()));
                true
            }
            None => {
                tracing::warn!(template = key, language = %language, "no approved template");
                false
            }
        }
    }

    /// Records a typed answer to the patient's open reminder and confirms it with the approved
    /// `adherence-*` template (the same rules as a pressed button: `careloop_adherence`).
    async fn answer_reminder(
        &self,
        lib: &Library,
        out: &mut Composed,
        patient: &Patient,
        channel: ChannelKind,
        kind: AdherenceKind,
        occurrence: &careloop_store::ReminderOccurrence,
    ) -> Result<(), ConversationError> {
        let org = patient.organization_id;
        let answered = careloop_adherence::answer(
            &self.store,
            org,
            patient.id,
            careloop_adherence::Answer {
                occurrence: occurrence.id,
                kind,
                channel: Some(channel),
                at: chrono::Utc::now(),
            },
            &self.settings.adherence,
        )
        .await?;
        let medicine = match occurrence.schedule_id {
            Some(id) => self
                .store
                .medication_schedules()
                .get(org, id)
                .await?
                .map(|s| s.medicine_name.as_str().to_owned()),
            None => None,
        }
        .unwrap_or_default();
        let key = match kind {
            AdherenceKind::Taken => "adherence-taken",
            AdherenceKind::Skipped => "adherence-skipped",
            AdherenceKind::Snoozed | AdherenceKind::Missed => "adherence-snoozed",
        };
        self.template(lib, out, key, patient.language, &[("medicine", &medicine)]);
        out.checks.insert(
            "adherence".into(),
            json!({
                "occurrence_id": occurrence.id.to_string(),
                "kind": kind.as_str(),
                "repeated": matches!(answered, careloop_adherence::Answered::Repeated(_)),
            }),
        );
        Ok(())
    }

    async fn alert(
        &self,
        org: OrganizationId,
        patient: &Patient,
        kind: AlertKind,
        category: &str,
        message: MessageId,
    ) -> Result<(), ConversationError> {
        self.store
            .alerts()
            .raise(
                org,
                NewAlert {
                    patient_id: patient.id,
                    kind,
                    category: Some(category.to_owned()),
                    message_id: Some(message),
                    details: json!({}),
                },
            )
            .await?;
        Ok(())
    }

    /// Handles the answer to an open question (onboarding, or LANGUAGE / LEVEL without a value).
    async fn answer_question(
        &self,
        lib: &Library,
        out: &mut Composed,
        dialog: &mut Dialog,
        asked: Question,
        patient: &Patient,
        words: &[String],
    ) -> Result<Patient, ConversationError> {
        let org = patient.organization_id;
        let mut patient = patient.clone();
        let next = match asked {
            Question::Language => match commands::language_named(&self.lexicons, words) {
                Some(language) => {
                    patient = self.set_prefs(org, &patient, Some(language), None).await?;
                    Some(Question::Condition)
                }
                None => None,
            },
            Question::Condition => match self.condition_named(words, patient.language) {
                Some(code) => {
                    let info = self.reference.condition(&code);
                    let name = info.map_or(code.as_str(), |c| c.name(Language::English));
                    let condition = self.store.conditions().upsert(&code, name).await?;
                    self.store
                        .patients()
                        .add_condition(org, patient.id, condition.id)
                        .await?;
                    Some(Question::Level)
                }
                None => None,
            },
            Question::Level => match commands::level_named(&self.lexicons, words) {
                Some(level) => {
                    patient = self.set_prefs(org, &patient, None, Some(level)).await?;
                    Some(Question::Consent)
                }
                None => None,
            },
            Question::Consent => {
                match commands::yes_no(&self.lexicons, &words.join(" "), patient.language) {
                    Some(yes) => {
                        let state = if yes {
                            ConsentState::Granted
                        } else {
                            ConsentState::Withdrawn
                        };
                        patient = self.set_consent(&patient, state).await?;
                        let key = if yes {
                            "onboarding-done"
                        } else {
                            "onboarding-declined"
                        };
                        let conditions = self
                            .store
                            .patients()
                            .list_conditions(org, patient.id)
                            .await?;
                        let name = conditions
                            .first()
                            .and_then(|c| self.reference.condition(&c.code))
                            .map_or("", |c| c.name(patient.language))
                            .to_owned();
                        *dialog = Dialog::default();
                        self.template(lib, out, key, patient.language, &[("condition", &name)]);
                        return Ok(patient);
                    }
                    None => None,
                }
            }
        };
        match next {
            None => {
                // Not understood: ask the same question again.
                self.template(lib, out, question_template(asked), patient.language, &[]);
            }
            Some(next) if dialog.onboarding => {
                dialog.asked = Some(next);
                self.template(lib, out, question_template(next), patient.language, &[]);
            }
            Some(_) => {
                *dialog = Dialog::default();
                match asked {
                    Question::Language => {
                        let l = patient.language;
                        self.template(
                            lib,
                            out,
                            "language-changed",
                            l,
                            &[("language", native_name(l))],
                        );
                    }
                    _ => {
                        let name = self.level_name(patient.reading_level, patient.language);
                        self.template(
                            lib,
                            out,
                            "level-changed",
                            patient.language,
                            &[("level", &name)],
                        );
                    }
                }
            }
        }
        Ok(patient)
    }

    /// A condition chosen by its number in the onboarding list or by its name.
    fn condition_named(&self, words: &[String], language: Language) -> Option<Slug> {
        if let [only] = words
            && let Ok(n) = only.parse::<usize>()
        {
            return n
                .checked_sub(1)
                .and_then(|i| self.reference.conditions.get(i))
                .map(|c| c.code.clone());
        }
        let said = words.join(" ");
        if said.is_empty() {
            return None;
        }
        self.reference
            .conditions
            .iter()
            .find(|c| {
                let name = normalize::normalized(c.name(language));
                name == said || (said.len() >= 4 && name.contains(&said))
            })
            .map(|c| c.code.clone())
    }

    /// The patient's last message before `current` that was not a command.
    async fn last_question(
        &self,
        org: OrganizationId,
        conversation: &Conversation,
        current: MessageId,
    ) -> Result<Option<String>, ConversationError> {
        let messages = self
            .store
            .messages()
            .list_messages(org, conversation.id, 20)
            .await?;
        Ok(messages
            .into_iter()
            .rev()
            .filter(|m| m.id != current && m.direction == MessageDirection::Inbound)
            .map(|m| m.body)
            .find(|body| {
                !body.starts_with('[')
                    && commands::command(&self.lexicons, body, Language::English).is_none()
            }))
    }

    async fn history(
        &self,
        org: OrganizationId,
        conversation: &Conversation,
        current: MessageId,
    ) -> Result<Vec<Turn>, ConversationError> {
        let messages = self
            .store
            .messages()
            .list_messages(org, conversation.id, self.settings.history_messages + 1)
            .await?;
        Ok(messages
            .into_iter()
            .filter(|m| m.id != current)
            .map(|m| Turn {
                from_patient: m.direction == MessageDirection::Inbound,
                text: m.body,
            })
            .collect())
    }

    /// Steps 5–7: retrieve approved passages, generate (twice at most), check, fall back.
    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        lib: &Library,
        out: &mut Composed,
        patient: &Patient,
        conversation: &Conversation,
        current: MessageId,
        question: &str,
        language: Language,
        level: ReadingLevel,
        events: Option<&UnboundedSender<ReplyEvent>>,
    ) -> Result<(), ConversationError> {
        let org = patient.organization_id;
        let conditions: Vec<Slug> = self
            .store
            .patients()
            .list_conditions(org, patient.id)
            .await?
            .into_iter()
            .map(|c| c.code)
            .collect();
        let hits = lib.search(&Query {
            text: question,
            language,
            level,
            conditions: &conditions,
            limit: self.settings.passages,
        });
        out.checks.insert(
            "retrieval".into(),
            json!(hits.iter().map(|h| json!({"topic": h.article.topic.as_str(), "condition": h.article.condition.as_str(), "score": h.score})).collect::<Vec<_>>()),
        );
        let passages: Vec<&Article> = hits.iter().map(|h| h.article).collect();
        let Some(best) = passages.first().copied() else {
            self.template(lib, out, "no-answer", language, &[]);
            return Ok(());
        };
        let condition_name = conditions
            .first()
            .and_then(|c| self.reference.condition(c))
            .map(|c| c.name(Language::English).to_owned());
        let history = self.history(org, conversation, current).await?;

        let mut attempts = Vec::new();
        for strict in [false, true] {
            let messages = prompt::answer_messages(
                question,
                language,
                level,
                condition_name.as_deref(),
                &passages,
                &history,
                strict,
            );
            let prompt_version = if strict {
                prompt::STRICT_PROMPT
            } else {
                prompt::ANSWER_PROMPT
            };
            match self.generate(messages, events).await {
                Ok((draft, model_id)) => {
                    let report = checks::check(
                        &draft,
                        language,
                        level,
                        &passages,
                        &self.detector,
                        &self.lexicons,
                    );
                    attempts.push(json!({"prompt": prompt_version, "checks": report.to_json()}));
                    out.model_id = Some(model_id);
                    if report.passed() {
                        out.prompt_version = Some(prompt_version.to_owned());
                        out.checks.insert("attempts".into(), json!(attempts));
                        out.push(draft.trim().to_owned(), None);
                        out.content_versions
                            .extend(passages.iter().map(|a| a.version_id));
                        out.language = Some(language);
                        out.source = Some(ReplySource::Model);
                        self.disclaimer(lib, out, language);
                        return Ok(());
                    }
                    if let Some(events) = events {
                        let _ = events.send(ReplyEvent::Retract);
                    }
                }
                Err(e) => {
                    if let Some(events) = events {
                        let _ = events.send(ReplyEvent::Retract);
                    }
                    attempts.push(json!({"prompt": prompt_version, "error": e.to_string()}));
                    break;
                }
            }
        }
        // Fallback: the best approved article at this language and level.
        out.checks.insert("attempts".into(), json!(attempts));
        out.push(best.body.clone(), Some(best.version_id));
        out.language = Some(language);
        out.source = Some(ReplySource::Article);
        self.disclaimer(lib, out, language);
        Ok(())
    }

    fn disclaimer(&self, lib: &Library, out: &mut Composed, language: Language) {
        if let Some(t) = lib.template("disclaimer", language) {
            // Parts are joined by a blank line, so the footer starts with `FOOTER`.
            out.push(
                format!("{}{}", FOOTER.trim_start(), t.body),
                Some(t.version_id),
            );
        }
    }

    async fn generate(
        &self,
        messages: Vec<ChatMessage>,
        events: Option<&UnboundedSender<ReplyEvent>>,
    ) -> Result<(String, String), LlmError> {
        let request = GenerationRequest::new(messages)
            .with_max_tokens(self.settings.max_reply_tokens)
            .with_timeout(self.settings.generation_timeout);
        let mut stream = self.llm.generate(request).await?;
        while let Some(event) = stream.next().await {
            match event? {
                GenerationEvent::Token(t) => {
                    if let Some(events) = events {
                        let _ = events.send(ReplyEvent::Draft(t));
                    }
                }
                GenerationEvent::Reset => {
                    if let Some(events) = events {
                        let _ = events.send(ReplyEvent::Retract);
                    }
                }
                GenerationEvent::Done(c) => return Ok((c.text, c.model_id)),
            }
        }
        Err(LlmError::ModelFailure(
            "the answer stream ended without a result".into(),
        ))
    }

    async fn record(
        &self,
        org: OrganizationId,
        patient: &Patient,
        conversation: &Conversation,
        inbound: MessageId,
        delivery: &ReplyDelivery,
        out: Composed,
    ) -> Result<Reply, ConversationError> {
        let language = out.language.unwrap_or(patient.language);
        let source = out.source.unwrap_or(ReplySource::Template(String::new()));
        let mut checks = out.checks;
        checks.insert("source".into(), json!(source.as_str()));
        if let ReplySource::Template(key) = &source {
            checks.insert("template".into(), json!(key));
        }
        let provenance = Provenance {
            content_version_ids: out.content_versions,
            model_id: out.model_id.filter(|_| source == ReplySource::Model),
            prompt_version: out.prompt_version,
            checks,
        };
        let text = out.parts.join("\n\n");
        let message = self
            .store
            .messages()
            .append_message(
                org,
                NewMessage {
                    conversation_id: conversation.id,
                    direction: MessageDirection::Outbound,
                    status: MessageStatus::Queued,
                    body: text.clone(),
                    language: Some(language),
                    idempotency_key: Some(format!("reply:{inbound}")),
                    provenance: Some(provenance.clone()),
                    delivery_meta: delivery.meta.clone(),
                    hold_until: delivery
                        .hold
                        .and_then(|hold| chrono::Duration::from_std(hold).ok())
                        .map(|hold| chrono::Utc::now() + hold),
                },
            )
            .await?
            .into_inner();
        Ok(Reply {
            message_id: message.id,
            conversation: conversation.clone(),
            text,
            language,
            source,
            provenance,
        })
    }
}

fn question_template(question: Question) -> &'static str {
    match question {
        Question::Language => "onboarding-language",
        Question::Condition => "onboarding-condition",
        Question::Level => "onboarding-level",
        Question::Consent => "onboarding-consent",
    }
}
