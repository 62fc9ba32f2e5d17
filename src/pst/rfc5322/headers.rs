//! The header block of a written message.
//!
//! Headers: the transport headers as received when the item has them (minus the MIME
//! structure fields, which describe the original body and not the one written here);
//! otherwise headers built from the properties. A recipient with a display name but no
//! address is written as an empty group, `Name:;` (RFC 5322 section 3.4; RFC 6854 allows
//! it in From and Sender): standard syntax that keeps the name and that mailparse and
//! Python's email package read as a name without a mailbox, where `"Name" <>` is invalid.
//! Such groups come after the mailboxes of their header (mailparse 0.18 would otherwise
//! take the comma after a group into the next display name); an encoded name is followed
//! by a space before the colon, as RFC 2047 wants white space after an encoded-word.
//! Display names are atoms when they can be, else quoted strings, else (non-ASCII or a
//! very long word) RFC 2047 encoded-words; the Subject is the same ASCII-or-encoded-words.

use super::encode::{base64, to_lf};
use super::MAX_LINE;
use crate::mime::date;
use crate::pst::item::{Address, Item, RecipientKind};

/// Header lines are folded to stay within this many columns where a space allows it
/// (RFC 5322 section 2.1.1 "SHOULD").
const FOLD_COLUMNS: usize = 78;

/// The transport header fields to keep, each a complete field with its folded lines
/// joined by LF, as received.
pub(super) fn transport_header_fields(raw: &str) -> Vec<String> {
    let text = to_lf(raw);
    let mut fields: Vec<String> = Vec::new();
    // Whether continuation lines belong to a kept field.
    let mut keeping = false;
    for line in text.split('\n') {
        if line.is_empty() {
            // The header block ends at the first empty line; leading blank lines are noise.
            if fields.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            // A whitespace-only line would end the header block for some parsers.
            if keeping && !line.trim().is_empty() {
                if let Some(last) = fields.last_mut() {
                    last.push('\n');
                    last.push_str(line);
                }
            }
            continue;
        }
        let name = line.split_once(':').map(|(n, _)| n);
        keeping = match name {
            // Field names are printable ASCII without colon or space (RFC 5322 2.2);
            // anything else (an mbox "From " line, garbage) would break the header block.
            Some(n) if !n.is_empty() && n.bytes().all(|b| (33..=126).contains(&b)) => {
                let n = n.to_ascii_lowercase();
                !matches!(
                    n.as_str(),
                    "mime-version" | "content-type" | "content-transfer-encoding" | "content-disposition"
                )
            }
            _ => false,
        };
        if keeping {
            fields.push(line.to_string());
        }
    }
    fields
}

/// Headers from the item's properties; the second value is where a generated Message-ID
/// goes (None when the item has one).
pub(super) fn built_headers(item: &Item) -> (Vec<String>, Option<usize>) {
    let mut head = Vec::new();
    if let Some(from) = item.from.as_ref().and_then(format_address) {
        head.push(fold(&format!("From: {from}")));
    }
    if let Some(sender) = &item.sender {
        if item.from.as_ref() != Some(sender) {
            if let Some(s) = format_address(sender) {
                head.push(fold(&format!("Sender: {s}")));
            }
        }
    }
    for (name, kind) in [("To", RecipientKind::To), ("Cc", RecipientKind::Cc), ("Bcc", RecipientKind::Bcc)] {
        let mut list: Vec<String> =
            item.recipients.iter().filter(|r| r.kind == kind).filter_map(|r| format_address(&r.address)).collect();
        // Empty groups (names without an address) go last: mailparse 0.18 reads the comma
        // after a group as the start of the next display name, so a mailbox after a group
        // would get a name beginning with ", ". Python's email package has no such quirk.
        list.sort_by_key(|a| a.ends_with(":;"));
        if !list.is_empty() {
            head.push(fold(&format!("{name}: {}", list.join(", "))));
        }
    }
    if let Some(subject) = &item.subject {
        head.push(unstructured("Subject", subject));
    }
    if let Some(date) = item.submit_time.or(item.delivery_time).and_then(date::rfc5322) {
        head.push(format!("Date: {date}"));
    }
    let mut id_at = None;
    match item.message_id.as_deref().and_then(msg_id) {
        Some(id) => head.push(fold(&format!("Message-ID: {id}"))),
        None => id_at = Some(head.len()),
    }
    if let Some(ids) = item.in_reply_to.as_deref().and_then(msg_id_list) {
        head.push(fold(&format!("In-Reply-To: {ids}")));
    }
    if let Some(ids) = item.references.as_deref().and_then(msg_id_list) {
        head.push(fold(&format!("References: {ids}")));
    }
    (head, id_at)
}

/// Folds a header line at spaces so lines stay within [`FOLD_COLUMNS`] where possible.
/// Folding only inserts a LF before an existing space, so unfolding gives back the exact
/// line; it never folds before a run of spaces, so no line is whitespace only.
pub(super) fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut col = 0;
    for (i, word) in line.split(' ').enumerate() {
        if i > 0 {
            if !word.is_empty() && col > 0 && col + 1 + word.len() > FOLD_COLUMNS {
                out.push('\n');
                col = 0;
            }
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.len();
    }
    out
}

/// An unstructured header (Subject): as is when plain ASCII, else RFC 2047 encoded-words.
fn unstructured(name: &str, value: &str) -> String {
    let value = one_line(value);
    let plain = value.is_ascii()
        && !value.contains("=?")
        && value.trim() == value
        && value.split(' ').all(|w| w.len() < MAX_LINE - 100);
    if plain {
        fold(&format!("{name}: {value}"))
    } else {
        fold(&format!("{name}: {}", encoded_words(&value)))
    }
}

/// Control characters (line breaks included) become spaces: header values are one line.
pub(super) fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// RFC 2047 "B" encoded-words in UTF-8, separated by spaces (which decoders drop between
/// encoded-words). Each carries at most 39 bytes of whole characters, so that even after
/// "Subject: " the first line stays under 78 columns.
pub(super) fn encoded_words(s: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 39 {
            words.push(format!("=?utf-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?utf-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join(" ")
}

/// RFC 5322 atext: the characters of a display name that needs no quoting.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// A display name as an RFC 5322 phrase: bare atoms, a quoted string, or encoded-words.
fn phrase(name: &str) -> String {
    // Encoded-words also split a long word, which could not be folded otherwise.
    if !name.is_ascii() || name.split(' ').any(|w| w.len() > 70) {
        return encoded_words(name);
    }
    let atoms = name.split(' ').all(|w| !w.is_empty() && w.chars().all(is_atext));
    if atoms {
        return name.to_string();
    }
    quoted(name)
}

/// One address: `phrase <addr>`, `addr`, or `phrase:;` (no address, see the module doc).
/// None when there is neither a name nor an address.
pub(super) fn format_address(a: &Address) -> Option<String> {
    let name = a.name.as_deref().map(|n| one_line(n).trim().to_string()).filter(|n| !n.is_empty());
    let email = a.email.as_deref().map(clean_email).filter(|e| !e.is_empty());
    match (name, email) {
        (Some(n), Some(e)) if n.eq_ignore_ascii_case(&e) => Some(e),
        (Some(n), Some(e)) => Some(format!("{} <{e}>", phrase(&n))),
        (None, Some(e)) => Some(e),
        // An encoded-word must be followed by white space (RFC 2047 section 5), which
        // the phrase before the group's colon may end with.
        (Some(n), None) if !n.is_ascii() => Some(format!("{} :;", phrase(&n))),
        (Some(n), None) => Some(format!("{}:;", phrase(&n))),
        (None, None) => None,
    }
}

/// An address without the characters that would break out of `<...>` or the header.
pub(super) fn clean_email(e: &str) -> String {
    let e: String = e.chars().filter(|c| !c.is_whitespace() && !c.is_control() && !"<>,;\"".contains(*c)).collect();
    // RFC 5321 4.5.3.1.3: a path is at most 256 octets; longer is garbage.
    if e.len() > 254 {
        String::new()
    } else {
        e
    }
}

/// A message id as `<...>`: whitespace and controls removed, brackets added when missing.
pub(super) fn msg_id(id: &str) -> Option<String> {
    let id: String = id.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect();
    let inner = id.trim_start_matches('<').trim_end_matches('>');
    // An id that long is corrupt, and would break the line length limit.
    (!inner.is_empty() && inner.len() <= 900).then(|| format!("<{inner}>"))
}

/// Space-separated message ids (In-Reply-To, References).
fn msg_id_list(ids: &str) -> Option<String> {
    // Ids may come as "<a><b>", "<a> <b>" or "<a>,<b>": split on all of those.
    let spaced = ids.replace('>', "> ").replace(',', " ");
    let list: Vec<String> = spaced.split_whitespace().filter_map(msg_id).collect();
    (!list.is_empty()).then(|| list.join(" "))
}

/// A quoted-string with `"` and `\` escaped.
pub(super) fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pst::rfc5322::testkit::*;
    use crate::pst::rfc5322::write_item;
    use mailparse::{addrparse_header, parse_mail, MailAddr, MailHeaderMap};

    #[test]
    fn headers_from_properties() {
        let subject = "Réunion über 日本語 and a fairly long subject that needs folding — ünïcödé ✓";
        let mut item = note(subject);
        item.from = Some(addr(Some("Doe, John"), Some("john@example.com")));
        item.sender = Some(addr(Some("Assistant"), Some("assistant@example.com")));
        item.recipients = vec![
            rcpt(RecipientKind::To, Some("No Address"), None),
            rcpt(RecipientKind::To, Some("Bob"), Some("bob@example.com")),
            rcpt(RecipientKind::To, None, Some("carol@example.com")),
            rcpt(RecipientKind::Cc, Some("Zoë Ünal"), Some("zoe@example.com")),
            rcpt(RecipientKind::Bcc, Some("Hidden Person"), None),
            rcpt(RecipientKind::Bcc, Some("Ünbekannt"), None),
        ];
        item.in_reply_to = Some("<a@x>".into());
        item.references = Some("<r1@x> <r2@x>\r\n <a@x>".into());
        let bytes = write_item(&item);
        check_lines(&bytes);
        let m = parse_mail(&bytes).unwrap();
        assert_eq!(header(&m, "Subject").unwrap(), subject);
        assert_eq!(header(&m, "Date").unwrap(), "Thu, 01 Feb 2024 13:05:00 +0000");
        assert_eq!(mailparse::dateparse(&header(&m, "Date").unwrap()).unwrap(), 1_706_792_700);
        let from =
            addrparse_header(m.get_headers().get_first_header("From").unwrap()).unwrap().extract_single_info().unwrap();
        assert_eq!(from.display_name.as_deref(), Some("Doe, John"));
        assert_eq!(from.addr, "john@example.com");
        assert!(header(&m, "Sender").unwrap().contains("assistant@example.com"));
        let to = addrparse_header(m.get_headers().get_first_header("To").unwrap()).unwrap();
        assert_eq!(to.len(), 3);
        match (&to[0], &to[2]) {
            (MailAddr::Single(bob), MailAddr::Group(g)) => {
                assert_eq!(bob.display_name.as_deref(), Some("Bob"));
                assert_eq!(g.group_name, "No Address");
            }
            other => panic!("unexpected {other:?}"),
        }
        let cc =
            addrparse_header(m.get_headers().get_first_header("Cc").unwrap()).unwrap().extract_single_info().unwrap();
        assert_eq!(cc.display_name.as_deref(), Some("Zoë Ünal"));
        assert_eq!(cc.addr, "zoe@example.com");
        // A name without an address is an empty group.
        let bcc = addrparse_header(m.get_headers().get_first_header("Bcc").unwrap()).unwrap();
        match &bcc[0] {
            MailAddr::Group(g) => {
                assert_eq!(g.group_name, "Hidden Person");
                assert!(g.addrs.is_empty());
            }
            other => panic!("expected a group, got {other:?}"),
        }
        match &bcc[1] {
            // mailparse keeps the comma between two groups (see built_headers).
            MailAddr::Group(g) => assert_eq!(g.group_name.trim_start_matches(", "), "Ünbekannt"),
            other => panic!("expected a group, got {other:?}"),
        }
        assert_eq!(header(&m, "In-Reply-To").unwrap(), "<a@x>");
        assert_eq!(header(&m, "References").unwrap(), "<r1@x> <r2@x> <a@x>");
        let id = header(&m, "Message-ID").unwrap();
        assert!(id.starts_with('<') && id.ends_with("@msgfs.invalid>"), "{id}");
        assert_eq!(header(&m, "MIME-Version").unwrap(), "1.0");
        // Built header lines are folded under 78 columns.
        let head_end = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
        for line in bytes[..head_end].split(|&b| b == b'\n') {
            assert!(line.len() <= 78, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(m.ctype.mimetype, "text/plain");
        assert_eq!(body(&m), "Hello Bob.\n");
    }

    #[test]
    fn given_message_id_and_missing_date() {
        let mut item = note("x");
        item.message_id = Some("abc@host".into());
        item.submit_time = None;
        item.delivery_time = Some(0);
        let m_bytes = write_item(&item);
        let m = parse_mail(&m_bytes).unwrap();
        assert_eq!(header(&m, "Message-ID").unwrap(), "<abc@host>");
        assert_eq!(header(&m, "Date").unwrap(), "Thu, 01 Jan 1970 00:00:00 +0000");
        item.delivery_time = None;
        let m_bytes = write_item(&item);
        assert!(header(&parse_mail(&m_bytes).unwrap(), "Date").is_none());
    }

    #[test]
    fn transport_headers_used() {
        let mut item = note("ignored subject");
        item.transport_headers = Some(
            "Received: from a by b;\r\n\tThu, 1 Feb 2024 10:00:00 +0100\r\n\
             From: Real <real@example.com>\r\nSubject: As received\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n\tboundary=\"old\"\r\n\
             Content-Transfer-Encoding: 7bit\r\nX-Folded: one\r\n two\r\n\r\n"
                .into(),
        );
        let bytes = write_item(&item);
        check_lines(&bytes);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("Received: from a by b;\n\tThu, 1 Feb 2024 10:00:00 +0100\n"));
        assert!(text.contains("\nX-Folded: one\n two\n"));
        assert!(!text.contains("boundary=\"old\""));
        assert!(!text.contains("ignored subject"));
        assert_eq!(text.matches("MIME-Version:").count(), 1);
        let m = parse_mail(&bytes).unwrap();
        assert_eq!(header(&m, "Subject").unwrap(), "As received");
        assert_eq!(m.get_headers().get_all_values("Content-Type").len(), 1);
        assert_eq!(m.ctype.mimetype, "text/plain");
        assert!(header(&m, "Message-ID").is_none(), "transport headers are kept as is");
    }

    #[test]
    fn addresses() {
        assert_eq!(format_address(&addr(Some("a@b.c"), Some("A@B.C"))).unwrap(), "A@B.C");
        assert_eq!(format_address(&addr(None, None)), None);
        assert_eq!(format_address(&addr(Some("Doe, \"J\""), Some("j@x"))).unwrap(), "\"Doe, \\\"J\\\"\" <j@x>");
        assert_eq!(format_address(&addr(Some("Ünal"), None)).unwrap(), "=?utf-8?B?w5xuYWw=?= :;");
    }
}
