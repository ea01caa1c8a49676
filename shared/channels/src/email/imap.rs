//! Polling a mailbox over IMAP, for deployments whose mail provider cannot post webhooks.
//!
//! The poller only moves bytes: [`ImapPoller::fetch_unseen`] reads unseen messages without
//! marking them (`BODY.PEEK`), the caller parses and **persists them first**, and only then calls
//! [`ImapPoller::mark_seen`]. A crash in between fetches the same messages again, which the caller
//! deduplicates by `Message-ID`; no message is ever lost.

use std::{fmt, io, pin::Pin, sync::Arc, task, time::Duration};

use async_imap::Client;
use futures::TryStreamExt as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{self, ClientConfig, RootCertStore, pki_types::ServerName},
};

use super::MAX_INBOUND_BYTES;

/// How the IMAP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImapTls {
    /// Plain text; only for a server on the same host or in tests.
    None,
    /// TLS from the first byte (port 993), certificates checked against the Mozilla roots.
    #[default]
    Tls,
}

/// Where the mailbox is and how to log in.
#[derive(Clone, Deserialize)]
pub struct ImapSettings {
    /// Server host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Default 993 (IMAP over TLS).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Default `tls`.
    #[serde(default)]
    pub tls: ImapTls,
    /// Login name (never logged).
    pub user: String,
    /// Login password.
    pub password: SecretString,
    /// The folder polled; default `INBOX`.
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// Limit for a whole poll or mark (connect, log in, run, log out).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The most messages one [`ImapPoller::fetch_unseen`] returns (the oldest first); the rest
    /// come with the next polls.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

fn default_port() -> u16 {
    993
}
fn default_mailbox() -> String {
    "INBOX".to_owned()
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_max_batch() -> usize {
    50
}

impl fmt::Debug for ImapSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("mailbox", &self.mailbox)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// One unseen message as the server stores it. A message over [`MAX_INBOUND_BYTES`] is cut one
/// byte past the limit (so [`super::parse_inbound`] reports it as too large without the poller
/// holding all of it).
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedMail {
    /// The message's IMAP UID in the polled mailbox, for [`ImapPoller::mark_seen`].
    pub uid: u32,
    /// The message as stored (RFC 5322 bytes), for [`super::parse_inbound`].
    pub raw: Vec<u8>,
}

impl fmt::Debug for FetchedMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedMail")
            .field("uid", &self.uid)
            .field("raw", &format_args!("<{} bytes>", self.raw.len()))
            .finish()
    }
}

/// Why a poll failed. All are worth retrying at the next poll except `Login` and `InvalidHost`,
/// which need an operator.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The TCP connection failed (server down, wrong port, DNS).
    #[error("could not connect to the IMAP server")]
    Connect(#[source] io::Error),
    /// `host` cannot be checked against a certificate.
    #[error("the IMAP server's host name is not valid for TLS")]
    InvalidHost,
    /// The TLS handshake failed (certificate not trusted or not for this host).
    #[error("TLS with the IMAP server failed")]
    Tls(#[source] io::Error),
    /// Wrong user or password.
    #[error("the IMAP server refused the login")]
    Login(#[source] async_imap::error::Error),
    /// The server refused a command, answered unexpectedly or hung up.
    #[error("IMAP protocol error")]
    Protocol(#[from] async_imap::error::Error),
    /// The call took longer than `timeout_secs`.
    #[error("the IMAP server did not answer in time")]
    Timeout,
}

/// Reads a mailbox over IMAP; one connection per call.
pub struct ImapPoller {
    settings: ImapSettings,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl fmt::Debug for ImapPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapPoller")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

type Session = async_imap::Session<ImapStream>;

impl ImapPoller {
    /// Prepares TLS (when asked for); connects nothing yet.
    pub fn new(settings: ImapSettings) -> Result<Self, ImapError> {
        let tls = match settings.tls {
            ImapTls::None => None,
            ImapTls::Tls => {
                let server_name = ServerName::try_from(settings.host.clone())
                    .map_err(|_| ImapError::InvalidHost)?;
                let roots = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                // The provider is named so no process-wide default has to be installed.
                let config = ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|error| ImapError::Tls(io::Error::other(error)))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                Some((TlsConnector::from(Arc::new(config)), server_name))
            }
        };
        Ok(Self { settings, tls })
    }

    /// Unseen messages in the mailbox, oldest first, at most `max_batch`; does not mark them.
    /// Persist them, then call [`Self::mark_seen`] with their UIDs.
    #[tracing::instrument(skip_all, fields(mailbox = %self.settings.mailbox))]
    pub async fn fetch_unseen(&self) -> Result<Vec<FetchedMail>, ImapError> {
        let mails = self
            .with_timeout(async {
                let mut session = self.session().await?;
                // Read-only: fetching can never change a flag.
                session.examine(&self.settings.mailbox).await?;
                let mut uids: Vec<u32> = session.uid_search("UNSEEN").await?.into_iter().collect();
                uids.sort_unstable();
                uids.truncate(self.settings.max_batch);
                let mut mails = Vec::with_capacity(uids.len());
                if !uids.is_empty() {
                    // A partial fetch caps what an oversized message costs.
                    let query = format!("(UID BODY.PEEK[]<0.{}>)", MAX_INBOUND_BYTES + 1);
                    let mut fetches = session.uid_fetch(uid_set(&uids), query).await?;
                    while let Some(fetch) = fetches.try_next().await? {
                        if let (Some(uid), Some(raw)) = (fetch.uid, fetch.body()) {
                            mails.push(FetchedMail {
                                uid,
                                raw: raw.to_vec(),
                            });
                        }
                    }
                }
                logout(session).await;
                mails.sort_unstable_by_key(|mail| mail.uid);
                Ok(mails)
            })
            .await?;
        tracing::debug!(count = mails.len(), "fetched unseen mail");
        Ok(mails)
    }

    /// Flags the messages `\Seen`, so later polls skip them. Call only after they are persisted.
    #[tracing::instrument(skip_all, fields(mailbox = %self.settings.mailbox, count = uids.len()))]
    pub async fn mark_seen(&self, uids: &[u32]) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        self.with_timeout(async {
            let mut session = self.session().await?;
            session.select(&self.settings.mailbox).await?;
            session
                .uid_store(uid_set(uids), "+FLAGS.SILENT (\\Seen)")
                .await?
                .try_collect::<Vec<_>>()
                .await?;
            logout(session).await;
            Ok(())
        })
        .await
    }

    async fn with_timeout<T>(
        &self,
        work: impl Future<Output = Result<T, ImapError>>,
    ) -> Result<T, ImapError> {
        tokio::time::timeout(Duration::from_secs(self.settings.timeout_secs), work)
            .await
            .map_err(|_| ImapError::Timeout)?
    }

    async fn session(&self) -> Result<Session, ImapError> {
        let tcp = TcpStream::connect((self.settings.host.as_str(), self.settings.port))
            .await
            .map_err(ImapError::Connect)?;
        let stream = match &self.tls {
            None => ImapStream::Plain(tcp),
            Some((connector, server_name)) => ImapStream::Tls(Box::new(
                connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(ImapError::Tls)?,
            )),
        };
        let mut client = Client::new(stream);
        client
            .read_response()
            .await
            .map_err(|error| ImapError::Protocol(error.into()))?
            .ok_or(ImapError::Protocol(
                async_imap::error::Error::ConnectionLost,
            ))?;
        client
            .login(&self.settings.user, self.settings.password.expose_secret())
            .await
            .map_err(|(error, _client)| match error {
                async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_) => {
                    ImapError::Login(error)
                }
                other => ImapError::Protocol(other),
            })
    }
}

/// Logs out politely; the work is done, so a failure here is only noted.
async fn logout(mut session: Session) {
    if let Err(error) = session.logout().await {
        tracing::debug!(%error, "IMAP logout failed");
    }
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A plain or TLS connection, one type for async-imap.
#[derive(Debug)]
enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> task::Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
        buf: &[u8],
    ) -> task::Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> task::Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
    ) -> task::Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_defaults_and_hide_the_password() {
        let settings: ImapSettings = serde_json::from_value(serde_json::json!({
            "host": "imap.example.org", "user": "clinic-user", "password": "hunter2",
        }))
        .unwrap();
        assert_eq!(
            (settings.port, settings.tls, settings.mailbox.as_str()),
            (993, ImapTls::Tls, "INBOX")
        );
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("clinic-user"),
            "{shown}"
        );
        assert!(ImapPoller::new(settings).is_ok());
        assert_eq!(uid_set(&[3, 5, 8]), "3,5,8");
    }
}
