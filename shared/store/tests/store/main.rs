//! Store integration tests. Every test runs twice, on a fresh SQLite file and on a fresh
//! PostgreSQL database (see `common`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod campaigns;
mod channels_support;
mod connect;
mod content_review;
mod conversation_support;
mod fixtures;
mod idempotency;
mod migrations;
mod passwords;
mod reminder_batch;
mod roundtrip;
mod tenancy;
