//! Shared set-up: a SQLite store with the repository's seed content imported and approved, the
//! real lexicons and reference data, and a language detector loaded once per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use careloop_conversation::{
    ConversationEngine, EngineSettings, Handled, Inbound, InboundContent, Reply,
    language::Detector, lexicon::Lexicons, reference::Reference,
};
use careloop_core::{ChannelKind, ConsentState, Language, OrganizationId, ReadingLevel, TimeZone};
use careloop_llm_api::testing::ScriptedLlm;
use careloop_llm_api::{GenerationRequest, LlmError, LlmService, TokenStream};
use careloop_store::{ChannelAddress, NewPatient, Patient, Store};
use futures::future::BoxFuture;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub static DETECTOR: LazyLock<Arc<Detector>> = LazyLock::new(|| Arc::new(Detector::new()));

/// The seed content the engine tests use: every template, and articles in English and Spanish.
fn test_documents() -> Vec<careloop_content::ContentDocument> {
    careloop_content::load_dir(&repo().join("content"))
        .expect("the repository's content loads")
        .into_iter()
        .filter(|d| {
            d.kind == careloop_core::ContentKind::Template
                || matches!(d.language, Language::English | Language::Spanish)
        })
        .collect()
}

/// A migrated SQLite file with the test content imported once per test binary; each test
/// copies it, so tests do not share a database.
static TEMPLATE_DB: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("template.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    // Tests run inside a runtime, which cannot block on another: set up on a thread of its own.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = Store::connect(&url).await.unwrap();
            store.migrate().await.unwrap();
            let org = store
                .organizations()
                .create("Test clinic", &"test".parse().unwrap())
                .await
                .unwrap();
            store
                .content()
                .import_documents(org.id, &test_documents(), true)
                .await
                .unwrap();
            store.connection().clone().close().await.unwrap();
        });
    })
    .join()
    .unwrap();
    (dir, path)
});

/// Counts model calls, so tests can prove the model was never asked, and keeps the last
/// request, so tests can read the prompt.
pub struct CountingLlm {
    pub inner: ScriptedLlm,
    pub calls: AtomicUsize,
    pub last: std::sync::Mutex<Option<GenerationRequest>>,
}

impl LlmService for CountingLlm {
    fn generate(&self, req: GenerationRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(req.clone());
        }
        self.inner.generate(req)
    }
    fn model_id(&self) -> String {
        self.inner.model_id()
    }
    fn is_ready(&self) -> bool {
        true
    }
}

pub struct Harness {
    _dir: tempfile::TempDir,
    pub store: Store,
    pub org: OrganizationId,
    pub engine: ConversationEngine,
    pub llm: Arc<CountingLlm>,
}

/// A model that always answers with `answer`, token by token (one word per token).
pub fn scripted(answer: &str) -> ScriptedLlm {
    let words: Vec<String> = answer.split_inclusive(' ').map(str::to_owned).collect();
    ScriptedLlm::new("test-model", words)
}

impl Harness {
    pub async fn new(llm: ScriptedLlm) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("careloop.db");
        std::fs::copy(&TEMPLATE_DB.1, &path).unwrap();
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        let org = store
            .organizations()
            .find_by_slug(&"test".parse().unwrap())
            .await
            .unwrap()
            .unwrap()
            .id;
        let llm = Arc::new(CountingLlm {
            inner: llm,
            calls: AtomicUsize::new(0),
            last: std::sync::Mutex::new(None),
        });
        let engine = ConversationEngine::new(
            store.clone(),
            llm.clone(),
            Lexicons::load_dir(&repo().join("content/safety")).unwrap(),
            Reference::load(&repo().join("content")).unwrap(),
            Arc::clone(&DETECTOR),
            EngineSettings::default(),
        );
        Harness {
            _dir: dir,
            store,
            org,
            engine,
            llm,
        }
    }

    pub fn model_calls(&self) -> usize {
        self.llm.calls.load(Ordering::SeqCst)
    }

    /// A patient who finished onboarding, reachable on Telegram chat `chat`.
    pub async fn patient(
        &self,
        chat: i64,
        language: Language,
        level: ReadingLevel,
        condition: &str,
    ) -> Patient {
        let patient = self
            .store
            .patients()
            .create(
                self.org,
                NewPatient {
                    display_name: "Test patient".parse().unwrap(),
                    language,
                    reading_level: level,
                    timezone: "America/New_York".parse::<TimeZone>().unwrap(),
                    quiet_hours: None,
                    consent: ConsentState::Granted,
                    tags: vec![],
                },
            )
            .await
            .unwrap();
        self.store
            .channel_identities()
            .link(self.org, patient.id, &telegram(chat), None)
            .await
            .unwrap();
        let condition = self
            .store
            .conditions()
            .upsert(&condition.parse().unwrap(), condition)
            .await
            .unwrap();
        self.store
            .patients()
            .add_condition(self.org, patient.id, condition.id)
            .await
            .unwrap();
        patient
    }

    pub async fn send(&self, chat: i64, text: &str) -> Handled {
        self.send_content(chat, InboundContent::Text(text.to_owned()), None)
            .await
    }

    /// The messages of the last model request, as (role, text).
    pub fn last_prompt(&self) -> Vec<(String, String)> {
        let last = self.llm.last.lock().unwrap();
        last.as_ref()
            .map(|r| {
                r.messages
                    .iter()
                    .map(|m| (format!("{:?}", m.role), m.content.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn send_content(
        &self,
        chat: i64,
        content: InboundContent,
        key: Option<&str>,
    ) -> Handled {
        self.engine
            .handle(
                Inbound {
                    organization_id: self.org,
                    address: telegram(chat),
                    content,
                    idempotency_key: key.map(str::to_owned),
                    reply: Default::default(),
                    rate_limited: false,
                },
                None,
            )
            .await
            .unwrap()
    }

    /// Sends a full inbound message (rate limit, delivery options) for this chat.
    pub async fn send_inbound(
        &self,
        chat: i64,
        content: InboundContent,
        rate_limited: bool,
        reply: careloop_conversation::ReplyDelivery,
    ) -> Handled {
        self.engine
            .handle(
                Inbound {
                    organization_id: self.org,
                    address: telegram(chat),
                    content,
                    idempotency_key: None,
                    reply,
                    rate_limited,
                },
                None,
            )
            .await
            .unwrap()
    }

    /// Sends a text and collects every event the engine streams for it.
    pub async fn stream(&self, chat: i64, text: &str) -> Vec<careloop_conversation::ReplyEvent> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let inbound = Inbound {
            organization_id: self.org,
            address: telegram(chat),
            content: InboundContent::Text(text.to_owned()),
            idempotency_key: None,
            reply: Default::default(),
            rate_limited: false,
        };
        self.engine.handle(inbound, Some(&tx)).await.unwrap();
        drop(tx);
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    }

    /// Sends and expects a reply.
    pub async fn ask(&self, chat: i64, text: &str) -> Reply {
        match self.send(chat, text).await {
            Handled::Replied(reply) => *reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    pub async fn patient_by_chat(&self, chat: i64) -> Patient {
        let identity = self
            .store
            .channel_identities()
            .find_by_address(self.org, &telegram(chat))
            .await
            .unwrap()
            .unwrap();
        self.store
            .patients()
            .get(self.org, identity.patient_id)
            .await
            .unwrap()
            .unwrap()
    }

    /// The body of the approved template `key` in `language`.
    pub async fn template(&self, key: &str, language: Language) -> String {
        let lib = self.engine.library(self.org).await.unwrap();
        lib.template(key, language).unwrap().body.clone()
    }
}

pub fn telegram(chat: i64) -> ChannelAddress {
    ChannelAddress::parse(ChannelKind::Telegram, &chat.to_string()).unwrap()
}

/// The first line of a template, enough to recognise it in a reply.
pub fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}
