//! Conversions between column values and domain types. A stored value that does not parse is a
//! [`StoreError::Corrupt`] naming the table and column, never the value.

use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Serialize, de::DeserializeOwned};

use crate::StoreError;

/// The current time at the precision both backends keep (microseconds), so what is written reads
/// back equal.
pub(crate) fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

/// Truncates to microseconds, the precision of PostgreSQL timestamps.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

pub(crate) fn corrupt(table: &'static str, column: &'static str) -> StoreError {
    tracing::error!(table, column, "stored value does not parse");
    StoreError::Corrupt { table, column }
}

pub(crate) fn parse<T: FromStr>(
    table: &'static str,
    column: &'static str,
    value: &str,
) -> Result<T, StoreError> {
    value.parse().map_err(|_| corrupt(table, column))
}

pub(crate) fn parse_opt<T: FromStr>(
    table: &'static str,
    column: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, StoreError> {
    value.map(|v| parse(table, column, v)).transpose()
}

pub(crate) fn from_json<T: DeserializeOwned>(
    table: &'static str,
    column: &'static str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|_| corrupt(table, column))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    // Serializing plain data structures (vectors of strings, enums, maps) cannot fail.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn non_negative_u32(
    table: &'static str,
    column: &'static str,
    value: i32,
) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(table, column))
}

/// Free text that is not a core value type (names of organizations and campaigns, titles):
/// trimmed, non-empty, bounded.
pub(crate) fn required_text(
    field: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<String, StoreError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(careloop_core::ParseError::new(field, "must not be empty").into());
    }
    if value.chars().count() > max_chars {
        return Err(careloop_core::ParseError::new(
            field,
            format!("must be at most {max_chars} characters"),
        )
        .into());
    }
    Ok(value.to_owned())
}
