//! The hub: every open session's event log and its connected browsers, in memory.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::{Duration, Instant},
};

use careloop_core::{Language, OrganizationId, ReadingLevel};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::events::{Sequenced, SessionEvent};
use super::token::{
    self, IssuedSession, KeyError, SessionClaims, SessionId, SigningKey, TokenError,
};

/// How many events a browser's connection may fall behind before the hub drops it (it then
/// reconnects and resumes from the log).
const SUBSCRIBER_QUEUE: usize = 64;
/// Browser connections (tabs) one session keeps at most; a new one closes the oldest.
const MAX_SUBSCRIBERS: usize = 8;

/// Limits of the hub, with the defaults documented on each field.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How long a session token is accepted (default 24 hours).
    pub token_ttl: Duration,
    /// Messages and errors a session keeps for resuming streams (default 32); drafts and typing
    /// notices are not counted: only the newest of them is kept.
    pub buffer_events: usize,
    /// A session with no browser connected and no activity for this long is forgotten (default
    /// 30 minutes). Its token stays valid: a browser that comes back starts a fresh log.
    pub idle_ttl: Duration,
    /// Sessions held in memory at once (default 100,000); past it new ones are refused.
    pub max_sessions: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            token_ttl: Duration::from_secs(24 * 3600),
            buffer_events: 32,
            idle_ttl: Duration::from_secs(30 * 60),
            max_sessions: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("too many open web chat sessions")]
    Full,
    #[error("the web chat session is not open")]
    NoSession,
    #[error("cannot create a session: {0}")]
    Random(String),
}

/// Reading preferences a visitor chose before they became a patient (before their first
/// message), applied once the conversation has a patient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preferences {
    pub language: Option<Language>,
    pub level: Option<ReadingLevel>,
}

/// What happened to a published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    /// A connected browser was handed the event.
    pub delivered: bool,
    /// A message with this id was already in the log: nothing new was published (`seq` is the
    /// earlier one's).
    pub duplicate: bool,
}

/// Counts for metrics and memory measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    pub sessions: usize,
    pub subscribers: usize,
    pub buffered_events: usize,
}

/// A browser's view of a session: what it missed since its last seen event, then live events.
/// Dropping it disconnects.
pub struct Subscription {
    /// Events after the last one seen, oldest first.
    pub backlog: Vec<Sequenced>,
    /// Events after the last one seen may be missing: they fell out of the bounded log, or the
    /// session's log was started afresh (restart or idle eviction) since that event.
    pub missed: bool,
    /// Live events, after the backlog. Ends when the hub drops a connection that fell behind;
    /// the browser then resumes from its last event.
    pub events: mpsc::Receiver<Sequenced>,
    // Declared after `events`, so the receiver is closed when the guard runs.
    _guard: SubscriberGuard,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("backlog", &self.backlog.len())
            .field("missed", &self.missed)
            .finish()
    }
}

/// Marks the session active when a browser disconnects, so the idle timeout counts from then.
struct SubscriberGuard {
    hub: Weak<Inner>,
    session: SessionId,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.hub.upgrade() {
            let mut state = inner.lock();
            if let Some(session) = state.sessions.get_mut(&self.session) {
                session.subscribers.retain(|tx| !tx.is_closed());
                session.last_active = Instant::now();
            }
        }
    }
}

/// Signed sessions and their resumable event streams. Cheap to clone (one shared hub).
#[derive(Clone)]
pub struct WebChatHub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WebChatHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebChatHub")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    key: SigningKey,
    config: HubConfig,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct State {
    sessions: HashMap<SessionId, Session>,
    /// The next sequence number, shared by all sessions. It starts at the hub's start time in
    /// microseconds, so numbers keep growing across restarts and an id a browser saw before a
    /// restart is never mistaken for a newer one.
    next_seq: u64,
}

/// One session in memory. Kept small: an idle session with nothing buffered allocates nothing
/// beyond this struct and its map slot.
struct Session {
    /// Messages and errors (at most `buffer_events`), then at most one transient event, last.
    log: VecDeque<Sequenced>,
    subscribers: Vec<mpsc::Sender<Sequenced>>,
    /// The sequence number this session's log started at in this hub.
    first_seq: u64,
    /// The newest sequence number dropped from the front of the log (0: none).
    dropped_through: u64,
    last_active: Instant,
    preferences: Option<Preferences>,
    /// Held while one of the session's messages is being answered, so answers do not interleave.
    turn: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Session {
    fn new(first_seq: u64) -> Session {
        Session {
            log: VecDeque::new(),
            subscribers: Vec::new(),
            first_seq,
            dropped_through: 0,
            last_active: Instant::now(),
            preferences: None,
            turn: None,
        }
    }

    fn append(&mut self, item: Sequenced, buffer: usize) -> bool {
        // The newest transient event is superseded by whatever comes next.
        if self.log.back().is_some_and(|e| e.event.is_transient()) {
            self.log.pop_back();
        }
        let transient = item.event.is_transient();
        self.subscribers
            .retain(|tx| tx.try_send(item.clone()).is_ok());
        let delivered = !self.subscribers.is_empty();
        self.log.push_back(item);
        if !transient {
            while self.log.len() > buffer {
                if let Some(old) = self.log.pop_front() {
                    self.dropped_through = old.seq;
                }
            }
        }
        self.last_active = Instant::now();
        delivered
    }

    fn is_idle(&mut self, ttl: Duration, now: Instant) -> bool {
        self.subscribers.retain(|tx| !tx.is_closed());
        let turn_running = self.turn.as_ref().is_some_and(|t| Arc::strong_count(t) > 1);
        self.subscribers.is_empty()
            && !turn_running
            && now.saturating_duration_since(self.last_active) >= ttl
    }
}

enum Open {
    /// Create the session's log if the hub has none (the caller holds a valid token).
    OrCreate,
    /// Only a session the hub holds (a channel send: nobody can be listening otherwise).
    Existing,
}

impl WebChatHub {
    pub fn new(key: SigningKey, config: HubConfig) -> WebChatHub {
        let start = u64::try_from(Utc::now().timestamp_micros()).unwrap_or(1);
        WebChatHub {
            inner: Arc::new(Inner {
                key,
                config: HubConfig {
                    buffer_events: config.buffer_events.max(1),
                    ..config
                },
                state: Mutex::new(State {
                    sessions: HashMap::new(),
                    next_seq: start.max(1),
                }),
            }),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// A new session of `organization` with a signed token. Nothing is kept until the session
    /// is used.
    pub fn issue(&self, organization: OrganizationId) -> Result<IssuedSession, HubError> {
        self.issue_at(organization, Utc::now())
    }

    /// [`WebChatHub::issue`] as if it were `now` (tests).
    pub fn issue_at(
        &self,
        organization: OrganizationId,
        now: DateTime<Utc>,
    ) -> Result<IssuedSession, HubError> {
        let session_id =
            SessionId::random().map_err(|e: KeyError| HubError::Random(e.to_string()))?;
        let ttl = chrono::Duration::from_std(self.inner.config.token_ttl)
            .unwrap_or(chrono::Duration::days(1));
        // Whole seconds, as the token carries it.
        let expires_at = DateTime::from_timestamp((now + ttl).timestamp(), 0).unwrap_or(now + ttl);
        let token = token::sign(&self.inner.key, session_id, organization, expires_at);
        Ok(IssuedSession {
            session_id,
            token,
            expires_at,
        })
    }

    /// The session a token names, if its signature matches (checked in constant time) and it
    /// has not expired.
    pub fn verify(&self, token: &str) -> Result<SessionClaims, TokenError> {
        self.verify_at(token, Utc::now())
    }

    /// [`WebChatHub::verify`] as if it were `now` (tests).
    pub fn verify_at(&self, token: &str, now: DateTime<Utc>) -> Result<SessionClaims, TokenError> {
        token::verify(&self.inner.key, token, now)
    }

    /// Connects a browser that last saw event `last_seen` (0: none): the events after it, then
    /// live ones, with nothing lost or repeated between the two.
    pub fn subscribe(&self, session: SessionId, last_seen: u64) -> Result<Subscription, HubError> {
        let mut state = self.inner.lock();
        let next_seq = state.next_seq;
        let session_state = self.open(&mut state, session, Open::OrCreate)?;
        // An id from before this log started (a restart, an eviction) or one never issued (a
        // clock that went back): everything held is new to this browser, and some may be lost.
        let stale =
            last_seen != 0 && (last_seen < session_state.first_seq || last_seen >= next_seq);
        let after = if stale { 0 } else { last_seen };
        let backlog: Vec<Sequenced> = session_state
            .log
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        let missed = stale || after < session_state.dropped_through;
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        session_state.subscribers.retain(|tx| !tx.is_closed());
        if session_state.subscribers.len() >= MAX_SUBSCRIBERS {
            session_state.subscribers.remove(0);
        }
        session_state.subscribers.push(tx);
        session_state.last_active = Instant::now();
        Ok(Subscription {
            backlog,
            missed,
            events: rx,
            _guard: SubscriberGuard {
                hub: Arc::downgrade(&self.inner),
                session,
            },
        })
    }

    /// Appends an event to a session's log (creating the log if needed) and hands it to its
    /// connected browsers. A message whose id is already in the log is not published again.
    pub fn publish(&self, session: SessionId, event: SessionEvent) -> Result<Published, HubError> {
        self.append(session, event, Open::OrCreate)
    }

    /// Like [`WebChatHub::publish`], for a session the hub holds only ([`HubError::NoSession`]
    /// otherwise).
    pub fn publish_to_open(
        &self,
        session: SessionId,
        event: SessionEvent,
    ) -> Result<Published, HubError> {
        self.append(session, event, Open::Existing)
    }

    fn append(
        &self,
        session: SessionId,
        event: SessionEvent,
        open: Open,
    ) -> Result<Published, HubError> {
        let buffer = self.inner.config.buffer_events;
        let mut state = self.inner.lock();
        let seq = state.next_seq;
        let session_state = self.open(&mut state, session, open)?;
        if let SessionEvent::Message(message) = &event {
            let earlier = session_state.log.iter().find(|e| {
                matches!(&*e.event, SessionEvent::Message(m) if m.message_id == message.message_id)
            });
            if let Some(earlier) = earlier {
                let seq = earlier.seq;
                session_state.subscribers.retain(|tx| !tx.is_closed());
                return Ok(Published {
                    seq,
                    delivered: !session_state.subscribers.is_empty(),
                    duplicate: true,
                });
            }
        }
        let delivered = session_state.append(
            Sequenced {
                seq,
                event: Arc::new(event),
            },
            buffer,
        );
        state.next_seq = seq + 1;
        Ok(Published {
            seq,
            delivered,
            duplicate: false,
        })
    }

    fn open<'s>(
        &self,
        state: &'s mut State,
        session: SessionId,
        open: Open,
    ) -> Result<&'s mut Session, HubError> {
        let full = state.sessions.len() >= self.inner.config.max_sessions;
        let next = state.next_seq;
        match state.sessions.entry(session) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => match open {
                Open::Existing => Err(HubError::NoSession),
                Open::OrCreate if full => Err(HubError::Full),
                Open::OrCreate => Ok(e.insert(Session::new(next))),
            },
        }
    }

    /// Whether a browser is connected to the session now.
    pub fn is_connected(&self, session: SessionId) -> bool {
        let mut state = self.inner.lock();
        state.sessions.get_mut(&session).is_some_and(|s| {
            s.subscribers.retain(|tx| !tx.is_closed());
            !s.subscribers.is_empty()
        })
    }

    /// Keeps what a visitor chose before their first message (merged with earlier choices).
    pub fn remember_preferences(
        &self,
        session: SessionId,
        preferences: Preferences,
    ) -> Result<(), HubError> {
        let mut state = self.inner.lock();
        let s = self.open(&mut state, session, Open::OrCreate)?;
        let kept = s.preferences.get_or_insert_with(Preferences::default);
        kept.language = preferences.language.or(kept.language);
        kept.level = preferences.level.or(kept.level);
        s.last_active = Instant::now();
        Ok(())
    }

    /// The remembered preferences, once (they are forgotten here).
    pub fn take_preferences(&self, session: SessionId) -> Option<Preferences> {
        let mut state = self.inner.lock();
        state
            .sessions
            .get_mut(&session)
            .and_then(|s| s.preferences.take())
    }

    /// The lock that one answer of the session holds at a time. While held, or awaited, the
    /// session is not evicted.
    pub fn turn_lock(&self, session: SessionId) -> Result<Arc<tokio::sync::Mutex<()>>, HubError> {
        let mut state = self.inner.lock();
        let s = self.open(&mut state, session, Open::OrCreate)?;
        s.last_active = Instant::now();
        Ok(Arc::clone(s.turn.get_or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(()))
        })))
    }

    /// Forgets sessions with no browser connected, no answer running and no activity for
    /// `idle_ttl`. Returns how many were forgotten.
    pub fn evict_idle(&self) -> usize {
        self.evict_idle_at(Instant::now())
    }

    /// [`WebChatHub::evict_idle`] as if it were `now` (tests).
    pub fn evict_idle_at(&self, now: Instant) -> usize {
        let ttl = self.inner.config.idle_ttl;
        let mut state = self.inner.lock();
        let before = state.sessions.len();
        state.sessions.retain(|_, s| !s.is_idle(ttl, now));
        let evicted = before - state.sessions.len();
        if evicted > 0 {
            let keep = state.sessions.len() * 2;
            state.sessions.shrink_to(keep);
        }
        evicted
    }

    /// Evicts idle sessions every `idle_ttl / 4` (at most every minute) until the hub is dropped.
    pub fn spawn_janitor(&self) -> tokio::task::JoinHandle<()> {
        let hub = Arc::downgrade(&self.inner);
        let every =
            (self.inner.config.idle_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = hub.upgrade() else { return };
                let evicted = WebChatHub { inner }.evict_idle();
                if evicted > 0 {
                    tracing::debug!(evicted, "idle web chat sessions forgotten");
                }
            }
        })
    }

    pub fn stats(&self) -> HubStats {
        let state = self.inner.lock();
        state
            .sessions
            .values()
            .fold(HubStats::default(), |mut stats, s| {
                stats.sessions += 1;
                stats.subscribers += s.subscribers.iter().filter(|t| !t.is_closed()).count();
                stats.buffered_events += s.log.len();
                stats
            })
    }
}
