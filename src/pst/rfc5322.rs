//! Writing a PST [`Item`] as an RFC 5322 message (MIME per RFC 2045-2047, 2231).
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
//! normalised.
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
//!
//! Structure, each level present only when needed:
//! `multipart/mixed(multipart/related(multipart/alternative(text/plain, text/html),
//! inline parts), contact/calendar parts, attachments)`.
//! An item with only an RTF body: when the RTF encapsulates HTML (`\fromhtml1`,
//! MS-OXRTFEX) the HTML is recovered and written as text/html after a text/plain rendering
//! of the same RTF; otherwise the text/plain rendering comes with the RTF itself as the
//! richer `text/rtf` alternative, so nothing of the original body is lost.
//! Inline attachments go into multipart/related only when there is HTML to refer to them.
//!
//! Encodings: text parts are UTF-8, 7bit when ASCII with lines of at most 998 octets, else
//! quoted-printable; file attachments are base64 in 76-column lines; embedded messages
//! (and message/rfc822 files that look like one) are 7bit/8bit/binary as their content
//! needs, since RFC 2046 forbids base64 there. An unreadable attachment becomes a short
//! text/plain note naming it and the reason. The read and flagged states are store flags,
//! not headers, and are not written here.

use super::item::{Address, Appointment, Attachment, AttachmentData, Contact, Item};
use super::item::{Recipient, RecipientKind};
use super::rtf;

/// Embedded messages nested deeper than this are replaced by a note: bounds recursion
/// on a hostile PST.
const MAX_NESTING: usize = 16;

/// Header lines are folded to stay within this many columns where a space allows it
/// (RFC 5322 section 2.1.1 "SHOULD").
const FOLD_COLUMNS: usize = 78;

/// Content-transfer-encoding limit on line length (RFC 5322 section 2.1.1 "MUST").
const MAX_LINE: usize = 998;

/// The RFC 5322 text of one item: headers, then its MIME structure. LF line endings.
pub fn write_item(item: &Item) -> Vec<u8> {
    write_nested(item, 0)
}

fn write_nested(item: &Item, depth: usize) -> Vec<u8> {
    let part = build_body(item, depth);
    let mut counter = 0;
    let (part_headers, body) = render(part, depth, &mut counter);

    let transport = item.transport_headers.as_deref().map(transport_header_fields).filter(|fields| !fields.is_empty());
    let (mut head, id_at) = match transport {
        Some(fields) => (fields, None),
        None => built_headers(item),
    };
    head.push("MIME-Version: 1.0".to_string());
    head.extend(part_headers);

    if let Some(at) = id_at {
        // Generated from everything else, so it changes exactly when the content does.
        let mut crc = 0u32;
        let mut fnv = Fnv::new();
        for line in &head {
            crc = crc32c::crc32c_append(crc, line.as_bytes());
            fnv.write(line.as_bytes());
        }
        crc = crc32c::crc32c_append(crc, &body);
        fnv.write(&body);
        head.insert(at, format!("Message-ID: <{crc:08x}.{:016x}@msgfs.invalid>", fnv.0));
    }

    let mut out = Vec::with_capacity(body.len() + 1024);
    for line in &head {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(&body);
    out
}

// ---------------------------------------------------------------------------------------
// Headers

/// The transport header fields to keep, each a complete field with its folded lines
/// joined by LF, as received.
fn transport_header_fields(raw: &str) -> Vec<String> {
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
fn built_headers(item: &Item) -> (Vec<String>, Option<usize>) {
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
    if let Some(date) = item.submit_time.or(item.delivery_time).and_then(rfc5322_date) {
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
fn fold(line: &str) -> String {
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
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// RFC 2047 "B" encoded-words in UTF-8, separated by spaces (which decoders drop between
/// encoded-words). Each carries at most 39 bytes of whole characters, so that even after
/// "Subject: " the first line stays under 78 columns.
fn encoded_words(s: &str) -> String {
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
    let mut q = String::with_capacity(name.len() + 2);
    q.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// One address: `phrase <addr>`, `addr`, or `phrase:;` (no address, see the module doc).
/// None when there is neither a name nor an address.
fn format_address(a: &Address) -> Option<String> {
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
fn clean_email(e: &str) -> String {
    let e: String = e.chars().filter(|c| !c.is_whitespace() && !c.is_control() && !"<>,;\"".contains(*c)).collect();
    // RFC 5321 4.5.3.1.3: a path is at most 256 octets; longer is garbage.
    if e.len() > 254 {
        String::new()
    } else {
        e
    }
}

/// A message id as `<...>`: whitespace and controls removed, brackets added when missing.
fn msg_id(id: &str) -> Option<String> {
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

/// Civil date (year, month 1-12, day 1-31) of a count of days since 1970-01-01, in the
/// proleptic Gregorian calendar, computed over 400-year cycles of 146097 days.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = era * 400 + yoe + i64::from(month <= 2);
    (year, month, day)
}

/// Broken-down UTC time of Unix seconds; None outside years 1 to 9999 (a corrupt time).
fn utc(secs: i64) -> Option<(i64, u32, u32, i64, i64, i64, usize)> {
    if !(-62_135_596_800..=253_402_300_799).contains(&secs) {
        return None;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7) as usize;
    Some((y, mo, d, rem / 3600, rem / 60 % 60, rem % 60, weekday))
}

/// RFC 5322 date-time in UTC: "Thu, 01 Feb 2024 13:05:00 +0000".
fn rfc5322_date(secs: i64) -> Option<String> {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, mo, d, h, mi, s, wd) = utc(secs)?;
    Some(format!("{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} +0000", DAYS[wd], MONTHS[mo as usize - 1]))
}

// ---------------------------------------------------------------------------------------
// MIME structure

/// A MIME entity before rendering.
struct Part {
    /// The Content-Type value (unfolded); a multipart gets its boundary at rendering.
    content_type: String,
    /// Other header fields, unfolded.
    headers: Vec<String>,
    body: Body,
}

enum Body {
    /// The encoded body (its Content-Transfer-Encoding is among the headers).
    Leaf(Vec<u8>),
    Multi(Vec<Part>),
}

impl Part {
    fn mime_type(&self) -> &str {
        self.content_type.split(';').next().unwrap_or_default().trim()
    }

    fn multi(subtype: &str, params: &str, children: Vec<Part>) -> Part {
        Part { content_type: format!("multipart/{subtype}{params}"), headers: Vec::new(), body: Body::Multi(children) }
    }

    /// One part, or several wrapped in a multipart of the given subtype.
    fn wrap(subtype: &str, params: &str, mut children: Vec<Part>) -> Part {
        if children.len() == 1 {
            children.pop().unwrap_or_else(|| unreachable!())
        } else {
            Part::multi(subtype, params, children)
        }
    }
}

/// The header lines (folded) and body of a part. `counter` numbers the multiparts of
/// one message, so boundaries differ even between parts with equal content.
fn render(part: Part, depth: usize, counter: &mut u32) -> (Vec<String>, Vec<u8>) {
    let mut headers = Vec::with_capacity(part.headers.len() + 1);
    let body = match part.body {
        Body::Leaf(mut body) => {
            headers.push(fold(&format!("Content-Type: {}", part.content_type)));
            if body.last().is_some_and(|&b| b != b'\n') {
                body.push(b'\n');
            }
            body
        }
        Body::Multi(children) => {
            let rendered: Vec<Vec<u8>> = children
                .into_iter()
                .map(|child| {
                    let (h, b) = render(child, depth, counter);
                    let mut bytes = Vec::with_capacity(b.len() + 256);
                    for line in h {
                        bytes.extend_from_slice(line.as_bytes());
                        bytes.push(b'\n');
                    }
                    bytes.push(b'\n');
                    bytes.extend_from_slice(&b);
                    bytes
                })
                .collect();
            let boundary = choose_boundary(depth, counter, &rendered);
            headers.push(fold(&format!("Content-Type: {}; boundary=\"{boundary}\"", part.content_type)));
            let mut body = Vec::new();
            for child in rendered {
                body.extend_from_slice(format!("--{boundary}\n").as_bytes());
                // Each child ends with LF (leaf bodies are given one); that LF is part of
                // the delimiter that follows (RFC 2046 5.1.1).
                body.extend_from_slice(&child);
            }
            body.extend_from_slice(format!("--{boundary}--\n").as_bytes());
            body
        }
    };
    headers.extend(part.headers.iter().map(|h| fold(h)));
    (headers, body)
}

/// A boundary that occurs in none of the parts (see the module doc).
fn choose_boundary(depth: usize, counter: &mut u32, parts: &[Vec<u8>]) -> String {
    let crc = parts.iter().fold(0u32, |crc, p| crc32c::crc32c_append(crc, p));
    loop {
        *counter += 1;
        let boundary = format!("=_msgfs_{depth}_{counter}_{crc:08x}");
        let delimiter = format!("--{boundary}");
        if !parts.iter().any(|p| contains(p, delimiter.as_bytes())) {
            return boundary;
        }
    }
}

/// Does a line of `haystack` start with `needle`? Only a delimiter at the start of a line
/// ends a part (RFC 2046 5.1.1), so only line starts are compared: linear, not a
/// comparison at every byte.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.split(|&b| b == b'\n').any(|line| line.starts_with(needle))
}

fn build_body(item: &Item, depth: usize) -> Part {
    let mut plain = item.body_text.clone();
    let mut html = item.body_html.as_ref().map(|h| {
        let enc = encoding_rs::Encoding::for_label(h.charset.trim().as_bytes()).unwrap_or_else(|| {
            // An unknown label: UTF-8 if the bytes are, else the usual Windows code page.
            if std::str::from_utf8(&h.bytes).is_ok() {
                encoding_rs::UTF_8
            } else {
                encoding_rs::WINDOWS_1252
            }
        });
        // decode() also honours a BOM, which wins over a wrong charset label.
        enc.decode(&h.bytes).0.into_owned()
    });
    let mut rtf_part = None;
    if plain.is_none() && html.is_none() {
        if let Some(rtf_bytes) = &item.body_rtf {
            plain = Some(rtf::text_from_rtf(rtf_bytes));
            match rtf::html_from_rtf(rtf_bytes) {
                Some(h) => html = Some(String::from_utf8_lossy(&h).into_owned()),
                None => rtf_part = Some(rtf_leaf(rtf_bytes)),
            }
        }
    }
    if let Some(contact) = &item.contact {
        let notes = contact.notes.as_deref().or(plain.as_deref());
        plain = Some(contact_summary(contact, notes));
    }
    if plain.is_none() && html.is_none() {
        plain = Some(String::new());
    }

    let mut alternatives = Vec::new();
    if let Some(text) = &plain {
        alternatives.push(text_leaf("text/plain; charset=utf-8".into(), text));
    }
    alternatives.extend(rtf_part);
    if let Some(text) = &html {
        alternatives.push(text_leaf("text/html; charset=utf-8".into(), text));
    }
    let mut main = Part::wrap("alternative", "", alternatives);

    // Inline parts referenced from the HTML go next to it; without HTML nothing refers to
    // them, and they are ordinary (inline) parts of the mixed level.
    let (related, others): (Vec<&Attachment>, Vec<&Attachment>) = item.attachments.iter().partition(|a| {
        html.is_some() && a.inline && a.content_id.is_some() && matches!(a.data, AttachmentData::Bytes(_))
    });
    if !related.is_empty() {
        let mut children = vec![];
        let root_type = format!("; type=\"{}\"", main.mime_type());
        children.push(main);
        children.extend(related.iter().map(|a| attachment_part(a, depth)));
        main = Part::multi("related", &root_type, children);
    }

    let mut mixed = vec![main];
    if let Some(contact) = &item.contact {
        mixed.push(vcard_part(contact));
    }
    if let Some(appointment) = &item.appointment {
        mixed.push(calendar_part(item, appointment));
    }
    mixed.extend(others.iter().map(|a| attachment_part(a, depth)));
    Part::wrap("mixed", "", mixed)
}

/// A text part in UTF-8: 7bit when it is ASCII with short lines, else quoted-printable.
fn text_leaf(content_type: String, text: &str) -> Part {
    let text = to_lf(text);
    let seven_bit = text.is_ascii() && text.split('\n').all(|l| l.len() <= MAX_LINE) && !text.bytes().any(|b| b == 0);
    let (cte, body) =
        if seven_bit { ("7bit", text.into_bytes()) } else { ("quoted-printable", quoted_printable(text.as_bytes())) };
    Part { content_type, headers: vec![format!("Content-Transfer-Encoding: {cte}")], body: Body::Leaf(body) }
}

/// The RTF body itself as a text/rtf alternative: 7bit when it can be (RTF is usually
/// ASCII, and ignores its own line breaks, so LF normalisation is harmless), else base64.
fn rtf_leaf(rtf_bytes: &[u8]) -> Part {
    // Decompressed RTF often ends with NULs (padding); they are no part of the text.
    let end = rtf_bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let bytes = &rtf_bytes[..end];
    let seven_bit =
        bytes.iter().all(|&b| b != 0 && b < 0x80) && bytes.split(|&b| b == b'\n').all(|l| l.len() <= MAX_LINE);
    let (cte, body) = if seven_bit {
        ("7bit", to_lf(&String::from_utf8_lossy(bytes)).into_bytes())
    } else {
        ("base64", base64_lines(bytes))
    };
    Part {
        content_type: "text/rtf".into(),
        headers: vec![format!("Content-Transfer-Encoding: {cte}")],
        body: Body::Leaf(body),
    }
}

fn attachment_part(att: &Attachment, depth: usize) -> Part {
    let filename = att.filename.as_deref().map(|f| one_line(f).trim().to_string()).filter(|f| !f.is_empty());
    match &att.data {
        AttachmentData::Bytes(bytes) => {
            let declared = att.mime_type.as_deref().and_then(clean_mime_type);
            let mut mime = match declared {
                Some(m) if m != "application/octet-stream" => m,
                // A generic or missing type: the extension usually says more.
                _ => guess_mime_type(filename.as_deref().unwrap_or("")).to_string(),
            };
            let mut headers = Vec::new();
            let body;
            if mime == "message/rfc822" && plausible_message(bytes) {
                // RFC 2046 5.2.1 forbids base64 for message/rfc822; the message is kept
                // as text, with LF line endings like everything else written here.
                let text = to_lf(&String::from_utf8_lossy(bytes));
                headers.push(format!("Content-Transfer-Encoding: {}", identity_encoding(text.as_bytes())));
                body = text.into_bytes();
            } else {
                if mime.starts_with("message/") || mime.starts_with("multipart/") {
                    // Composite types cannot be base64 (RFC 2046); keep the bytes exact.
                    mime = "application/octet-stream".to_string();
                }
                headers.push("Content-Transfer-Encoding: base64".to_string());
                body = base64_lines(bytes);
            }
            let disposition = if att.inline { "inline" } else { "attachment" };
            headers.insert(0, content_disposition(disposition, filename.as_deref()));
            if let Some(cid) = att.content_id.as_deref().and_then(msg_id) {
                headers.push(format!("Content-ID: {cid}"));
            }
            if let Some(loc) = &att.content_location {
                let loc = loc.trim();
                if !loc.is_empty() && loc.len() <= 900 && loc.bytes().all(|b| (33..=126).contains(&b)) {
                    headers.push(format!("Content-Location: {loc}"));
                }
            }
            Part { content_type: with_name(&mime, filename.as_deref()), headers, body: Body::Leaf(body) }
        }
        AttachmentData::Message(inner) if depth < MAX_NESTING => {
            let bytes = write_nested(inner, depth + 1);
            let name = filename.unwrap_or_else(|| {
                let subject = inner
                    .subject
                    .as_deref()
                    .map(|s| one_line(s).trim().replace(['/', '\\'], "_"))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "message".to_string());
                format!("{subject}.eml")
            });
            Part {
                content_type: "message/rfc822".to_string(),
                headers: vec![
                    content_disposition("attachment", Some(&name)),
                    format!("Content-Transfer-Encoding: {}", identity_encoding(&bytes)),
                ],
                body: Body::Leaf(bytes),
            }
        }
        AttachmentData::Message(_) => missing_part(filename.as_deref(), "embedded messages are nested too deeply"),
        AttachmentData::Missing(reason) => missing_part(filename.as_deref(), reason),
    }
}

/// A note standing in for an attachment that could not be read, so that none is
/// silently dropped.
fn missing_part(filename: Option<&str>, reason: &str) -> Part {
    let shown = filename.unwrap_or("(no name)");
    let text = format!(
        "The attachment \"{shown}\" could not be read from the PST file.\nReason: {}\n",
        one_line(reason).trim()
    );
    let note_name = format!("{} (not readable).txt", filename.unwrap_or("attachment"));
    let mut part = text_leaf(with_name("text/plain; charset=utf-8", Some(&note_name)), &text);
    part.headers.insert(0, content_disposition("attachment", Some(&note_name)));
    part
}

/// 7bit, 8bit or binary: the identity encoding that describes the bytes.
fn identity_encoding(bytes: &[u8]) -> &'static str {
    if bytes.split(|&b| b == b'\n').any(|l| l.len() > MAX_LINE) || bytes.contains(&0) {
        "binary"
    } else if bytes.is_ascii() {
        "7bit"
    } else {
        "8bit"
    }
}

/// Bytes that can stand as a message/rfc822 body: text-like, starting with a header.
fn plausible_message(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1000)];
    std::str::from_utf8(bytes).is_ok()
        && !bytes.contains(&0)
        && head.split(|&b| b == b'\n').next().is_some_and(|l| l.contains(&b':'))
}

/// A MIME type as `type/subtype` in lower case, or None when it is not one.
fn clean_mime_type(m: &str) -> Option<String> {
    let m = m.trim().to_ascii_lowercase();
    let (t, s) = m.split_once('/')?;
    let token = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    (token(t) && token(s)).then_some(m)
}

/// The MIME type for a file name's extension; application/octet-stream when unknown.
fn guess_mime_type(filename: &str) -> &'static str {
    let ext = filename.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "htm" | "html" => "text/html",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "zip" => "application/zip",
        "ics" => "text/calendar",
        "vcf" => "text/vcard",
        "eml" => "message/rfc822",
        "msg" => "application/vnd.ms-outlook",
        _ => "application/octet-stream",
    }
}

/// A Content-Type value with a `name` parameter: quoted when ASCII, RFC 2047
/// encoded-words inside the quotes when not (what mail clients read for `name`).
fn with_name(content_type: &str, name: Option<&str>) -> String {
    match name {
        None => content_type.to_string(),
        Some(n) if n.is_ascii() && n.len() <= 60 => format!("{content_type}; name={}", quoted(n)),
        Some(n) => format!("{content_type}; name=\"{}\"", encoded_words(n)),
    }
}

/// A quoted-string with `"` and `\` escaped.
fn quoted(s: &str) -> String {
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

/// `Content-Disposition: inline|attachment; filename=...`: a quoted string when the name
/// is short ASCII, else RFC 2231 `filename*=utf-8''%..` in continuation segments short
/// enough to fold under 78 columns.
fn content_disposition(disposition: &str, filename: Option<&str>) -> String {
    let Some(name) = filename else {
        return format!("Content-Disposition: {disposition}");
    };
    if name.is_ascii() && name.len() <= 60 {
        return format!("Content-Disposition: {disposition}; filename={}", quoted(name));
    }
    // attr-char of RFC 2231 / RFC 5987: everything else is percent-encoded.
    let mut segments: Vec<String> = vec![String::new()];
    for &b in name.as_bytes() {
        let piece = if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            (b as char).to_string()
        } else {
            format!("%{b:02X}")
        };
        if segments.last().is_some_and(|s| s.len() + piece.len() > 54) {
            segments.push(String::new());
        }
        if let Some(last) = segments.last_mut() {
            last.push_str(&piece);
        }
    }
    let params: Vec<String> = if segments.len() == 1 {
        vec![format!("filename*=utf-8''{}", segments[0])]
    } else {
        segments
            .iter()
            .enumerate()
            .map(|(i, s)| if i == 0 { format!("filename*0*=utf-8''{s}") } else { format!("filename*{i}*={s}") })
            .collect()
    };
    format!("Content-Disposition: {disposition}; {}", params.join("; "))
}

// ---------------------------------------------------------------------------------------
// Contacts and appointments

fn contact_name(c: &Contact) -> String {
    let joined = [c.given_name.as_deref(), c.surname.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    c.display_name
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| (!joined.is_empty()).then_some(joined))
        .or_else(|| c.emails.first().cloned())
        .map(|n| one_line(&n).trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "Unnamed contact".to_string())
}

/// The readable text/plain body of a contact: its fields, then its notes.
fn contact_summary(c: &Contact, notes: Option<&str>) -> String {
    let mut s = format!("Name: {}\n", contact_name(c));
    for (label, value) in [("Company", &c.company), ("Title", &c.title)] {
        if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            s.push_str(&format!("{label}: {}\n", one_line(v)));
        }
    }
    for e in &c.emails {
        s.push_str(&format!("Email: {}\n", one_line(e)));
    }
    for (kind, number) in &c.phones {
        s.push_str(&format!("Phone ({}): {}\n", one_line(kind), one_line(number)));
    }
    if let Some(n) = notes.filter(|n| !n.trim().is_empty()) {
        s.push('\n');
        s.push_str(n);
        if !n.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// TEXT value escaping shared by vCard (RFC 6350 3.4) and iCalendar (RFC 5545 3.3.11).
fn escape_text(s: &str) -> String {
    let s = to_lf(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value (CN=...) in double quotes, which it may not contain (RFC 5545 3.1).
fn param_value(s: &str) -> String {
    let clean: String = s.chars().map(|c| if c == '"' { '\'' } else { c }).filter(|c| !c.is_control()).collect();
    format!("\"{clean}\"")
}

/// Appends a content line folded at 75 octets (RFC 6350 3.2, RFC 5545 3.1), never inside
/// a UTF-8 sequence; continuation lines start with a space that counts toward the 75.
fn content_line(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push('\n');
}

fn vcard_part(c: &Contact) -> Part {
    let name = contact_name(c);
    let mut v = String::new();
    let mut line = |l: String| content_line(&mut v, &l);
    line("BEGIN:VCARD".into());
    line("VERSION:4.0".into());
    line(format!("FN:{}", escape_text(&name)));
    let part = |s: &Option<String>| escape_text(s.as_deref().unwrap_or("").trim());
    line(format!("N:{};{};;;", part(&c.surname), part(&c.given_name)));
    if let Some(org) = c.company.as_deref().filter(|s| !s.trim().is_empty()) {
        line(format!("ORG:{}", escape_text(org.trim())));
    }
    if let Some(title) = c.title.as_deref().filter(|s| !s.trim().is_empty()) {
        line(format!("TITLE:{}", escape_text(title.trim())));
    }
    for e in &c.emails {
        line(format!("EMAIL:{}", escape_text(e.trim())));
    }
    for (kind, number) in &c.phones {
        let kind = kind.trim().to_ascii_lowercase();
        // The TYPE values RFC 6350 defines for TEL; others would not be understood.
        let ty = match kind.as_str() {
            "work" | "home" | "cell" | "fax" | "voice" | "pager" | "text" | "video" => {
                format!(";TYPE={kind}")
            }
            "mobile" => ";TYPE=cell".to_string(),
            _ => String::new(),
        };
        line(format!("TEL{ty}:{}", escape_text(number.trim())));
    }
    if let Some(notes) = c.notes.as_deref().filter(|s| !s.trim().is_empty()) {
        line(format!("NOTE:{}", escape_text(notes)));
    }
    line("END:VCARD".into());
    let filename = format!("{}.vcf", name.replace(['/', '\\'], "_"));
    let mut p = text_leaf(with_name("text/vcard; charset=utf-8", Some(&filename)), &v);
    p.headers.insert(0, content_disposition("attachment", Some(&filename)));
    p
}

/// iCalendar UTC date-time "20240201T130500Z".
fn ics_time(secs: i64) -> Option<String> {
    let (y, mo, d, h, mi, s, _) = utc(secs)?;
    Some(format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"))
}

/// iCalendar DATE of an all-day boundary. Outlook stores all-day events at local
/// midnight converted to UTC, so the nearest UTC midnight is the local date for any
/// time zone within 12 hours of UTC.
fn ics_date(secs: i64) -> Option<String> {
    let (y, mo, d, ..) = utc(secs.checked_add(43_200)?)?;
    Some(format!("{y:04}{mo:02}{d:02}"))
}

fn cal_address(prop: &str, a: &Address, extra: &str) -> Option<String> {
    let email = a.email.as_deref().map(clean_email).filter(|e| !e.is_empty())?;
    let cn = a
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| format!(";CN={}", param_value(n)))
        .unwrap_or_default();
    Some(format!("{prop}{cn}{extra}:mailto:{email}"))
}

fn calendar_part(item: &Item, a: &Appointment) -> Part {
    let mut v = String::new();
    let mut line = |l: String| content_line(&mut v, &l);
    line("BEGIN:VCALENDAR".into());
    line("VERSION:2.0".into());
    line("PRODID:-//msgfs//PST import//EN".into());
    line("METHOD:PUBLISH".into());
    line("BEGIN:VEVENT".into());
    let uid =
        a.uid.as_deref().map(one_line).map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).unwrap_or_else(|| {
            // Deterministic: from what identifies the event.
            let key = format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}",
                item.subject,
                a.start,
                a.end,
                item.from.as_ref().and_then(|f| f.email.as_deref()),
                item.message_id
            );
            let mut fnv = Fnv::new();
            fnv.write(key.as_bytes());
            format!("{:08x}{:016x}@msgfs.invalid", crc32c::crc32c(key.as_bytes()), fnv.0)
        });
    line(format!("UID:{}", escape_text(&uid)));
    let stamp = item
        .submit_time
        .or(item.delivery_time)
        .or(a.start)
        .and_then(ics_time)
        .unwrap_or_else(|| "19700101T000000Z".to_string());
    line(format!("DTSTAMP:{stamp}"));
    for (prop, time) in [("DTSTART", a.start), ("DTEND", a.end)] {
        let value = if a.all_day {
            time.and_then(ics_date).map(|d| format!("{prop};VALUE=DATE:{d}"))
        } else {
            time.and_then(ics_time).map(|t| format!("{prop}:{t}"))
        };
        if let Some(value) = value {
            line(value);
        }
    }
    if let Some(s) = item.subject.as_deref() {
        line(format!("SUMMARY:{}", escape_text(s)));
    }
    if let Some(l) = a.location.as_deref().filter(|l| !l.trim().is_empty()) {
        line(format!("LOCATION:{}", escape_text(l)));
    }
    if let Some(d) = item.body_text.as_deref().filter(|d| !d.trim().is_empty()) {
        line(format!("DESCRIPTION:{}", escape_text(d.trim_end())));
    }
    if let Some(o) = item.from.as_ref().and_then(|f| cal_address("ORGANIZER", f, "")) {
        line(o);
    }
    for Recipient { kind, address } in &item.recipients {
        let role = match kind {
            RecipientKind::To => ";ROLE=REQ-PARTICIPANT",
            RecipientKind::Cc => ";ROLE=OPT-PARTICIPANT",
            // Outlook puts resources (rooms, equipment) in Bcc.
            RecipientKind::Bcc => ";ROLE=NON-PARTICIPANT;CUTYPE=RESOURCE",
        };
        if let Some(att) = cal_address("ATTENDEE", address, role) {
            line(att);
        }
    }
    line("END:VEVENT".into());
    line("END:VCALENDAR".into());
    let mut p = text_leaf(with_name("text/calendar; charset=utf-8; method=PUBLISH", Some("invite.ics")), &v);
    p.headers.insert(0, content_disposition("attachment", Some("invite.ics")));
    p
}

// ---------------------------------------------------------------------------------------
// Encodings

/// CRLF and lone CR become LF.
fn to_lf(s: &str) -> String {
    if !s.contains('\r') {
        return s.to_string();
    }
    s.replace("\r\n", "\n").replace('\r', "\n")
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RFC 4648 base64 with padding, on one line.
fn base64(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    base64_into(bytes, &mut out);
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Append the base64 of `bytes` to `out`.
fn base64_into(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() { BASE64[(n >> (18 - 6 * i) & 63) as usize] } else { b'=' });
        }
    }
}

/// Base64 in lines of 76 characters (RFC 2045 6.8), each ending with LF.
fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 57 * 77 + 80);
    // 57 input bytes make exactly 76 output characters.
    for chunk in bytes.chunks(57) {
        base64_into(chunk, &mut out);
        out.push(b'\n');
    }
    out
}

/// Quoted-printable (RFC 2045 6.7) of LF-separated text: line breaks stay hard breaks,
/// encoded lines are at most 76 characters, trailing white space is encoded.
fn quoted_printable(text: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len() * 11 / 10 + 16);
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if n > 0 {
            out.push(b'\n');
        }
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal = match b {
                b' ' | b'\t' => !last,
                b'=' => false,
                33..=126 => true,
                _ => false,
            };
            let width = if literal { 1 } else { 3 };
            // Room for the "=" of a soft break, except after the line's last character.
            let limit = if last { 76 } else { 75 };
            if col + width > limit {
                out.extend_from_slice(b"=\n");
                col = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            col += width;
        }
    }
    out
}

/// 64-bit FNV-1a, the second half of generated ids (CRC32C alone is only 32 bits).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pst::item::Html;
    use mailparse::{addrparse_header, parse_mail, MailAddr, MailHeaderMap, ParsedMail};

    fn addr(name: Option<&str>, email: Option<&str>) -> Address {
        Address { name: name.map(str::to_string), email: email.map(str::to_string) }
    }

    fn rcpt(kind: RecipientKind, name: Option<&str>, email: Option<&str>) -> Recipient {
        Recipient { kind, address: addr(name, email) }
    }

    fn attachment(filename: &str, data: AttachmentData) -> Attachment {
        Attachment {
            filename: Some(filename.to_string()),
            mime_type: None,
            content_id: None,
            content_location: None,
            inline: false,
            data,
        }
    }

    fn note(subject: &str) -> Item {
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

    fn html(s: &str) -> Html {
        Html { bytes: s.as_bytes().to_vec(), charset: "utf-8".into() }
    }

    /// The tree of MIME types, e.g. "multipart/mixed(text/plain,image/png)".
    fn shape(m: &ParsedMail) -> String {
        if m.subparts.is_empty() {
            m.ctype.mimetype.clone()
        } else {
            let kids: Vec<String> = m.subparts.iter().map(shape).collect();
            format!("{}({})", m.ctype.mimetype, kids.join(","))
        }
    }

    /// The decoded text of a part. mailparse's quoted-printable decoder gives hard line
    /// breaks as CRLF, whatever the encoded text used.
    fn body(m: &ParsedMail) -> String {
        m.get_body().unwrap().replace("\r\n", "\n")
    }

    fn header(m: &ParsedMail, name: &str) -> Option<String> {
        m.get_headers().get_first_value(name)
    }

    /// Every line of a written message: LF only, and no longer than RFC 5322 allows.
    fn check_lines(bytes: &[u8]) {
        assert!(!bytes.contains(&b'\r'), "CR in output");
        for line in bytes.split(|&b| b == b'\n') {
            assert!(line.len() <= MAX_LINE, "line too long");
        }
    }

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
    fn tree_shapes() {
        let png = AttachmentData::Bytes(b"\x89PNG fake".to_vec());
        let mut item = note("s");
        type Change<'a> = Box<dyn Fn(&mut Item) + 'a>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|_| {}), "text/plain"),
            (
                Box::new(|i| {
                    i.body_text = None;
                    i.body_html = Some(html("<p>x</p>"));
                }),
                "text/html",
            ),
            (
                Box::new(|i| {
                    i.body_text = Some("x".into());
                    i.body_html = Some(html("<p>x</p>"));
                }),
                "multipart/alternative(text/plain,text/html)",
            ),
            (
                Box::new(|i| {
                    let mut a = attachment("img.png", png.clone());
                    a.inline = true;
                    a.content_id = Some("img1@x".into());
                    i.attachments.push(a);
                }),
                "multipart/related(multipart/alternative(text/plain,text/html),image/png)",
            ),
            (
                Box::new(|i| {
                    i.attachments
                        .push(attachment("a.pdf", AttachmentData::Bytes(vec![1, 2, 3])))
                }),
                "multipart/mixed(multipart/related(multipart/alternative(text/plain,text/html),image/png),application/pdf)",
            ),
            (
                Box::new(|i| i.body_html = None),
                // Without HTML the inline image is an ordinary part.
                "multipart/mixed(text/plain,image/png,application/pdf)",
            ),
        ];
        for (change, expected) in cases {
            change(&mut item);
            let bytes = write_item(&item);
            check_lines(&bytes);
            let m = parse_mail(&bytes).unwrap();
            assert_eq!(shape(&m), expected);
        }
    }

    #[test]
    fn inline_image_with_content_id() {
        let mut item = note("s");
        item.body_html = Some(html("<img src=\"cid:img1@x\">"));
        let mut a = attachment("pic.jpg", AttachmentData::Bytes(vec![0xff, 0xd8, 0xff]));
        a.inline = true;
        a.content_id = Some("img1@x".into());
        item.attachments.push(a);
        let bytes = write_item(&item);
        let m = parse_mail(&bytes).unwrap();
        assert_eq!(m.ctype.mimetype, "multipart/related");
        assert_eq!(m.ctype.params.get("type").map(String::as_str), Some("multipart/alternative"));
        let img = &m.subparts[1];
        assert_eq!(img.ctype.mimetype, "image/jpeg");
        assert_eq!(header(img, "Content-ID").unwrap(), "<img1@x>");
        assert_eq!(img.get_content_disposition().disposition, mailparse::DispositionType::Inline);
        assert_eq!(img.get_body_raw().unwrap(), vec![0xff, 0xd8, 0xff]);
    }

    #[test]
    fn base64_attachment_round_trip() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut item = note("s");
        let mut a = attachment("data.bin", AttachmentData::Bytes(data.clone()));
        a.mime_type = Some("Application/X-Custom".into());
        item.attachments.push(a);
        item.attachments.push(attachment("report.pdf", AttachmentData::Bytes(vec![])));
        let bytes = write_item(&item);
        check_lines(&bytes);
        let m = parse_mail(&bytes).unwrap();
        let part = &m.subparts[1];
        assert_eq!(part.ctype.mimetype, "application/x-custom");
        assert_eq!(header(part, "Content-Transfer-Encoding").unwrap(), "base64");
        assert_eq!(part.get_body_raw().unwrap(), data);
        assert_eq!(part.get_content_disposition().params.get("filename").unwrap(), "data.bin");
        assert_eq!(part.ctype.params.get("name").unwrap(), "data.bin");
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.lines().any(|l| l.len() == 76));
        assert!(text.lines().all(|l| l.len() <= 78 || l.starts_with("Content-")));
        // Type from the extension; an empty file stays empty.
        assert_eq!(m.subparts[2].ctype.mimetype, "application/pdf");
        assert_eq!(m.subparts[2].get_body_raw().unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn non_ascii_filename() {
        let name = "Résumé — 日本語の履歴書 with a rather long name, \"quoted\"; and more.docx";
        let mut item = note("s");
        item.attachments.push(attachment(name, AttachmentData::Bytes(b"PK".to_vec())));
        item.attachments.push(attachment("a \"q\" b.txt", AttachmentData::Bytes(b"t".to_vec())));
        let bytes = write_item(&item);
        check_lines(&bytes);
        let head_end = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
        for line in String::from_utf8_lossy(&bytes[head_end..]).lines() {
            if line.starts_with("Content-") || line.starts_with(' ') {
                assert!(line.len() <= 78, "{line}");
            }
        }
        let m = parse_mail(&bytes).unwrap();
        let part = &m.subparts[1];
        assert_eq!(part.ctype.mimetype, "application/vnd.openxmlformats-officedocument.wordprocessingml.document");
        let disp = part.get_content_disposition();
        assert_eq!(disp.disposition, mailparse::DispositionType::Attachment);
        assert_eq!(disp.params.get("filename").unwrap(), name);
        assert_eq!(part.ctype.params.get("name").unwrap(), name);
        let disp = m.subparts[2].get_content_disposition();
        assert_eq!(disp.params.get("filename").unwrap(), "a \"q\" b.txt");
    }

    #[test]
    fn embedded_message() {
        let mut inner = note("Inner ünïcode subject");
        inner.attachments.push(attachment("deep.txt", AttachmentData::Bytes(b"deep".to_vec())));
        let mut item = note("outer");
        item.attachments
            .push(Attachment { filename: None, ..attachment("", AttachmentData::Message(Box::new(inner))) });
        let bytes = write_item(&item);
        check_lines(&bytes);
        let m = parse_mail(&bytes).unwrap();
        let part = &m.subparts[1];
        assert_eq!(part.ctype.mimetype, "message/rfc822");
        assert_ne!(header(part, "Content-Transfer-Encoding").as_deref(), Some("base64"));
        assert_eq!(part.get_content_disposition().params.get("filename").unwrap(), "Inner ünïcode subject.eml");
        let raw = part.get_body_raw().unwrap();
        let inner = parse_mail(&raw).unwrap();
        assert_eq!(header(&inner, "Subject").unwrap(), "Inner ünïcode subject");
        assert_eq!(shape(&inner), "multipart/mixed(text/plain,text/plain)");
        assert_eq!(inner.subparts[1].get_body_raw().unwrap(), b"deep");
        // The outer boundary differs from the inner one.
        let outer_b = m.ctype.params.get("boundary").unwrap();
        assert_ne!(outer_b, inner.ctype.params.get("boundary").unwrap());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut item = note("level");
        for _ in 0..(MAX_NESTING + 5) {
            let mut outer = note("level");
            outer.attachments.push(attachment("inner.eml", AttachmentData::Message(Box::new(item))));
            item = outer;
        }
        let text = String::from_utf8(write_item(&item)).unwrap();
        assert!(text.contains("nested too deeply"));
    }

    #[test]
    fn missing_attachment_note() {
        let mut item = note("s");
        item.attachments.push(attachment("plan.xlsx", AttachmentData::Missing("attached by reference".into())));
        let bytes = write_item(&item);
        let m = parse_mail(&bytes).unwrap();
        assert_eq!(shape(&m), "multipart/mixed(text/plain,text/plain)");
        let part = &m.subparts[1];
        let body = body(part);
        assert!(body.contains("\"plan.xlsx\" could not be read"), "{body}");
        assert!(body.contains("attached by reference"));
        assert_eq!(part.get_content_disposition().params.get("filename").unwrap(), "plan.xlsx (not readable).txt");
    }

    #[test]
    fn html_charset_and_quoted_printable() {
        let mut item = note("s");
        item.body_html = Some(Html { bytes: b"<p>Caf\xe9 \x80 =</p>".to_vec(), charset: "windows-1252".into() });
        let long = "é".repeat(300) + " \n" + &"x".repeat(1200) + "\r\nend =\t";
        item.body_text = Some(long.clone());
        let bytes = write_item(&item);
        check_lines(&bytes);
        let m = parse_mail(&bytes).unwrap();
        let (plain, html) = (&m.subparts[0], &m.subparts[1]);
        assert_eq!(header(plain, "Content-Transfer-Encoding").unwrap(), "quoted-printable");
        assert_eq!(plain.ctype.charset, "utf-8");
        assert_eq!(body(plain), long.replace("\r\n", "\n"));
        assert_eq!(html.ctype.charset, "utf-8");
        assert_eq!(body(html), "<p>Café € =</p>");
        for line in String::from_utf8_lossy(&bytes).lines() {
            assert!(line.len() <= 78, "{line}");
        }
    }

    #[test]
    fn contact_vcard() {
        let item = Item {
            class: "IPM.Contact".into(),
            subject: Some("Jane Q. Doe".into()),
            contact: Some(Contact {
                display_name: Some("Jane Q. Doe".into()),
                given_name: Some("Jane".into()),
                surname: Some("Doe".into()),
                company: Some("Acme, Inc.; Widgets".into()),
                title: Some("Engineer".into()),
                emails: vec!["jane@example.com".into()],
                phones: vec![("work".into(), "+1 555 0100".into()), ("cell".into(), "+1 555 0199".into())],
                notes: Some(
                    "Met at the conference.\r\nLikes long notes that go on and on, past the 75 octet limit: ü ü ü ü"
                        .into(),
                ),
            }),
            ..Item::default()
        };
        let bytes = write_item(&item);
        check_lines(&bytes);
        let m = parse_mail(&bytes).unwrap();
        assert_eq!(shape(&m), "multipart/mixed(text/plain,text/vcard)");
        let summary = body(&m.subparts[0]);
        assert!(summary.contains("Name: Jane Q. Doe\n"));
        assert!(summary.contains("Phone (cell): +1 555 0199\n"));
        assert!(summary.contains("Met at the conference."));
        let card = &m.subparts[1];
        assert_eq!(card.get_content_disposition().params.get("filename").unwrap(), "Jane Q. Doe.vcf");
        let raw = body(card);
        for line in raw.lines() {
            assert!(line.len() <= 75, "{line}");
        }
        let unfolded = raw.replace("\n ", "");
        let lines: Vec<&str> = unfolded.lines().collect();
        assert_eq!(lines[0], "BEGIN:VCARD");
        assert_eq!(lines[1], "VERSION:4.0");
        for expected in [
            "FN:Jane Q. Doe",
            "N:Doe;Jane;;;",
            "ORG:Acme\\, Inc.\\; Widgets",
            "TITLE:Engineer",
            "EMAIL:jane@example.com",
            "TEL;TYPE=work:+1 555 0100",
            "TEL;TYPE=cell:+1 555 0199",
            "NOTE:Met at the conference.\\nLikes long notes that go on and on\\, past the 75 octet limit: ü ü ü ü",
            "END:VCARD",
        ] {
            assert!(lines.contains(&expected), "{expected} not in {lines:?}");
        }
    }

    #[test]
    fn appointment_icalendar() {
        let mut item = note("Planning, phase 2");
        item.class = "IPM.Appointment".into();
        item.recipients.push(rcpt(RecipientKind::Cc, Some("Opt \"O\" Person"), Some("opt@example.com")));
        item.appointment = Some(Appointment {
            start: Some(1_706_864_400), // 2024-02-02 09:00:00 UTC
            end: Some(1_706_868_000),
            location: Some("Room 1; 2nd floor".into()),
            all_day: false,
            uid: None,
        });
        let bytes = write_item(&item);
        check_lines(&bytes);
        let m = parse_mail(&bytes).unwrap();
        assert_eq!(shape(&m), "multipart/mixed(text/plain,text/calendar)");
        let cal = &m.subparts[1];
        assert_eq!(cal.ctype.params.get("method").unwrap(), "PUBLISH");
        assert_eq!(cal.get_content_disposition().params.get("filename").unwrap(), "invite.ics");
        let ics = body(cal).replace("\n ", "");
        let lines: Vec<&str> = ics.lines().collect();
        for expected in [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "METHOD:PUBLISH",
            "BEGIN:VEVENT",
            "DTSTAMP:20240201T130500Z",
            "DTSTART:20240202T090000Z",
            "DTEND:20240202T100000Z",
            "SUMMARY:Planning\\, phase 2",
            "LOCATION:Room 1\\; 2nd floor",
            "ORGANIZER;CN=\"Alice Example\":mailto:alice@example.com",
            "ATTENDEE;ROLE=REQ-PARTICIPANT:mailto:bob@example.com",
            "ATTENDEE;CN=\"Opt 'O' Person\";ROLE=OPT-PARTICIPANT:mailto:opt@example.com",
            "END:VEVENT",
            "END:VCALENDAR",
        ] {
            assert!(lines.contains(&expected), "{expected} not in {lines:?}");
        }
        let uid = lines.iter().find(|l| l.starts_with("UID:")).unwrap();
        assert!(uid.ends_with("@msgfs.invalid"));

        // All day: dates, rounded to the local midnight Outlook stored in UTC.
        item.appointment = Some(Appointment {
            start: Some(1_706_828_400), // 2024-02-01 23:00 UTC = 2024-02-02 00:00 +0100
            end: Some(1_706_914_800),
            all_day: true,
            uid: Some("given-uid".into()),
            ..Appointment::default()
        });
        let bytes = write_item(&item);
        let ics = body(&parse_mail(&bytes).unwrap().subparts[1]);
        assert!(ics.contains("\nUID:given-uid\n"));
        assert!(ics.contains("\nDTSTART;VALUE=DATE:20240202\n"));
        assert!(ics.contains("\nDTEND;VALUE=DATE:20240203\n"));
    }

    #[test]
    fn rtf_only_bodies() {
        let mut item = note("s");
        item.body_text = None;
        item.body_rtf = Some(
            br"{\rtf1\ansi\ansicpg1252\fromhtml1 {\*\htmltag19 <html>}{\*\htmltag50 <body>}\htmlrtf {\htmlrtf0 Caf\'e9\htmlrtf\par\htmlrtf0 {\*\htmltag244 <br>}\htmlrtf }\htmlrtf0 {\*\htmltag58 </body>}{\*\htmltag27 </html>}}"
                .to_vec(),
        );
        let m_bytes = write_item(&item);
        let m = parse_mail(&m_bytes).unwrap();
        assert_eq!(shape(&m), "multipart/alternative(text/plain,text/html)");
        assert_eq!(body(&m.subparts[0]), "Café");
        assert_eq!(body(&m.subparts[1]), "<html><body>Café<br></body></html>");

        let rtf = b"{\\rtf1\\ansi Plain \\b bold\\b0\\par second}\r\n\0".to_vec();
        item.body_rtf = Some(rtf);
        let m_bytes = write_item(&item);
        check_lines(&m_bytes);
        let m = parse_mail(&m_bytes).unwrap();
        assert_eq!(shape(&m), "multipart/alternative(text/plain,text/rtf)");
        assert_eq!(body(&m.subparts[0]), "Plain bold\nsecond");
        assert_eq!(m.subparts[1].get_body_raw().unwrap(), b"{\\rtf1\\ansi Plain \\b bold\\b0\\par second}");
        // A text body wins over the RTF.
        item.body_text = Some("text".into());
        let m_bytes = write_item(&item);
        assert_eq!(shape(&parse_mail(&m_bytes).unwrap()), "text/plain");
    }

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

    #[test]
    fn boundary_collision_avoided() {
        // A 7bit body that contains what the first boundary candidate would be.
        let mut item = note("s");
        item.body_html = Some(html("<p>x</p>"));
        let probe = write_item(&item);
        let b = parse_mail(&probe).unwrap().ctype.params["boundary"].clone();
        item.body_text = Some(format!("--{b}\n"));
        // The crc changes with the body, so the candidate does too; feed it back once more.
        let probe = write_item(&item);
        let b2 = parse_mail(&probe).unwrap().ctype.params["boundary"].clone();
        item.body_text = Some(format!("--{b2}\n"));
        let bytes = write_item(&item);
        let m = parse_mail(&bytes).unwrap();
        assert_eq!(shape(&m), "multipart/alternative(text/plain,text/html)");
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

    #[test]
    fn encoders() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(String::from_utf8(quoted_printable(b"a=b \nc\t\n\xc3\xa9")).unwrap(), "a=3Db=20\nc=09\n=C3=A9");
        assert_eq!(format_address(&addr(Some("a@b.c"), Some("A@B.C"))).unwrap(), "A@B.C");
        assert_eq!(format_address(&addr(None, None)), None);
        assert_eq!(rfc5322_date(951_782_400).unwrap(), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(-1).unwrap(), "Wed, 31 Dec 1969 23:59:59 +0000");
        assert_eq!(rfc5322_date(i64::MAX), None);
    }
}
