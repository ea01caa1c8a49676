//! careloop's side of `scripts/bench_reminders.sh`: many reminders due at once on PostgreSQL and
//! Redis, dispatched by the real reminder worker (`careloop_reminders::run`: the due sweeper and
//! the apalis-redis worker, as `careloop serve --roles reminders` runs them).
//!
//! ```text
//! bench_due seed   --database-url URL --count N [--patients P] [--spread-ms S]
//! bench_due run    --database-url URL --redis-url URL --namespace NS --count N
//!                  [--concurrency C] [--lead-ms L] [--timeout-s T]
//! bench_due report --database-url URL
//! ```
//!
//! `seed` migrates a fresh database and writes an organization with the approved templates, `P`
//! consented patients on Telegram with a schedule each, and `N` planned occurrences whose due
//! times are parked in the year 2100, spread over `S` ms (0: all at the same instant). `arm`ing
//! (shared with the BullMQ side, see [`ARM_SQL`]) moves them to start at a chosen instant. `run`
//! starts the worker, arms the occurrences to start `L` ms later, and waits until all are `sent`.
//! `report` prints, as JSON, how late each reminder's work finished (the occurrence's `sent`
//! time minus its due time) and the throughput, from the database alone, so both sides are
//! measured by the same query.
//!
//! Not a test: it runs against whatever database and Redis it is given.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use careloop_config::QueueBackend;
use careloop_core::{ChannelKind, ConsentState, Language, QuietHoursPolicy, TelegramChatId};
use careloop_queue::QueueConnection;
use careloop_store::{ChannelAddress, NewMedicationSchedule, NewPatient, Store};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

/// Where seeded due times are parked until armed.
const PARKED: &str = "2100-01-01T00:00:00Z";

/// Moves parked occurrences to start at `$1` (milliseconds since the epoch), keeping their
/// spread. The BullMQ side (`scripts/bench/bullmq/bench.mjs`) runs the same statement.
const ARM_SQL: &str = "UPDATE reminder_occurrences \
     SET due_at = to_timestamp($1::double precision / 1000) + (due_at - TIMESTAMPTZ '2100-01-01T00:00:00Z') \
     WHERE state = 'planned' AND due_at >= TIMESTAMPTZ '2100-01-01T00:00:00Z'";

/// Lateness and throughput of the `sent` occurrences (seconds). Throughput counts from the
/// first due time to the last finished reminder.
const REPORT_SQL: &str = "SELECT COUNT(*)::bigint AS sent, \
     percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (updated_at - due_at)))::double precision AS p50, \
     percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (updated_at - due_at)))::double precision AS p99, \
     MAX(EXTRACT(EPOCH FROM (updated_at - due_at)))::double precision AS max, \
     MIN(EXTRACT(EPOCH FROM (updated_at - due_at)))::double precision AS min, \
     EXTRACT(EPOCH FROM (MAX(updated_at) - MIN(due_at)))::double precision AS span, \
     EXTRACT(EPOCH FROM (MAX(due_at) - MIN(due_at)))::double precision AS due_span \
     FROM reminder_occurrences WHERE state = 'sent'";

struct Args(Vec<String>);

impl Args {
    fn value(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    fn required(&self, name: &str) -> anyhow::Result<&str> {
        self.value(name)
            .with_context(|| format!("{name} is required"))
    }

    fn number(&self, name: &str, default: u64) -> anyhow::Result<u64> {
        match self.value(name) {
            Some(v) => v
                .parse()
                .with_context(|| format!("{name} must be a number")),
            None => Ok(default),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args(std::env::args().skip(1).collect());
    match args.0.first().map(String::as_str) {
        Some("seed") => seed(&args).await,
        Some("run") => run(&args).await,
        Some("report") => report(&args).await,
        _ => bail!("usage: bench_due seed|run|report --database-url URL …"),
    }
}

async fn seed(args: &Args) -> anyhow::Result<()> {
    let count = args.number("--count", 100_000)?;
    let patients = args.number("--patients", 1000)?.max(1);
    let spread_ms = args.number("--spread-ms", 60_000)?;
    let store = Store::connect(args.required("--database-url")?).await?;
    store.migrate().await?;
    let org = store
        .organizations()
        .create("Bench clinic", &"bench".parse()?)
        .await?
        .id;
    let content = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content");
    let templates: Vec<_> = careloop_content::load_dir(&content)
        .map_err(|e| anyhow::anyhow!("content: {} problems", e.len()))?
        .into_iter()
        .filter(|d| d.kind == careloop_core::ContentKind::Template)
        .collect();
    store
        .content()
        .import_documents(org, &templates, true)
        .await?;
    let languages = [
        Language::English,
        Language::Spanish,
        Language::French,
        Language::German,
        Language::Portuguese,
        Language::Arabic,
    ];
    let yesterday = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    let mut owners = Vec::new();
    for p in 0..patients {
        let patient = store
            .patients()
            .create(
                org,
                NewPatient {
                    display_name: format!("Patient {p}").parse()?,
                    language: languages[p as usize % languages.len()],
                    reading_level: "easy".parse()?,
                    timezone: "Europe/Berlin".parse()?,
                    quiet_hours: None,
                    consent: ConsentState::Granted,
                    tags: vec![],
                },
            )
            .await?;
        store
            .channel_identities()
            .link(
                org,
                patient.id,
                &ChannelAddress::Telegram(TelegramChatId::new(500_000 + p as i64)),
                Some(chrono::Utc::now()),
            )
            .await?;
        let schedule = store
            .medication_schedules()
            .create(
                org,
                NewMedicationSchedule {
                    patient_id: patient.id,
                    medicine_name: "Metformin".parse()?,
                    dose_text: "500 mg with dinner".parse()?,
                    rrule: "FREQ=DAILY;BYHOUR=20;BYMINUTE=0".parse()?,
                    timezone: patient.timezone,
                    starts_on: yesterday,
                    ends_on: Some(yesterday),
                    quiet_hours_policy: QuietHoursPolicy::Delay,
                    channels: vec![ChannelKind::Telegram],
                    created_by: None,
                },
            )
            .await?;
        // Inactive, so the workers' planner (which owns an active schedule's future doses and
        // cancels planned ones its rule does not produce) leaves the bench's doses alone;
        // dispatch does the same work for them.
        store
            .medication_schedules()
            .set_active(org, schedule.id, false)
            .await?;
        owners.push((patient.id, schedule.id));
    }
    // Occurrences in bulk (the planner's own inserts are not what is measured).
    let parked: chrono::DateTime<chrono::Utc> = PARKED.parse()?;
    let db = store.connection();
    let started = Instant::now();
    let chunk = 1000;
    let mut i = 0;
    while i < count {
        let n = chunk.min(count - i);
        let mut sql = String::from(
            "INSERT INTO reminder_occurrences (id, organization_id, schedule_id, patient_id, \
             due_at, state, idempotency_key, created_at, updated_at) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(n as usize * 6);
        let now = chrono::Utc::now();
        for k in 0..n {
            let j = i + k;
            let (patient, schedule) = owners[(j % patients) as usize];
            let offset_us = if count > 1 {
                (spread_ms * 1000 * j / count) as i64
            } else {
                0
            };
            let due = parked + chrono::Duration::microseconds(offset_us);
            let b = values.len();
            if k > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, 'planned', ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8
            ));
            values.extend([
                uuid::Uuid::now_v7().into(),
                org.as_uuid().into(),
                schedule.as_uuid().into(),
                patient.as_uuid().into(),
                due.into(),
                format!("schedule:{schedule}:bench-{j}").into(),
                now.into(),
                now.into(),
            ]);
        }
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?;
        i += n;
    }
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::json!({
            "organization_id": org.to_string(),
            "patients": patients,
            "occurrences": count,
            "spread_ms": spread_ms,
            "insert_seconds": started.elapsed().as_secs_f64(),
        })
    )?;
    Ok(())
}

async fn sent(store: &Store) -> anyhow::Result<i64> {
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COUNT(*)::bigint AS n FROM reminder_occurrences WHERE state = 'sent'",
        ))
        .await?
        .context("no count")?;
    Ok(row.try_get("", "n")?)
}

async fn run(args: &Args) -> anyhow::Result<()> {
    // Quiet unless RUST_LOG asks (e.g. `careloop_reminders=debug` for batch sizes and times).
    careloop_telemetry::init(false, "warn")?;
    let count = args.number("--count", 100_000)? as i64;
    let concurrency = args.number("--concurrency", 32)? as usize;
    let lead_ms = args.number("--lead-ms", 3000)?;
    let timeout = Duration::from_secs(args.number("--timeout-s", 600)?);
    let store = Store::connect(args.required("--database-url")?).await?;
    let queue = QueueConnection::connect(
        &QueueBackend::Redis {
            url: args.required("--redis-url")?.to_owned().into(),
        },
        args.required("--namespace")?,
    )
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(careloop_reminders::run(
        queue,
        store.clone(),
        concurrency,
        async move {
            let _ = stop_rx.await;
        },
    ));
    // Let the worker register and go idle, then make the reminders due `lead_ms` from now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = chrono::Utc::now() + chrono::Duration::milliseconds(lead_ms as i64);
    let armed = store
        .connection()
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            ARM_SQL,
            [(t0.timestamp_millis() as f64).into()],
        ))
        .await?
        .rows_affected();
    if armed != count as u64 {
        bail!("armed {armed} occurrences, expected {count}");
    }
    let started = Instant::now();
    let mut last = 0;
    loop {
        let n = sent(&store).await?;
        if n >= count {
            break;
        }
        if started.elapsed() > timeout {
            bail!("only {n} of {count} sent within {timeout:?}");
        }
        if n / 10_000 != last / 10_000 {
            eprintln!("careloop: {n} sent");
        }
        last = n;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    worker.await??;
    Ok(())
}

async fn report(args: &Args) -> anyhow::Result<()> {
    let store = Store::connect(args.required("--database-url")?).await?;
    let row = store
        .connection()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, REPORT_SQL))
        .await?
        .context("no report")?;
    let sent: i64 = row.try_get("", "sent")?;
    let span: f64 = row.try_get("", "span")?;
    let messages = store
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COUNT(*)::bigint AS n FROM messages WHERE idempotency_key LIKE 'reminder:%'",
        ))
        .await?
        .context("no count")?
        .try_get::<i64>("", "n")?;
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::json!({
            "sent": sent,
            "messages": messages,
            "lateness_p50_s": row.try_get::<f64>("", "p50")?,
            "lateness_p99_s": row.try_get::<f64>("", "p99")?,
            "lateness_max_s": row.try_get::<f64>("", "max")?,
            "lateness_min_s": row.try_get::<f64>("", "min")?,
            "span_s": span,
            "due_span_s": row.try_get::<f64>("", "due_span")?,
            "per_second": if span > 0.0 { sent as f64 / span } else { 0.0 },
        })
    )?;
    Ok(())
}
