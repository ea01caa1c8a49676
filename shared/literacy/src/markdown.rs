//! Markdown to the plain text a reader sees, before scoring.

use pulldown_cmark::{Event, Parser, TagEnd};

/// The text of `markdown` without its markup: heading marks, list markers, emphasis, link targets
/// (`[text](url)` → `text`) and HTML are dropped; each block and line break ends with a newline.
/// Plain text is valid Markdown and comes back unchanged apart from those newlines.
pub(crate) fn plain_text(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    for event in Parser::new(markdown) {
        match event {
            Event::Text(text) | Event::Code(text) => out.push_str(&text),
            Event::SoftBreak
            | Event::HardBreak
            | Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::CodeBlock
                | TagEnd::BlockQuote(_),
            ) => out.push('\n'),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_markup_and_keeps_the_words() {
        let md = "# What is asthma?\n\nAsthma makes **your airways** _narrow_.\n\n\
                  - Take your [inhaler](https://example.org/inhaler) every day.\n\
                  * Avoid `smoke`.\n\n1. Call {emergency_number}.\n\n<b>Bold</b> text.";
        assert_eq!(
            plain_text(md),
            "What is asthma?\nAsthma makes your airways narrow.\n\
             Take your inhaler every day.\nAvoid smoke.\nCall {emergency_number}.\nBold text.\n"
        );
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(
            plain_text("It's fine.\nTwo lines."),
            "It's fine.\nTwo lines.\n"
        );
        assert_eq!(plain_text(""), "");
    }
}
