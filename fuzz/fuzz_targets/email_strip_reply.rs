//! `strip_reply` on any text: no panic, and what it keeps is normalized (no carriage returns, no
//! leading or trailing blank lines, no trailing spaces, at most one blank line in a row).
#![no_main]

use careloop_channels::email::strip_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let own = strip_reply(text);
    assert!(!own.contains('\r'), "carriage return kept");
    assert!(!own.contains("\n\n\n"), "run of blank lines kept");
    assert!(
        !own.starts_with('\n') && !own.ends_with('\n'),
        "leading or trailing blank line"
    );
    for line in own.lines() {
        assert_eq!(line.trim_end(), line, "trailing spaces kept");
    }
});
