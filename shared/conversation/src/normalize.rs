//! The one text normalization every lexicon match goes through, so a phrase written in a
//! lexicon and a patient's message meet on equal terms whatever their accents, case or script
//! variants.

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

/// Words of `text`, normalized: Unicode compatibility decomposition, combining marks (accents,
/// Arabic short vowels and hamza marks) removed, lower case, Arabic letter variants unified
/// (أ إ آ ٱ → ا, ة → ه, ى → ي, tatweel dropped), and every run of characters that are not
/// letters or digits treated as a word break.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.nfkd().filter(|c| !is_combining_mark(*c)) {
        let c = match c {
            'ٱ' => 'ا',
            'ة' => 'ه',
            'ى' => 'ي',
            'ـ' => continue,
            // Arabic-Indic and Persian digits read as 0-9, so "٢" answers a numbered question.
            '\u{0660}'..='\u{0669}' => char::from(b'0' + (c as u32 - 0x0660) as u8),
            '\u{06F0}'..='\u{06F9}' => char::from(b'0' + (c as u32 - 0x06F0) as u8),
            _ => c,
        };
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The normalized words joined by single spaces.
pub fn normalized(text: &str) -> String {
    words(text).join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accents_case_and_punctuation_go() {
        assert_eq!(words("ARRÊT!"), ["arret"]);
        assert_eq!(words("Don't  stop—now"), ["don", "t", "stop", "now"]);
        assert_eq!(words("Tomé mi pastilla."), ["tome", "mi", "pastilla"]);
        assert_eq!(words("Größe"), ["große"]);
    }

    #[test]
    fn arabic_variants_are_unified() {
        assert_eq!(normalized("أَلَم في الصدر"), normalized("الم في الصدر"));
        assert_eq!(normalized("إيقاف"), "ايقاف");
        assert_eq!(normalized("نوبة"), "نوبه");
        assert_eq!(normalized("مستشفى"), "مستشفي");
        assert_eq!(normalized("الـــدواء"), "الدواء");
        assert_eq!(normalized("٢ ۳"), "2 3");
    }

    #[test]
    fn emoji_and_symbols_are_not_words() {
        assert!(words("👍🙂 !!! ...").is_empty());
        assert!(words("").is_empty());
        assert_eq!(words("500mg"), ["500mg"]);
    }
}
