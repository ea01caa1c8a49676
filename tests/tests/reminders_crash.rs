//! Crash test for reminders (issue 6): 10,000 reminders come due at once; the reminder worker
//! processes (`careloop serve --roles reminders`) are killed with SIGKILL several times at
//! random moments while they dispatch, and started again; at the end every reminder reached the
//! (fake) Telegram Bot API exactly once and every occurrence is `sent`.
//!
//! What this proves, and what it does not:
//!
//! * The processes killed are the reminder workers: the due sweeper (claims occurrences and
//!   enqueues jobs of up to 64 reminders) and the apalis worker (turns a job's reminders into outbox
//!   messages, one transaction per job). A kill can land
//!   between claiming and enqueueing, while jobs are fetched and locked, in the middle of a
//!   dispatch (message stored but occurrence not yet `sent`), or before a job is acknowledged.
//!   Recovery is the real one: apalis re-enqueues the jobs of a worker whose heartbeats stopped,
//!   the sweeper re-enqueues occurrences left in `dispatching`, and a repeated job finds the
//!   message by its idempotency key (`reminder:<occurrence key>`) instead of making a second.
//! * A second scale-out run kills the queue's Redis instead and starts it again empty (this
//!   project's Redis keeps nothing on disk): every job it held is lost, and the occurrences
//!   left in `dispatching` are enqueued again by the sweeper once stale.
//! * The gateway (the outbox that talks to Telegram) is not killed. The outbox → Telegram hop is
//!   at-least-once: Telegram's `sendMessage` has no idempotency key, so a gateway that dies after
//!   Telegram accepted a message and before recording it `sent` sends it again once its lease
//!   runs out. That window (one HTTP round trip per message) is not covered here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use careloop_channels::telegram::fake::{FakeTelegram, Recorded};
use careloop_core::{
    ChannelKind, ConsentState, Language, OrganizationId, QuietHoursPolicy, ReminderOccurrenceId,
    TelegramChatId,
};
use careloop_e2e::{Careloop, TestDatabase};
use careloop_store::{
    ChannelAddress, NewMedicationSchedule, NewPatient, NewReminderOccurrence, Store,
};
use sea_orm::{ConnectionTrait, Statement};

const REMINDERS: usize = 10_000;
const PATIENTS: usize = 500;
const KILLS: usize = 5;
/// Worker processes running at once (each killed in turn).
const WORKERS: usize = 2;
const TOKEN: &str = "123456:CRASH-token";
/// Everything must be delivered within this, kills and recoveries included.
const DEADLINE: Duration = Duration::from_secs(420);

/// The two crash tests share two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A small deterministic generator (xorshift64*), seeded per run and printed, so a failing
/// schedule of kills can be replayed with `CARELOOP_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("CARELOOP_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0 | 1);
        (Rng(seed), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[lo, hi)`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// Where one run keeps its data and queue.
struct Backend {
    name: &'static str,
    /// Environment shared by every process of the run (storage, queue, channels).
    env: Vec<(&'static str, String)>,
    database_url: String,
}

fn process_env(backend: &Backend, fake: &FakeTelegram) -> Vec<(&'static str, String)> {
    let mut env = backend.env.clone();
    env.extend([
        ("CARELOOP_LOG__FILTER", "warn".to_owned()),
        ("CARELOOP_CHANNELS__TELEGRAM__ENABLED", "true".to_owned()),
        ("CARELOOP_CHANNELS__TELEGRAM__TOKEN", TOKEN.to_owned()),
        ("CARELOOP_CHANNELS__TELEGRAM__API_URL", fake.api_url()),
        ("CARELOOP_CHANNELS__TELEGRAM__MODE", "webhook".to_owned()),
        (
            "CARELOOP_CHANNELS__TELEGRAM__WEBHOOK_SECRET",
            "crash-secret-0123456789".to_owned(),
        ),
        (
            "CARELOOP_CHANNELS__TELEGRAM__WEBHOOK_URL",
            "https://careloop.example/channels/telegram/webhook".to_owned(),
        ),
        // The fake Bot API has no rate limit; Telegram's (30/s per bot) would make this test
        // about the limiter, not about crashes.
        (
            "CARELOOP_CHANNELS__TELEGRAM__PER_BOT_PER_SECOND",
            "100000".to_owned(),
        ),
        (
            "CARELOOP_CHANNELS__TELEGRAM__PER_CHAT_PER_SECOND",
            "1000".to_owned(),
        ),
        (
            "CARELOOP_CHANNELS__OUTBOX__POLL_INTERVAL_MS",
            "200".to_owned(),
        ),
        ("CARELOOP_QUEUE__CONCURRENCY", "16".to_owned()),
    ]);
    env
}

/// `count(*)` of occurrences per state.
async fn states(store: &Store) -> HashMap<String, i64> {
    let db = store.connection();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT state, COUNT(*) AS n FROM reminder_occurrences GROUP BY state",
        ))
        .await
        .unwrap();
    rows.into_iter()
        .map(|r| {
            (
                r.try_get::<String>("", "state").unwrap(),
                r.try_get::<i64>("", "n").unwrap(),
            )
        })
        .collect()
}

/// The occurrence each reminder the fake Telegram received was for (its buttons carry
/// `reminder:<occurrence id>:<action>`), with the chat it went to.
fn delivered(fake: &FakeTelegram) -> Vec<(ReminderOccurrenceId, i64)> {
    fake.log()
        .into_iter()
        .filter_map(|r| match r {
            Recorded::Sent {
                chat_id, buttons, ..
            } => buttons.first().and_then(|(_, data)| {
                let id = data.strip_prefix("reminder:")?.split(':').next()?;
                Some((id.parse().ok()?, chat_id))
            }),
            Recorded::Edited { .. } => None,
        })
        .collect()
}

/// Consented patients with a Telegram chat and a schedule each, and `reminders` occurrences due
/// now spread over them, written through the store as the planner would. Returns each
/// occurrence's chat.
async fn seed(
    store: &Store,
    org: OrganizationId,
    reminders: usize,
) -> HashMap<ReminderOccurrenceId, i64> {
    let languages = [
        Language::English,
        Language::Spanish,
        Language::French,
        Language::German,
        Language::Portuguese,
        Language::Arabic,
    ];
    // Schedules of one dose a day at 00:00 UTC, today only: that slot has passed, so the
    // workers' planner has nothing to add, and the test's doses (due already) are not its to move.
    let today = chrono::Utc::now().date_naive();
    let due = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut chats = HashMap::with_capacity(reminders);
    for p in 0..PATIENTS {
        let language = languages[p % languages.len()];
        let patient = store
            .patients()
            .create(
                org,
                NewPatient {
                    display_name: format!("Patient {p}").parse().unwrap(),
                    language,
                    reading_level: "easy".parse().unwrap(),
                    timezone: "Europe/Berlin".parse().unwrap(),
                    quiet_hours: None,
                    consent: ConsentState::Granted,
                    tags: vec![],
                },
            )
            .await
            .unwrap();
        let chat = 900_000 + p as i64;
        store
            .channel_identities()
            .link(
                org,
                patient.id,
                &ChannelAddress::Telegram(TelegramChatId::new(chat)),
                Some(chrono::Utc::now()),
            )
            .await
            .unwrap();
        let schedule = store
            .medication_schedules()
            .create(
                org,
                NewMedicationSchedule {
                    patient_id: patient.id,
                    medicine_name: "Metformin".parse().unwrap(),
                    dose_text: format!("{} mg", 250 + p).parse().unwrap(),
                    rrule: "FREQ=DAILY;BYHOUR=0;BYMINUTE=0".parse().unwrap(),
                    timezone: "UTC".parse().unwrap(),
                    starts_on: today,
                    ends_on: Some(today),
                    quiet_hours_policy: QuietHoursPolicy::Delay,
                    channels: vec![ChannelKind::Telegram],
                    created_by: None,
                },
            )
            .await
            .unwrap();
        for d in 0..reminders / PATIENTS {
            let occurrence = store
                .reminder_occurrences()
                .insert_if_absent(
                    org,
                    NewReminderOccurrence {
                        schedule_id: Some(schedule.id),
                        campaign_id: None,
                        patient_id: patient.id,
                        due_at: due,
                        idempotency_key: format!("schedule:{}:crash-{d}", schedule.id),
                    },
                )
                .await
                .unwrap()
                .into_inner();
            chats.insert(occurrence.id, chat);
        }
    }
    assert_eq!(chats.len(), reminders);
    chats
}

async fn start_worker(env: &[(&'static str, String)]) -> Careloop {
    let mut worker = Careloop::start(&["serve", "--roles", "reminders"], env).unwrap();
    worker
        .wait_for("/healthz", 200, Duration::from_secs(60))
        .await
        .unwrap();
    worker
}

/// What goes wrong while the reminders are dispatched.
enum Disruption {
    /// The worker processes are killed with SIGKILL `KILLS` times, in turn.
    KillWorkers,
    /// The queue's Redis is killed and started again, empty (it keeps nothing on disk), `times`
    /// times: every job it held is lost.
    RestartRedis { redis: PrivateRedis, times: usize },
}

/// A Redis server of this test's own, on a free port, keeping nothing on disk.
struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        PrivateRedis {
            port,
            child: Self::spawn(port),
        }
    }

    fn spawn(port: u16) -> std::process::Child {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian's redis-server package)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILL, then the same port again, empty.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn crash_and_recover(backend: Backend, reminders: usize, mut disruption: Disruption) {
    let _one = ONE_AT_A_TIME.lock().await;
    let (mut rng, kill_seed) = Rng::seeded();
    eprintln!(
        "[{}] kill schedule seed {kill_seed} (CARELOOP_CRASH_SEED)",
        backend.name
    );
    let fake = FakeTelegram::start();
    let env = process_env(&backend, &fake);

    // One gateway (runs the outbox that sends to the fake Telegram; never killed). It migrates
    // the database and imports the approved templates.
    let mut gateway = Careloop::start(&["serve", "--roles", "gateway,llm"], &env).unwrap();
    gateway
        .wait_for("/readyz", 200, Duration::from_secs(240))
        .await
        .unwrap();
    let store = Store::connect(&backend.database_url).await.unwrap();
    let org = store
        .organizations()
        .find_by_slug(&"default".parse().unwrap())
        .await
        .unwrap()
        .expect("the gateway created the default organization")
        .id;
    let started = Instant::now();
    let chats = seed(&store, org, reminders).await;
    eprintln!(
        "[{}] seeded {reminders} due reminders in {:?}",
        backend.name,
        started.elapsed()
    );

    // The workers start; each kill lands once progress (occurrences sent) passes a random
    // threshold, at a random extra delay, on the workers in turn; the killed one restarts at once.
    let dispatch_started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push(start_worker(&env).await);
    }
    let disruptions = match &disruption {
        Disruption::KillWorkers => KILLS,
        Disruption::RestartRedis { times, .. } => *times,
    };
    let mut thresholds: Vec<u64> = (0..disruptions)
        .map(|_| rng.between(reminders as u64 / 20, reminders as u64 * 17 / 20))
        .collect();
    thresholds.sort_unstable();
    let mut kills = Vec::new();
    for (k, threshold) in thresholds.iter().enumerate() {
        loop {
            let sent = states(&store).await.get("sent").copied().unwrap_or(0) as u64;
            if sent >= *threshold {
                break;
            }
            assert!(
                dispatch_started.elapsed() < DEADLINE,
                "[{}] stuck at {sent} sent before kill {k}; worker logs:\n{}",
                backend.name,
                workers[0].logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.between(0, 400))).await;
        let before = states(&store).await;
        match &mut disruption {
            Disruption::KillWorkers => {
                let victim = k % WORKERS;
                workers[victim].child.kill().unwrap(); // SIGKILL
                let status = workers[victim].child.wait().unwrap();
                assert!(!status.success(), "the worker was killed, not stopped");
                kills.push(format!(
                    "kill {} of worker {victim} at {:?}: {before:?}",
                    k + 1,
                    dispatch_started.elapsed()
                ));
                workers[victim] = start_worker(&env).await;
            }
            Disruption::RestartRedis { redis, .. } => {
                redis.restart();
                kills.push(format!(
                    "Redis restarted empty ({}) at {:?}: {before:?}",
                    k + 1,
                    dispatch_started.elapsed()
                ));
            }
        }
    }
    for line in &kills {
        eprintln!("[{}] {line}", backend.name);
    }

    // Everything sent and delivered (nothing queued in the outbox, every reminder at the sink).
    loop {
        let by_state = states(&store).await;
        let sent = by_state.get("sent").copied().unwrap_or(0) as usize;
        let queued = store
            .outbox()
            .queued_count(Some(ChannelKind::Telegram))
            .await
            .unwrap();
        let at_sink = delivered(&fake).len();
        if sent == reminders && queued == 0 && at_sink >= reminders {
            break;
        }
        assert!(
            dispatch_started.elapsed() < DEADLINE,
            "[{}] not all delivered within {DEADLINE:?}: {by_state:?}, {queued} queued, {at_sink} at the sink; worker logs:\n{}\ngateway logs:\n{}",
            backend.name,
            workers[0].logs(),
            gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "[{}] all {reminders} delivered {:?} after the workers started, through {disruptions} disruptions",
        backend.name,
        dispatch_started.elapsed()
    );
    // Late duplicates (a recovered job running after its message went out) would arrive now.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Exactly once at the sink: each occurrence once, to its own patient's chat, nothing else.
    let at_sink = delivered(&fake);
    let mut per_occurrence: HashMap<ReminderOccurrenceId, usize> = HashMap::new();
    for (occurrence, chat) in &at_sink {
        assert_eq!(
            chats.get(occurrence),
            Some(chat),
            "a reminder went to the wrong chat or was not the test's"
        );
        *per_occurrence.entry(*occurrence).or_default() += 1;
    }
    let twice: Vec<_> = per_occurrence.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "[{}] {} reminders delivered more than once, e.g. {:?}",
        backend.name,
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(per_occurrence.len(), reminders, "every reminder delivered");
    assert_eq!(fake.log().len(), reminders, "nothing else was sent");

    // And in the database: every occurrence `sent`, pointing at its one outbound message, sent.
    assert_eq!(
        states(&store).await,
        HashMap::from([("sent".to_owned(), reminders as i64)])
    );
    let db = store.connection();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS messages, COUNT(DISTINCT o.id) AS occurrences, \
             SUM(CASE WHEN m.status = 'sent' THEN 1 ELSE 0 END) AS sent \
             FROM reminder_occurrences o JOIN messages m ON m.id = o.message_id \
             AND m.idempotency_key = 'reminder:' || o.idempotency_key",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<i64>("", "messages").unwrap(),
        reminders as i64
    );
    assert_eq!(
        row.try_get::<i64>("", "occurrences").unwrap(),
        reminders as i64
    );
    assert_eq!(row.try_get::<i64>("", "sent").unwrap(), reminders as i64);
    let reminder_messages = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM messages WHERE direction = 'outbound' \
             AND idempotency_key LIKE 'reminder:%'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(reminder_messages, reminders as i64, "one message per dose");

    // No message text or contact details in any log line.
    for logs in std::iter::once(gateway.logs()).chain(workers.iter().map(Careloop::logs)) {
        assert!(!logs.contains("Metformin"));
        assert!(!logs.contains("900001"));
    }
    for mut worker in workers {
        worker
            .signal_and_wait("TERM", Duration::from_secs(30))
            .unwrap();
    }
    gateway
        .signal_and_wait("TERM", Duration::from_secs(30))
        .unwrap();
}

/// The embedded default: SQLite database and the SQLite-backed apalis queue, shared by the
/// processes through one data folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_reminder_workers_deliver_every_reminder_once_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_owned();
    crash_and_recover(
        Backend {
            name: "sqlite",
            env: vec![("CARELOOP_DATA_DIR", data_dir.display().to_string())],
            database_url: sqlite_url(&data_dir),
        },
        REMINDERS,
        Disruption::KillWorkers,
    )
    .await;
}

fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("careloop.sqlite").display())
}

/// Scale-out: PostgreSQL and the Redis queue (apalis-redis), under a namespace of its own that
/// is removed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_reminder_workers_deliver_every_reminder_once_on_postgres_and_redis() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let namespace = format!("crash_{}", uuid::Uuid::new_v4().simple());
    crash_and_recover(
        Backend {
            name: "postgres+redis",
            env: vec![
                ("CARELOOP_DATA_DIR", data.path().display().to_string()),
                ("CARELOOP_DATABASE__URL", db.url.clone()),
                ("CARELOOP_QUEUE__URL", "redis://127.0.0.1:6379/".to_owned()),
                ("CARELOOP_QUEUE__NAMESPACE", namespace.clone()),
            ],
            database_url: db.url.clone(),
        },
        REMINDERS,
        Disruption::KillWorkers,
    )
    .await;
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{namespace}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    db.drop_now().await.unwrap();
}

/// Scale-out, the queue's Redis restarted empty twice while 3,000 reminders are dispatched: the
/// jobs it held are gone, and the sweeper enqueues their occurrences again once they are stale
/// (10 s here): every reminder is still delivered, and none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_no_reminder_and_sends_none_twice() {
    let db = TestDatabase::create().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let redis = PrivateRedis::start();
    crash_and_recover(
        Backend {
            name: "postgres+redis restarted",
            env: vec![
                ("CARELOOP_DATA_DIR", data.path().display().to_string()),
                ("CARELOOP_DATABASE__URL", db.url.clone()),
                ("CARELOOP_QUEUE__URL", redis.url()),
                ("CARELOOP_REMINDERS__STALE_AFTER_SECS", "10".to_owned()),
            ],
            database_url: db.url.clone(),
        },
        3_000,
        Disruption::RestartRedis { redis, times: 2 },
    )
    .await;
    db.drop_now().await.unwrap();
}
