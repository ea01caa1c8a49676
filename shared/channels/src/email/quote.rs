//! Keeping only what the patient wrote in a reply: quoted history and signatures go, in the
//! shapes the common mail programs produce in careloop's languages.

/// The patient's own words in a plain-text reply: the text above the first quoted-history marker
/// (a `>` line, an attribution such as "On … wrote:", an Outlook header block), without the
/// signature. When nothing is left above the history (a reply written below or between the
/// quotes), the unquoted lines of the whole text are kept instead.
pub fn strip_reply(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.lines().collect();
    let above = match history_start(&lines) {
        Some(start) => &lines[..start],
        None => &lines[..],
    };
    let own = strip_signature(above);
    if !is_blank(&own) {
        return join(&own);
    }
    // Bottom-posted or interleaved: keep every line that is not quoted or an attribution.
    let unquoted: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|&(i, line)| !is_quoted(line) && attribution_len(&lines[i..]).is_none())
        .map(|(_, line)| *line)
        .collect();
    join(&strip_signature(&unquoted))
}

/// Where quoted history starts: the first quoted line, attribution or forwarded/original
/// message header.
fn history_start(lines: &[&str]) -> Option<usize> {
    (0..lines.len()).find(|&i| {
        is_quoted(lines[i])
            || attribution_len(&lines[i..]).is_some()
            || is_separator(lines[i])
            || is_header_block(&lines[i..])
    })
}

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// Whether `lines` starts with a reply attribution ("On Mon, 3 Jun 2024 at 10:00, Ana <…>
/// wrote:") and over how many lines: mail programs wrap long ones in two or three.
fn attribution_len(lines: &[&str]) -> Option<usize> {
    let first = clean(lines.first()?);
    if !starts_attribution(&first) {
        return None;
    }
    let mut joined = String::new();
    for (i, line) in lines.iter().take(3).enumerate() {
        if i > 0 && line.trim().is_empty() {
            break;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(&clean(line));
        if ends_attribution(&joined) {
            return Some(i + 1);
        }
    }
    None
}

/// Removes bidirectional marks and surrounding spaces (Arabic attributions carry RLM/LRM).
fn clean(line: &str) -> String {
    line.chars()
        .filter(|c| !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}'))
        .collect::<String>()
        .trim()
        .to_owned()
}

fn starts_attribution(line: &str) -> bool {
    const OPENINGS: &[&str] = &["On ", "El ", "Le ", "Am ", "Em ", "في ", "بتاريخ "];
    OPENINGS.iter().any(|opening| line.starts_with(opening))
        // Arabic Gmail puts the date first and "كتب" (wrote) near the end.
        || has_word(line, "كتب")
}

fn ends_attribution(joined: &str) -> bool {
    let joined = joined.trim_end();
    let Some(without_colon) = joined
        .strip_suffix(':')
        .or_else(|| joined.strip_suffix('：'))
    else {
        return false;
    };
    let before = without_colon.trim_end();
    const VERBS: &[&str] = &["wrote", "escribió", "a écrit", "escreveu", "كتب"];
    VERBS.iter().any(|verb| before.ends_with(verb))
        // German: "Am 3. Juni 2024 um 10:00 schrieb Ana <ana@example.org>:"
        || (joined.starts_with("Am ") && joined.contains(" schrieb "))
        // Arabic: "في الاثنين، 3 يونيو 2024 10:00 ص، كتب Ana <ana@example.org>:"
        || has_word(joined, "كتب")
}

/// Whether `word` appears as a whole word ("كتب" wrote, not "مكتب" office).
fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '،' | ':' | '<' | '>'))
        .any(|w| w == word)
}

/// "-----Original Message-----" (and its translations), "Begin forwarded message:",
/// "---------- Forwarded message ---------", Outlook's line of underscores.
fn is_separator(line: &str) -> bool {
    let line = clean(line);
    if line.len() >= 10 && line.starts_with("-----") && line.ends_with("-----") {
        let inner = line.trim_matches('-').trim();
        return !inner.is_empty();
    }
    if line.len() >= 20 && line.chars().all(|c| c == '_') {
        return true;
    }
    const FORWARDS: &[&str] = &[
        "Begin forwarded message:",
        "Inicio del mensaje reenviado:",
        "Début du message réexpédié :",
        "Anfang der weitergeleiteten Nachricht:",
        "Início da mensagem reencaminhada:",
    ];
    FORWARDS.contains(&line.as_str())
}

/// An Outlook-style header block without a separator: "From: …" followed within a few lines by
/// "Sent:"/"Date:" and "To:"/"Subject:", in any of careloop's languages.
fn is_header_block(lines: &[&str]) -> bool {
    const FROM: &[&str] = &["From:", "De:", "De :", "Von:", "من:"];
    const SENT: &[&str] = &[
        "Sent:",
        "Date:",
        "Enviado:",
        "Envoyé :",
        "Envoyé:",
        "Gesendet:",
        "Datum:",
        "Fecha:",
        "Data:",
        "Enviada em:",
        "تاريخ الإرسال:",
        "التاريخ:",
    ];
    const OTHER: &[&str] = &[
        "To:",
        "Subject:",
        "Para:",
        "Asunto:",
        "À :",
        "À:",
        "Objet :",
        "Objet:",
        "An:",
        "Betreff:",
        "Assunto:",
        "إلى:",
        "الموضوع:",
    ];
    let Some(first) = lines.first() else {
        return false;
    };
    let first = clean(first);
    let starts = |line: &str, set: &[&str]| set.iter().any(|label| line.starts_with(label));
    if !starts(&first, FROM) {
        return false;
    }
    let next: Vec<String> = lines.iter().skip(1).take(4).map(|l| clean(l)).collect();
    next.iter().any(|l| starts(l, SENT)) && next.iter().any(|l| starts(l, OTHER))
}

/// Drops a signature: everything from a "-- " delimiter line, and a trailing "Sent from my
/// iPhone" line in any of careloop's languages.
fn strip_signature<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    let end = lines
        .iter()
        .position(|line| matches!(line.trim_end_matches([' ', '\t']), "--") || *line == "-- ")
        .unwrap_or(lines.len());
    let mut kept: Vec<&str> = lines[..end].to_vec();
    while kept.last().is_some_and(|line| line.trim().is_empty()) {
        kept.pop();
    }
    if kept.last().is_some_and(|line| is_mobile_signature(line)) {
        kept.pop();
    }
    kept
}

fn is_mobile_signature(line: &str) -> bool {
    let line = clean(line).to_lowercase();
    if line.chars().count() > 60 {
        return false;
    }
    const PREFIXES: &[&str] = &[
        "sent from my ",
        "sent from outlook",
        "get outlook for ",
        "enviado desde mi ",
        "enviado desde outlook",
        "envoyé de mon ",
        "envoyé depuis mon ",
        "von meinem ",
        "gesendet von meinem ",
        "enviado do meu ",
        "enviado de meu ",
        "أُرسلت من ",
        "أرسلت من ",
        "تم الإرسال من ",
    ];
    PREFIXES.iter().any(|prefix| line.starts_with(prefix))
}

fn is_blank(lines: &[&str]) -> bool {
    lines.iter().all(|line| line.trim().is_empty())
}

/// Joins lines without leading or trailing blank lines, trailing spaces, or runs of more than
/// one blank line.
fn join(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut blank_run = 0;
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}

/// Cuts an HTML reply where the mail programs put the quoted message (Gmail's `gmail_quote`,
/// Apple Mail's and Thunderbird's `<blockquote>`, Outlook's `divRplyFwdMsg`/`appendonsend`,
/// Yahoo's `yahoo_quoted`), before it is turned into text.
pub fn cut_html_history(html: &str) -> &str {
    // ASCII lowercasing keeps byte offsets, so positions found in `lower` index `html`.
    let lower = html.to_ascii_lowercase();
    const MARKERS: &[&str] = &[
        "<blockquote",
        "class=\"gmail_quote",
        "class=\"gmail_attr",
        "id=\"divrplyfwdmsg\"",
        "id=\"appendonsend\"",
        "class=\"moz-cite-prefix\"",
        "class=\"yahoo_quoted\"",
        "id=\"mail-editor-reference-message-container\"",
    ];
    let cut = MARKERS
        .iter()
        .filter_map(|marker| lower.find(marker))
        .min()
        // A marker inside a tag's attributes: cut where that tag opens.
        .map(|at| lower[..=at].rfind('<').unwrap_or(at));
    match cut {
        Some(at) => &html[..at],
        None => html,
    }
}

/// Text of an HTML body: block elements become line breaks, then mail-parser's converter
/// handles tags, entities, `<head>`, `<style>` and `<script>`. A closing block tag ends a line;
/// an opening one starts a line only after text, so Gmail's `<div>` per line gives one line
/// break, not two, and its `<div><br></div>` a blank line.
pub fn html_to_text(html: &str) -> String {
    const CLOSING: &[&str] = &[
        "</div",
        "</li",
        "</tr",
        "</table",
        "</blockquote",
        "</h1",
        "</h2",
        "</h3",
        "</h4",
        "</h5",
        "</h6",
    ];
    const OPENING: &[&str] = &[
        "<div",
        "<p",
        "<li",
        "<tr",
        "<table",
        "<blockquote",
        "<h1",
        "<h2",
        "<h3",
        "<h4",
        "<h5",
        "<h6",
        "<hr",
    ];
    let lower = html.to_ascii_lowercase();
    let is_tag = |rest: &str, names: &[&str]| {
        names.iter().any(|name| {
            rest.strip_prefix(name)
                .and_then(|after| after.chars().next())
                .is_some_and(|c| c == '>' || c == '/' || c.is_ascii_whitespace())
        })
    };
    let mut out = String::with_capacity(html.len() + 64);
    let mut last = 0;
    for (at, _) in lower.match_indices('<') {
        let rest = &lower[at..];
        let after_text = lower[..at]
            .trim_end()
            .chars()
            .next_back()
            .is_some_and(|c| c != '>');
        if is_tag(rest, CLOSING) || (after_text && is_tag(rest, OPENING)) {
            out.push_str(&html[last..at]);
            out.push_str("<br>");
            last = at;
        }
    }
    out.push_str(&html[last..]);
    // `&nbsp;` decodes to U+00A0; patients mean a space.
    let text = mail_parser::decoders::html::html_to_text(&out).replace('\u{a0}', " ");
    join(&text.lines().map(str::trim).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_posted_replies_lose_the_history() {
        assert_eq!(
            strip_reply("Yes, I took it.\n\nOn Mon, 3 Jun 2024, Care <c@x.org> wrote:\n> Did you?"),
            "Yes, I took it."
        );
        assert_eq!(
            strip_reply(
                "Yes\nOn Mon, Jun 3, 2024 at 10:00 AM Riverside Clinic <\ncare@x.org> wrote:\n\n> q"
            ),
            "Yes"
        );
    }

    #[test]
    fn bottom_posted_replies_keep_the_answer() {
        assert_eq!(
            strip_reply(
                "On Mon, 3 Jun 2024, Care wrote:\n> Did you take it?\n\nYes, this morning.\n"
            ),
            "Yes, this morning."
        );
    }

    #[test]
    fn signatures_go() {
        assert_eq!(strip_reply("Fine\n-- \nAna Pérez\n555 0100"), "Fine");
        assert_eq!(strip_reply("Fine\n\nSent from my iPhone\n"), "Fine");
        assert_eq!(strip_reply("Fine\n\nVon meinem iPhone gesendet"), "Fine");
        // Only as the last line: a patient's own sentence stays.
        assert_eq!(
            strip_reply("Von meinem Arzt habe ich neue Tabletten.\nDanke"),
            "Von meinem Arzt habe ich neue Tabletten.\nDanke"
        );
    }

    #[test]
    fn html_becomes_lines() {
        assert_eq!(
            html_to_text(
                "<html><head><style>p{}</style></head><body><div>One &amp; two</div><div>three<br>four</div><p>five</p></body></html>"
            ),
            "One & two\nthree\nfour\nfive"
        );
        assert_eq!(
            html_to_text("<div dir=\"ltr\">Yes<div><br></div><div>Thanks</div></div>"),
            "Yes\n\nThanks"
        );
        assert_eq!(html_to_text("Yes<div>Thanks</div>"), "Yes\nThanks");
        assert_eq!(
            cut_html_history(
                "<div>Yes</div><div class=\"gmail_quote\"><blockquote>q</blockquote></div>"
            ),
            "<div>Yes</div>"
        );
    }
}
