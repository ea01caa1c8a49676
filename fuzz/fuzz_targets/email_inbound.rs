//! Raw MIME from the inbound-mail webhook or IMAP: `parse_inbound` never panics, whatever the
//! bytes; errors are fine. What it accepts has the fields the engine relies on.
#![no_main]

use careloop_channels::email::{InboundKind, parse_inbound};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let Ok(mail) = parse_inbound(raw) else {
        return;
    };
    assert!(!mail.message_id.is_empty(), "empty Message-ID accepted");
    assert_eq!(
        mail.message_id.trim(),
        mail.message_id,
        "untrimmed Message-ID"
    );
    if let Some(subject) = &mail.subject {
        assert!(!subject.trim().is_empty(), "blank subject kept");
    }
    if mail.kind == InboundKind::Regular {
        assert!(
            !mail.text.contains('\r'),
            "carriage return left in the text"
        );
    }
    // Debug must not show content (it is logged); it must not panic either.
    let _ = format!("{mail:?}");
});
