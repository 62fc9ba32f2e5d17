//! Writing a PST [`Item`] as an RFC 5322 message (MIME per RFC 2045-2047, 2231): the
//! header block comes from `headers`, the MIME tree from `mime` (attachments from
//! `attachment`, contacts from `vcard`, appointments from `icalendar`), and the
//! transfer encodings from `encode`; this module puts them together.
//!
//! The output is deterministic: a PST is both imported into a store and mounted directly,
//! and both must show byte-identical files. Nothing depends on the clock or on randomness:
//! - MIME boundaries are `=_msgfs_<message depth>_<counter>_<crc32c of the parts>`; `=_`
//!   cannot occur in quoted-printable or base64 text, and a candidate that still occurs in
//!   a part (7bit text, an embedded message) is replaced by the next counter value.
//! - A missing Message-ID is generated as `<crc32c.fnv1a64@msgfs.invalid>` over every
//!   other header line and the body, so equal items get equal ids and `.invalid`
//!   (RFC 2606) marks it as made up.
//! - The iCalendar DTSTAMP is the submit, delivery or start time, never "now".
//!
//! Line endings are LF throughout, also inside vCard and iCalendar parts (which their
//! RFCs write with CRLF): the files are for Linux tools, and CRLF in the input is
//! normalised. The read and flagged states are store flags, not headers, and are not
//! written here.

mod attachment;
mod encode;
mod headers;
mod icalendar;
mod mime;
#[cfg(test)]
mod testkit;
mod vcard;

use super::item::Item;
use encode::IdHash;

/// Embedded messages nested deeper than this are replaced by a note: bounds recursion
/// on a hostile PST.
const MAX_NESTING: usize = 16;

/// Content-transfer-encoding limit on line length (RFC 5322 section 2.1.1 "MUST").
const MAX_LINE: usize = 998;

/// The RFC 5322 text of one item: headers, then its MIME structure. LF line endings.
pub fn write_item(item: &Item) -> Vec<u8> {
    write_nested(item, 0)
}

fn write_nested(item: &Item, depth: usize) -> Vec<u8> {
    let part = mime::build_body(item, depth);
    let mut counter = 0;
    let (part_headers, body) = mime::render(part, depth, &mut counter);

    let transport =
        item.transport_headers.as_deref().map(headers::transport_header_fields).filter(|fields| !fields.is_empty());
    let (mut head, id_at) = match transport {
        Some(fields) => (fields, None),
        None => headers::built_headers(item),
    };
    head.push("MIME-Version: 1.0".to_string());
    head.extend(part_headers);

    if let Some(at) = id_at {
        // Generated from everything else, so it changes exactly when the content does.
        let mut hash = IdHash::new();
        for line in &head {
            hash.write(line.as_bytes());
        }
        hash.write(&body);
        let (crc, fnv) = hash.finish();
        head.insert(at, format!("Message-ID: <{crc:08x}.{fnv:016x}@msgfs.invalid>"));
    }

    mime::entity(&head, &body)
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use crate::pst::item::{Appointment, AttachmentData, Contact, Html, RecipientKind};
    use mailparse::parse_mail;

    #[test]
    fn deterministic() {
        let mut item = note("Déterministe");
        item.body_html = Some(html("<p>x</p>"));
        let mut a = attachment("i.png", AttachmentData::Bytes(vec![1; 100]));
        a.inline = true;
        a.content_id = Some("c@x".into());
        item.attachments.push(a);
        item.attachments.push(attachment("m.eml", AttachmentData::Message(Box::new(note("inner")))));
        item.appointment = Some(Appointment::default());
        let first = write_item(&item);
        assert_eq!(first, write_item(&item.clone()));
        // A different body gives a different generated Message-ID.
        let id = |b: &[u8]| header(&parse_mail(b).unwrap(), "Message-ID").unwrap();
        item.body_text = Some("other".into());
        assert_ne!(id(&first), id(&write_item(&item)));
    }

    /// Hostile property values still give a message that parses, with lines in bounds.
    #[test]
    fn hostile_items() {
        let long_word = "x".repeat(2000);
        let nasty = "line1\r\nBcc: injected@example.com\n\tmore\0 \"quoted\" <a> \\";
        let mut item = note(&long_word);
        item.from = Some(addr(Some(nasty), Some("a b<c>@example.com\r\n")));
        item.recipients.push(rcpt(RecipientKind::To, Some(""), Some("")));
        item.recipients.push(rcpt(RecipientKind::Cc, Some(nasty), None));
        item.message_id = Some("<>".into());
        item.in_reply_to = Some(" ,, ".into());
        item.references = Some(long_word.clone());
        item.submit_time = Some(i64::MIN);
        item.delivery_time = Some(i64::MAX);
        item.body_html = Some(Html { bytes: vec![0xff, 0xfe, 0, 0x41], charset: "no-such-charset".into() });
        let mut a = attachment(nasty, AttachmentData::Bytes(b"From: x\n\nbody".to_vec()));
        a.mime_type = Some("message/rfc822".into());
        a.content_id = Some("\r\n".into());
        a.content_location = Some("http://x/ y".into());
        item.attachments.push(a);
        let mut a = attachment(&"ü".repeat(300), AttachmentData::Bytes(vec![0; 10]));
        a.mime_type = Some("multipart/mixed".into());
        item.attachments.push(a);
        item.appointment =
            Some(Appointment { start: Some(i64::MAX), end: Some(i64::MIN), all_day: true, ..Appointment::default() });
        item.contact = Some(Contact { display_name: Some(nasty.into()), ..Contact::default() });
        let bytes = write_item(&item);
        check_lines(&bytes);
        let m = parse_mail(&bytes).unwrap();
        assert!(header(&m, "Bcc").is_none(), "a name must not inject a header");
        assert!(header(&m, "Date").is_none());
        assert_eq!(header(&m, "Subject").unwrap(), long_word);
        assert_eq!(shape(&m), "multipart/mixed(multipart/alternative(text/plain,text/html),text/vcard,text/calendar,message/rfc822,application/octet-stream)");
        assert_eq!(m.subparts[4].get_body_raw().unwrap(), vec![0; 10]);
    }
}
