//! Telegram webhook bodies, as the gateway handles them: `serde_json::from_slice` into a `Value`
//! (bodies over `MAX_UPDATE_BYTES` are refused before), then `update_id` for idempotency and
//! `parse_update`. Neither may panic, and both must agree on the update's id.
#![no_main]

use careloop_channels::telegram::{
    MAX_UPDATE_BYTES, TelegramInboundKind, UpdateError, parse_update, update_id, verify_secret,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // The webhook's secret-token header compare takes whatever bytes the client sent.
    let _ = verify_secret("a-webhook-secret", Some(body));
    if body.len() > MAX_UPDATE_BYTES {
        return;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let id = update_id(&value);
    match parse_update(&value) {
        Ok(update) => {
            assert_eq!(
                id,
                Some(update.update_id),
                "update_id() and parse_update() disagree"
            );
            assert_ne!(update.chat.get(), 0, "chat id 0 accepted");
            if let TelegramInboundKind::Start(Some(payload)) = &update.kind {
                assert!(
                    !payload.is_empty() && payload.trim() == payload,
                    "untrimmed /start payload"
                );
            }
        }
        Err(UpdateError::Ignored { update_id, .. }) => {
            assert_eq!(
                id,
                Some(update_id),
                "update_id() and parse_update() disagree"
            );
        }
        Err(UpdateError::Malformed(reason)) => {
            assert!(reason.chars().count() <= 160, "error text not shortened");
        }
    }
});
