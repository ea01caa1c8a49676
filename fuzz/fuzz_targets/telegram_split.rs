//! `split_message` (outbound Telegram text): every part has at most `max` characters, no part is
//! empty or untrimmed, nothing but whitespace is dropped, and a word that fits in a part is never
//! cut: the parts' words are the input's words.
//!
//! Known finding (fuzz/regressions/telegram_split/): the splitter breaks only at ' ' and '\n', so
//! words separated by other whitespace (tab, form feed, a lone '\r', no-break or ideographic
//! space) are cut although they fit. Until that is fixed, `CARELOOP_FUZZ_SPLIT_SPACES_ONLY=1`
//! checks the word invariant only on texts whose whitespace is ' ' and '\n', so that the other
//! invariants can still be fuzzed.
#![no_main]

use std::sync::LazyLock;

use careloop_channels::telegram::split_message;
use libfuzzer_sys::fuzz_target;

static SPACES_ONLY: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("CARELOOP_FUZZ_SPLIT_SPACES_ONLY").is_some_and(|v| v == "1"));

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
    let checked_whitespace = |c: char| !c.is_whitespace() || c == ' ' || c == '\n';
    if text
        .split_whitespace()
        .all(|w| w.chars().count() <= max.max(1))
        && (!*SPACES_ONLY || text.chars().all(checked_whitespace))
    {
        let words: Vec<&str> = parts.iter().flat_map(|p| p.split_whitespace()).collect();
        let expected: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(words, expected, "a word was cut although it fits");
    }
});
