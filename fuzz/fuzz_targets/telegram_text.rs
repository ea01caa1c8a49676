//! Outbound text: `split_message` (parts of at most `max` characters, none empty, no word lost or
//! changed) and `escape` (MarkdownV2: unescaping gives the input back).
#![no_main]

use careloop_channels::telegram::{escape, split_message};
use libfuzzer_sys::fuzz_target;

/// Characters MarkdownV2 reserves (https://core.telegram.org/bots/api#markdownv2-style).
const RESERVED: &str = "\\_*[]()~`>#+-=|{}.!";

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    // Small limits reach every branch of the splitter with short inputs; 0 means "at least 1".
    let max = usize::from(limit % 64);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };

    let parts = split_message(text, max);
    for part in &parts {
        assert!(!part.is_empty(), "empty part");
        assert!(
            part.chars().count() <= max.max(1),
            "part over {} chars",
            max.max(1)
        );
        assert_eq!(part.trim(), part, "untrimmed part");
    }
    // Nothing but whitespace is dropped or added, and the order is kept.
    let visible = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let joined: String = parts.iter().map(|p| visible(p)).collect();
    assert_eq!(
        joined,
        visible(text),
        "non-space characters lost or reordered"
    );
    // When no word is longer than a part, words are never cut.
    if text
        .split_whitespace()
        .all(|w| w.chars().count() <= max.max(1))
    {
        let words: Vec<&str> = parts.iter().flat_map(|p| p.split_whitespace()).collect();
        let expected: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(words, expected, "a word was cut although it fits");
    }

    let escaped = escape(text);
    let mut unescaped = String::with_capacity(text.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let next = chars.next().expect("escape ends in a lone backslash");
            assert!(
                RESERVED.contains(next),
                "escaped a character that needs no escape"
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
