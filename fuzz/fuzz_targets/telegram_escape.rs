//! `escape` (MarkdownV2): every reserved character is escaped, nothing else is, and removing the
//! escapes gives the input back.
#![no_main]

use careloop_channels::telegram::escape;
use libfuzzer_sys::fuzz_target;

/// Characters MarkdownV2 reserves (https://core.telegram.org/bots/api#markdownv2-style).
const RESERVED: &str = "\\_*[]()~`>#+-=|{}.!";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let escaped = escape(text);
    let mut unescaped = String::with_capacity(text.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars.next().expect("escape ends in a lone backslash");
            assert!(
                RESERVED.contains(next),
                "escaped {next:?}, which needs no escape"
            );
            unescaped.push(next);
        } else {
            assert!(
                !RESERVED.contains(c),
                "reserved character {c:?} left unescaped"
            );
            unescaped.push(c);
        }
    }
    assert_eq!(unescaped, text, "escape is not reversible");
});
