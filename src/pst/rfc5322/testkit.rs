//! Builders and inspectors shared by the writer's tests: sample items, and the shape,
//! bodies and headers of what mailparse reads back.

use super::MAX_LINE;
use crate::pst::item::{Address, Attachment, AttachmentData, Html, Item, Recipient, RecipientKind};
use mailparse::{MailHeaderMap, ParsedMail};

pub(super) fn addr(name: Option<&str>, email: Option<&str>) -> Address {
    Address { name: name.map(str::to_string), email: email.map(str::to_string) }
}

pub(super) fn rcpt(kind: RecipientKind, name: Option<&str>, email: Option<&str>) -> Recipient {
    Recipient { kind, address: addr(name, email) }
}

pub(super) fn attachment(filename: &str, data: AttachmentData) -> Attachment {
    Attachment {
        filename: Some(filename.to_string()),
        mime_type: None,
        content_id: None,
        content_location: None,
        inline: false,
        data,
    }
}

pub(super) fn note(subject: &str) -> Item {
    Item {
        class: "IPM.Note".into(),
        subject: Some(subject.into()),
        from: Some(addr(Some("Alice Example"), Some("alice@example.com"))),
        recipients: vec![rcpt(RecipientKind::To, None, Some("bob@example.com"))],
        submit_time: Some(1_706_792_700), // 2024-02-01 13:05:00 UTC, a Thursday
        body_text: Some("Hello Bob.\r\n".into()),
        ..Item::default()
    }
}

pub(super) fn html(s: &str) -> Html {
    Html { bytes: s.as_bytes().to_vec(), charset: "utf-8".into() }
}

/// The tree of MIME types, e.g. "multipart/mixed(text/plain,image/png)".
pub(super) fn shape(m: &ParsedMail) -> String {
    if m.subparts.is_empty() {
        m.ctype.mimetype.clone()
    } else {
        let kids: Vec<String> = m.subparts.iter().map(shape).collect();
        format!("{}({})", m.ctype.mimetype, kids.join(","))
    }
}

/// The decoded text of a part. mailparse's quoted-printable decoder gives hard line
/// breaks as CRLF, whatever the encoded text used.
pub(super) fn body(m: &ParsedMail) -> String {
    m.get_body().unwrap().replace("\r\n", "\n")
}

pub(super) fn header(m: &ParsedMail, name: &str) -> Option<String> {
    m.get_headers().get_first_value(name)
}

/// Every line of a written message: LF only, and no longer than RFC 5322 allows.
pub(super) fn check_lines(bytes: &[u8]) {
    assert!(!bytes.contains(&b'\r'), "CR in output");
    for line in bytes.split(|&b| b == b'\n') {
        assert!(line.len() <= MAX_LINE, "line too long");
    }
}
