//! Parsing inbound mail: real-world shaped messages from `fixtures/email/` (replies from Gmail,
//! Apple Mail, Outlook and Thunderbird in careloop's six languages, HTML-only mail, an
//! out-of-office, a DSN bounce, broken MIME), each with its exact outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use careloop_channels::email::{
    EmailParseError, InboundEmail, InboundKind, MAX_INBOUND_BYTES, parse_inbound, strip_reply,
};

/// The careloop `Message-ID` every fixture answers.
const OURS: &str = "careloop.0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@care.example";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/email/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse_fixture(name: &str) -> InboundEmail {
    parse_inbound(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A regular reply to careloop's message: the patient's words and the threading.
fn assert_reply(name: &str, from: &str, subject: &str, text: &str) -> InboundEmail {
    let email = parse_fixture(name);
    assert_eq!(email.kind, InboundKind::Regular, "{name}");
    assert_eq!(email.from.as_str(), from, "{name}");
    assert_eq!(email.subject.as_deref(), Some(subject), "{name}");
    assert_eq!(email.in_reply_to.as_deref(), Some(OURS), "{name}");
    assert_eq!(
        email.references.last().map(String::as_str),
        Some(OURS),
        "{name}"
    );
    assert_eq!(email.text, text, "{name}");
    email
}

#[test]
fn english_gmail_reply_keeps_only_the_new_lines() {
    let email = assert_reply(
        "reply_en_gmail.eml",
        "ana.perez@example.org",
        "Re: Medication reminder",
        "Yes, I took it this morning.\nThank you!",
    );
    assert_eq!(email.message_id, "CAKx7Yq1bQ2=hZ0abc@mail.gmail.com");
    assert_eq!(email.references, [OURS]);
}

#[test]
fn spanish_apple_mail_reply_loses_the_quote_and_the_iphone_signature() {
    assert_reply(
        "reply_es_apple.eml",
        "lucia@example.es",
        "Re: Recordatorio de medicación",
        "Sí, ya la tomé.",
    );
}

#[test]
fn french_latin1_reply_with_a_wrapped_attribution() {
    assert_reply(
        "reply_fr_gmail.eml",
        "jean.martin@example.fr",
        "Re: Rappel de médicament",
        "Merci, c'est fait. J'ai pris le comprimé à 8 h.",
    );
}

#[test]
fn german_thunderbird_reply_loses_the_signature_block_and_the_quote() {
    assert_reply(
        "reply_de_thunderbird.eml",
        "hans.mueller@example.de",
        "Re: Erinnerung an Ihre Medikamente",
        "Danke, erledigt.\n\nViele Grüße\nHans",
    );
}

#[test]
fn portuguese_gmail_reply() {
    assert_reply(
        "reply_pt_gmail.eml",
        "maria.silva@example.com.br",
        "Re: Lembrete de medicação",
        "Sim, já tomei.",
    );
}

#[test]
fn arabic_gmail_reply_with_bidi_marks_in_the_attribution() {
    let email = assert_reply(
        "reply_ar_gmail.eml",
        "sara@example.ae",
        "Re: تذكير بالدواء",
        "نعم، تناولت الدواء صباحاً.",
    );
    assert_eq!(email.references, ["CAAR0000@mail.gmail.com", OURS]);
}

#[test]
fn outlook_reply_loses_the_original_message_header_block() {
    assert_reply(
        "reply_en_outlook.eml",
        "ana.perez@example.org",
        "RE: Medication reminder",
        "I missed the evening dose yesterday, is that ok?",
    );
}

#[test]
fn html_only_mail_becomes_text_without_the_quoted_blockquote() {
    let email = parse_fixture("html_only.eml");
    assert_eq!(email.kind, InboundKind::Regular);
    assert_eq!(email.message_id, "A1B2C3D4-html@example.org");
    assert_eq!(email.in_reply_to.as_deref(), Some(OURS));
    assert!(email.references.is_empty());
    assert_eq!(
        email.text,
        "Can I take it with coffee & milk?\n\nThanks, Ana"
    );
}

#[test]
fn an_out_of_office_is_an_auto_reply() {
    let email = parse_fixture("auto_reply_outlook.eml");
    assert_eq!(email.kind, InboundKind::AutoReply);
    assert_eq!(email.in_reply_to.as_deref(), Some(OURS));
}

#[test]
fn auto_replies_are_recognized_by_header_or_subject() {
    let auto = [
        ("Auto-Submitted: auto-replied\n", "Re: hi"),
        (
            "Auto-Submitted: auto-generated; owner-email=\"x@example.org\"\n",
            "Re: hi",
        ),
        ("X-Autoreply: yes\n", "Re: hi"),
        ("X-Autorespond: Vacation\n", "Re: hi"),
        ("Precedence: bulk\n", "Re: hi"),
        ("Precedence: junk\n", "Re: hi"),
        ("Precedence: auto_reply\n", "Re: hi"),
        ("X-Auto-Response-Suppress: All\n", "Re: hi"),
        ("", "Out of Office: Medication reminder"),
        ("", "Automatic reply: Medication reminder"),
        ("", "Respuesta automática: Recordatorio"),
        ("", "Réponse automatique : Rappel"),
        ("", "Abwesenheitsnotiz: Erinnerung"),
        ("", "Resposta automática: Lembrete"),
        ("", "رد تلقائي: تذكير"),
    ];
    for (headers, subject) in auto {
        let raw = format!(
            "From: ana@example.org\nMessage-ID: <a@example.org>\nSubject: {subject}\n{headers}\nAway.\n"
        );
        assert_eq!(
            parse_inbound(raw.as_bytes()).unwrap().kind,
            InboundKind::AutoReply,
            "{headers}{subject}"
        );
    }
    let person = [
        ("Auto-Submitted: no\n", "Re: hi"),
        ("Precedence: list\n", "Re: hi"),
        ("", "Re: out of pills, what now?"),
    ];
    for (headers, subject) in person {
        let raw = format!(
            "From: ana@example.org\nMessage-ID: <a@example.org>\nSubject: {subject}\n{headers}\nHi.\n"
        );
        assert_eq!(
            parse_inbound(raw.as_bytes()).unwrap().kind,
            InboundKind::Regular,
            "{headers}{subject}"
        );
    }
}

#[test]
fn a_dsn_bounce_names_the_message_that_failed() {
    let email = parse_fixture("bounce_dsn.eml");
    assert_eq!(
        email.kind,
        InboundKind::Bounce {
            original_message_id: Some(OURS.to_owned())
        }
    );
    assert_eq!(email.from.as_str(), "MAILER-DAEMON@mx.care.example");
    assert!(
        email
            .text
            .starts_with("This is the mail system at host mx.care.example.")
    );
}

#[test]
fn a_postmaster_bounce_returning_the_whole_message_names_it_too() {
    let raw = format!(
        "From: postmaster@mx.example.org\nTo: care@care.example\nSubject: Delivery failure\n\
         Message-ID: <bounce-2@mx.example.org>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b\"\n\n\
         --b\nContent-Type: text/plain\n\nYour message was not delivered.\n\
         --b\nContent-Type: message/rfc822\n\n\
         From: care@care.example\nTo: gone@example.org\nMessage-ID: <{OURS}>\nSubject: x\n\nHello\n\
         --b--\n"
    );
    assert_eq!(
        parse_inbound(raw.as_bytes()).unwrap().kind,
        InboundKind::Bounce {
            original_message_id: Some(OURS.to_owned())
        }
    );

    // Old-style daemons paste the original headers into the text.
    let raw = format!(
        "From: MAILER-DAEMON@mx.example.org\nMessage-ID: <bounce-3@mx.example.org>\n\
         Subject: failure notice\n\nSorry, it failed.\n\n--- Below this line is a copy.\n\n\
         Message-Id: <{OURS}>\nSubject: x\n"
    );
    assert_eq!(
        parse_inbound(raw.as_bytes()).unwrap().kind,
        InboundKind::Bounce {
            original_message_id: Some(OURS.to_owned())
        }
    );

    // A report without the returned message still counts as a bounce.
    let raw = "From: MAILER-DAEMON@mx.example.org\nMessage-ID: <b4@mx.example.org>\n\nFailed.\n";
    assert_eq!(
        parse_inbound(raw.as_bytes()).unwrap().kind,
        InboundKind::Bounce {
            original_message_id: None
        }
    );
}

#[test]
fn broken_input_is_refused_with_what_is_wrong() {
    assert_eq!(
        parse_inbound(&fixture("malformed_mime.eml")),
        Err(EmailParseError::Malformed("multipart without a boundary"))
    );
    assert_eq!(
        parse_inbound(
            b"From: ana@example.org\nMessage-ID: <m@x.org>\nContent-Type: multipart/mixed; boundary=zz\n\nno parts\n"
        ),
        Err(EmailParseError::Malformed(
            "the multipart boundary never occurs"
        ))
    );
    assert_eq!(
        parse_inbound(&fixture("missing_from.eml")),
        Err(EmailParseError::MissingFrom)
    );
    assert_eq!(
        parse_inbound(b"From: Ana Perez\nMessage-ID: <m@x.org>\n\nhi\n"),
        Err(EmailParseError::MissingFrom)
    );
    assert_eq!(
        parse_inbound(b"From: ana@localdomain\nMessage-ID: <m@x.org>\n\nhi\n"),
        Err(EmailParseError::InvalidFrom)
    );
    assert_eq!(
        parse_inbound(b"From: ana@example.org\nSubject: hi\n\nhi\n"),
        Err(EmailParseError::MissingMessageId)
    );
    assert_eq!(
        parse_inbound(b"just some words, no headers at all"),
        Err(EmailParseError::Malformed("no header fields"))
    );
    assert_eq!(
        parse_inbound(b"\x00\xff\xfe\x01 binary"),
        Err(EmailParseError::Malformed("no header fields"))
    );
    assert_eq!(
        parse_inbound(b""),
        Err(EmailParseError::Malformed("empty input"))
    );
}

#[test]
fn oversized_mail_is_refused_before_parsing() {
    let mut raw = b"From: ana@example.org\nMessage-ID: <big@x.org>\n\n".to_vec();
    raw.resize(MAX_INBOUND_BYTES, b'x');
    assert!(parse_inbound(&raw).is_ok(), "exactly the limit is accepted");
    raw.push(b'x');
    assert_eq!(
        parse_inbound(&raw),
        Err(EmailParseError::TooLarge {
            size: MAX_INBOUND_BYTES + 1,
            limit: MAX_INBOUND_BYTES
        })
    );
}

#[test]
fn debug_output_hides_the_sender_the_subject_and_the_text() {
    let email = parse_fixture("reply_en_gmail.eml");
    let shown = format!("{email:?}");
    for secret in ["ana.perez", "Medication", "took it"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(
        shown.contains("CAKx7Yq1bQ2=hZ0abc@mail.gmail.com"),
        "{shown}"
    );
}

#[test]
fn quoted_history_markers_in_every_language_are_cut() {
    let cases = [
        "On Mon, 3 Jun 2024 at 09:00, Clinic <c@care.example> wrote:",
        "On 3 Jun 2024, at 09:00, Clinic <c@care.example> wrote:",
        "El lun, 3 jun 2024 a las 9:00, Clínica (<c@care.example>) escribió:",
        "Le lun. 3 juin 2024 à 09:00, Clinique <c@care.example> a écrit :",
        "Am Mo., 3. Juni 2024 um 09:00 Uhr schrieb Praxis <c@care.example>:",
        "Am 03.06.2024 um 09:00 schrieb Praxis:",
        "Em seg., 3 de jun. de 2024 às 09:00, Clínica <c@care.example> escreveu:",
        "في الاثنين، 3 يونيو 2024 في 9:00 ص، كتب Clinic <c@care.example>:",
        "-----Original Message-----",
        "-----Mensaje original-----",
        "-----Message d'origine-----",
        "-----Ursprüngliche Nachricht-----",
        "-----Mensagem original-----",
        "---------- Forwarded message ---------",
        "Begin forwarded message:",
    ];
    for marker in cases {
        let text = format!("Done.\n\n{marker}\nTime for your tablets.\n");
        assert_eq!(strip_reply(&text), "Done.", "{marker}");
    }
    // Outlook's header block in other languages.
    for block in [
        "De: Clínica <c@care.example>\nEnviado: lunes, 3 de junio de 2024 9:00\nPara: Ana\nAsunto: Recordatorio",
        "De : Clinique <c@care.example>\nEnvoyé : lundi 3 juin 2024 09:00\nÀ : Jean\nObjet : Rappel",
        "Von: Praxis <c@care.example>\nGesendet: Montag, 3. Juni 2024 09:00\nAn: Hans\nBetreff: Erinnerung",
        "De: Clínica <c@care.example>\nEnviada em: segunda-feira, 3 de junho de 2024 09:00\nPara: Maria\nAssunto: Lembrete",
    ] {
        let text = format!("Done.\n\n{block}\n\nTime for your tablets.\n");
        assert_eq!(strip_reply(&text), "Done.", "{block}");
    }
}

#[test]
fn signatures_in_every_language_are_dropped() {
    for signature in [
        "-- \nAna Perez\n+1 555 0100",
        "Sent from my iPhone",
        "Enviado desde mi iPhone",
        "Envoyé de mon iPhone",
        "Von meinem iPhone gesendet",
        "Enviado do meu iPhone",
        "Sent from my Galaxy",
        "Get Outlook for Android",
    ] {
        let text = format!("Took it at 8.\n\n{signature}\n");
        assert_eq!(strip_reply(&text), "Took it at 8.", "{signature}");
    }
    // Words that only look like a signature stay.
    assert_eq!(
        strip_reply("Sent from my iPhone the photo of the box yesterday, did it arrive?"),
        "Sent from my iPhone the photo of the box yesterday, did it arrive?"
    );
    assert_eq!(
        strip_reply("Fui ao مكتب الطبيب:\nok"),
        "Fui ao مكتب الطبيب:\nok"
    );
}
