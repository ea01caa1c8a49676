//! `careloop eval conversation`: the conversation engine's numbers for BENCHMARKS.md — triage and
//! retrieval on the labelled sets, latency of the non-model path, and (with `--with-model`) how
//! the default model's answers fare through the checks.
//!
//! It runs in a throw-away SQLite database with the seed content approved, never the configured
//! one, and prints Markdown.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use careloop_config::Settings;
use careloop_conversation::{
    ConversationEngine, EngineSettings, Handled, Inbound, InboundContent, ReplySource, eval,
    language::Detector, lexicon::Lexicons, library::Library, reference::Reference,
};
use careloop_core::{ChannelKind, ConsentState, Language, OrganizationId, ReadingLevel};
use careloop_llm_api::{GenerationRequest, LlmError, LlmService, TokenStream};
use careloop_store::{ChannelAddress, NewPatient, Store};
use futures::future::BoxFuture;

/// A model that is never there: every answer falls back to approved content.
struct NoModel;

impl LlmService for NoModel {
    fn generate(&self, _req: GenerationRequest) -> BoxFuture<'_, Result<TokenStream, LlmError>> {
        Box::pin(async { Err(LlmError::NotReady) })
    }
    fn model_id(&self) -> String {
        "none".into()
    }
    fn is_ready(&self) -> bool {
        false
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    store: Store,
    org: OrganizationId,
    lexicons: Lexicons,
    reference: Reference,
    detector: Arc<Detector>,
    next_chat: i64,
}

impl Bench {
    async fn new(content: &Path) -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir()?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("eval.sqlite").display()
        );
        let store = Store::connect(&url).await?;
        store.migrate().await?;
        let org = store
            .organizations()
            .create("Evaluation", &"eval".parse()?)
            .await?
            .id;
        let docs = careloop_content::load_dir(content)
            .map_err(|e| anyhow::anyhow!("{} problem(s) in content files", e.len()))?;
        store.content().import_documents(org, &docs, true).await?;
        Ok(Bench {
            _dir: dir,
            store,
            org,
            lexicons: Lexicons::load_dir(&content.join("safety"))?,
            reference: Reference::load(content)?,
            detector: Arc::new(tokio::task::spawn_blocking(Detector::new).await?),
            next_chat: 1,
        })
    }

    fn engine(&self, llm: Arc<dyn LlmService>) -> ConversationEngine {
        ConversationEngine::new(
            self.store.clone(),
            llm,
            self.lexicons.clone(),
            self.reference.clone(),
            Arc::clone(&self.detector),
            EngineSettings::default(),
        )
    }

    /// A patient done with onboarding, on a Telegram chat of their own.
    async fn patient(
        &mut self,
        language: Language,
        level: ReadingLevel,
        condition: &str,
    ) -> anyhow::Result<ChannelAddress> {
        let chat = self.next_chat;
        self.next_chat += 1;
        let patient = self
            .store
            .patients()
            .create(
                self.org,
                NewPatient {
                    display_name: "Evaluation patient".parse()?,
                    language,
                    reading_level: level,
                    timezone: "Europe/Berlin".parse()?,
                    quiet_hours: None,
                    consent: ConsentState::Granted,
                    tags: vec![],
                },
            )
            .await?;
        let address = ChannelAddress::parse(ChannelKind::Telegram, &chat.to_string())?;
        self.store
            .channel_identities()
            .link(self.org, patient.id, &address, None)
            .await?;
        if let Ok(code) = condition.parse() {
            let c = self.store.conditions().upsert(&code, condition).await?;
            self.store
                .patients()
                .add_condition(self.org, patient.id, c.id)
                .await?;
        }
        Ok(address)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

pub async fn conversation(
    settings: &Settings,
    with_model: Option<Arc<dyn LlmService>>,
    limit: Option<usize>,
) -> anyhow::Result<String> {
    let content = settings.content.dir.clone();
    let labelled = content
        .parent()
        .unwrap_or(Path::new("."))
        .join("tests/labelled");
    let mut bench = Bench::new(&content)
        .await
        .context("setting up the evaluation database")?;
    let mut md = String::new();

    // Triage.
    let cases = eval::triage_cases(&labelled)?;
    let t = eval::score_triage(&bench.lexicons, &cases);
    writeln!(
        md,
        "### Safety triage ({} labelled messages, 6 languages)\n",
        t.cases
    )?;
    writeln!(md, "| measure | result | target |\n| --- | --- | --- |")?;
    writeln!(
        md,
        "| urgent recall | {:.1}% ({}/{}) | 100% |",
        t.urgent_recall() * 100.0,
        t.urgent_caught,
        t.urgent
    )?;
    writeln!(
        md,
        "| dosing recall | {:.1}% ({}/{}) | ≥ 95% |",
        t.dosing_recall() * 100.0,
        t.dosing_caught,
        t.dosing
    )?;
    writeln!(
        md,
        "| false alarms on ordinary messages | {:.1}% ({}/{}) | ≤ 5% |\n",
        t.false_alarm_rate() * 100.0,
        t.false_alarms,
        t.ordinary
    )?;

    // Retrieval.
    let docs = careloop_content::load_dir(&content)
        .map_err(|e| anyhow::anyhow!("{} content problem(s)", e.len()))?;
    let library = Library::from_documents(&docs);
    let questions = eval::questions(&labelled)?;
    writeln!(
        md,
        "### Retrieval ({} labelled questions, 6 languages, BM25 with per-language stemming)\n",
        questions.len()
    )?;
    writeln!(
        md,
        "| level | top-1 | top-3 | top-3 knowing the patient's condition |\n| --- | --- | --- | --- |"
    )?;
    for level in [ReadingLevel::Easy, ReadingLevel::Standard] {
        let r = eval::score_retrieval(&library, &questions, level);
        writeln!(
            md,
            "| {level} | {:.1}% | {:.1}% | {:.1}% |",
            r.top1_rate() * 100.0,
            r.top3_rate() * 100.0,
            r.top3_with_profile_rate() * 100.0
        )?;
    }
    writeln!(md)?;

    // Latency of the non-model path: commands, triage replies, fallback answers.
    let engine = bench.engine(Arc::new(NoModel));
    let mut addresses = Vec::new();
    for &language in Language::ALL {
        addresses.push((
            language,
            bench
                .patient(language, ReadingLevel::Easy, "asthma")
                .await?,
        ));
    }
    let address_of = |l: Language| {
        addresses
            .iter()
            .find(|(x, _)| *x == l)
            .map(|(_, a)| a.clone())
    };
    let mut triage_and_commands: Vec<(Language, String)> =
        cases.iter().map(|(l, c)| (*l, c.text.clone())).collect();
    for &language in Language::ALL {
        triage_and_commands.push((language, "HELP".into()));
    }
    let fallback: Vec<(Language, String)> = questions
        .iter()
        .map(|(l, q)| (*l, q.text.clone()))
        .collect();
    // Warm-up: the library load and lingua's first call are start-up costs, not per message.
    if let Some(address) = address_of(Language::English) {
        engine
            .handle(inbound(bench.org, address, "hello there"), None)
            .await?;
    }
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for (name, messages) in [
        ("triage replies and commands", &triage_and_commands),
        ("answers from approved content (no model)", &fallback),
    ] {
        let mut timings = Vec::new();
        for (language, text) in messages {
            let Some(address) = address_of(*language) else {
                continue;
            };
            let started = Instant::now();
            engine
                .handle(inbound(bench.org, address, text), None)
                .await?;
            timings.push(started.elapsed());
        }
        timings.sort();
        all.extend(timings.iter().copied());
        rows.push((name, timings));
    }
    all.sort();
    rows.push(("all", all));
    writeln!(
        md,
        "### Latency of the non-model path (whole `handle()`: store reads and writes on SQLite included)\n"
    )?;
    writeln!(
        md,
        "| messages | count | p50 | p99 | max |\n| --- | --- | --- | --- | --- |"
    )?;
    for (name, timings) in &rows {
        writeln!(
            md,
            "| {name} | {} | {} ms | {} ms | {} ms |",
            timings.len(),
            ms(percentile(timings, 50.0)),
            ms(percentile(timings, 99.0)),
            ms(timings.last().copied().unwrap_or_default())
        )?;
    }
    writeln!(md, "\nTarget: p99 under 10 ms.\n")?;

    // Final replies with the model.
    if let Some(llm) = with_model {
        let model_id = llm.model_id();
        let engine = bench.engine(llm);
        let (mut total, mut by_model, mut right_language, mut in_band) =
            (0usize, 0usize, 0usize, 0usize);
        let mut gen_time = Duration::ZERO;
        // A limit samples evenly across the set, so every language stays in it.
        let step = limit.map_or(1, |n| (questions.len() / n.max(1)).max(1));
        let take = limit.unwrap_or(usize::MAX);
        for (i, (language, q)) in questions.iter().step_by(step).take(take).enumerate() {
            let level = if i % 2 == 0 {
                ReadingLevel::Easy
            } else {
                ReadingLevel::Standard
            };
            let address = bench.patient(*language, level, &q.condition).await?;
            let started = Instant::now();
            let handled = engine
                .handle(inbound(bench.org, address, &q.text), None)
                .await?;
            gen_time += started.elapsed();
            let Handled::Replied(reply) = handled else {
                continue;
            };
            total += 1;
            by_model += usize::from(reply.source == ReplySource::Model);
            let text = reply.answer_text();
            right_language +=
                usize::from(reply.language == *language && bench.detector.is_in(text, *language));
            in_band += usize::from(careloop_literacy::assess(text, *language).fits(level));
        }
        let pct = |n: usize| {
            if total == 0 {
                0.0
            } else {
                n as f64 * 100.0 / total as f64
            }
        };
        writeln!(
            md,
            "### Final replies on the labelled questions with `{model_id}` (half easy, half standard)\n"
        )?;
        writeln!(
            md,
            "| replies | answered by the model | by approved fallback | right language | within the reading band | mean time per reply |\n| --- | --- | --- | --- | --- | --- |"
        )?;
        writeln!(
            md,
            "| {total} | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.1} s |\n",
            pct(by_model),
            pct(total - by_model),
            pct(right_language),
            pct(in_band),
            if total == 0 {
                0.0
            } else {
                gen_time.as_secs_f64() / total as f64
            },
        )?;
    }
    Ok(md)
}

fn inbound(org: OrganizationId, address: ChannelAddress, text: &str) -> Inbound {
    Inbound {
        organization_id: org,
        address,
        content: InboundContent::Text(text.to_owned()),
        idempotency_key: None,
        reply: Default::default(),
        rate_limited: false,
    }
}
