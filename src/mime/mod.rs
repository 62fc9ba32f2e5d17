//! Message properties parsed from the header block (subject, from, to, date, message-id)
//! and the file names imported messages get: `YYYY-MM-DD Subject.eml`.
//!
//! Only the header block is read: up to the first empty line, and never more than
//! [`MAX_HEADER_BYTES`], so a huge or headerless message costs a bounded amount of work.
//! Parsing is best effort and never panics: a malformed line ends the header block, a
//! value that is not UTF-8 is read as Latin-1, an undecodable encoded word stays as written.

pub mod date;
pub mod parts;
pub mod summary;

/// How much of a message is searched for its header block. Longer header blocks are cut
/// here; the fields beyond are not seen.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

/// The longest subject part of an imported message's name, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 200;

/// The longest name a folder can hold (the store's limit, as for a directory entry).
const MAX_NAME_BYTES: usize = 255;

/// The subject part of a name when the subject is missing or cleans to nothing.
pub const NO_SUBJECT: &str = "(no subject)";

/// Properties of a message, from its header block. Subject, From and To have RFC 2047
/// encoded words decoded; Date and Message-ID are as written, unfolded and trimmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Props {
    pub subject: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub date: Option<String>,
    /// The Date header as Unix time (seconds, UTC), when it parses.
    pub date_unix: Option<i64>,
    pub message_id: Option<String>,
}

impl Props {
    /// An imported message's mtime (ns): the Date header's time, else `fallback`.
    pub fn mtime_ns(&self, fallback: Option<i64>) -> Option<i64> {
        self.date_unix.and_then(|s| s.checked_mul(1_000_000_000)).or(fallback)
    }
}

/// The header block: everything before the first empty line (LF or CRLF), capped at
/// [`MAX_HEADER_BYTES`].
fn header_block(content: &[u8]) -> &[u8] {
    let content = &content[..content.len().min(MAX_HEADER_BYTES)];
    let mut start = 0;
    while start < content.len() {
        let end = content[start..].iter().position(|&b| b == b'\n').map_or(content.len(), |i| start + i + 1);
        let line = &content[start..end];
        if line == b"\n" || line == b"\r\n" {
            return &content[..start];
        }
        start = end;
    }
    content
}

/// Is this line the start of a header field (`Name:` with a printable ASCII name)?
/// Obsolete syntax allows blanks between the name and the colon.
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line[..colon].trim_ascii_end();
    (!name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))).then_some(name)
}

/// The fields of a header block as (name, whole field including folded lines). A leading
/// mbox `From ` line is skipped; any other line that is neither a field nor a
/// continuation ends the block (the message has no proper header separator).
fn fields(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut pos = 0;
    let mut first = true;
    std::iter::from_fn(move || loop {
        if pos >= block.len() {
            return None;
        }
        let line_end =
            |from: usize| block[from..].iter().position(|&b| b == b'\n').map_or(block.len(), |i| from + i + 1);
        let start = pos;
        let mut end = line_end(start);
        let line = &block[start..end];
        let was_first = std::mem::replace(&mut first, false);
        let Some(name) = field_name(line) else {
            if was_first && (line.starts_with(b"From ") || line.starts_with(b">From ")) {
                pos = end;
                continue;
            }
            pos = block.len();
            return None;
        };
        while end < block.len() && (block[end] == b' ' || block[end] == b'\t') {
            end = line_end(end);
        }
        pos = end;
        return Some((name, &block[start..end]));
    })
}

/// A field's value decoded for display: unfolded, encoded words decoded (mailparse does
/// RFC 2047 and the UTF-8-else-Latin-1 reading of 8-bit bytes), trimmed.
fn decoded_value(field: &[u8]) -> String {
    match mailparse::parse_header(field) {
        Ok((h, _)) => h.get_value().trim().to_string(),
        Err(_) => raw_value(field),
    }
}

/// A field's value as written: unfolded (line breaks removed, the folding blanks kept),
/// read as UTF-8 or else Latin-1, trimmed.
fn raw_value(field: &[u8]) -> String {
    let colon = field.iter().position(|&b| b == b':').map_or(field.len(), |i| i + 1);
    let bytes: Vec<u8> = field[colon..].iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    let text = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    };
    text.trim().to_string()
}

/// Parse the properties from a message's header block. The first occurrence of each
/// field counts.
pub fn parse_props(content: &[u8]) -> Props {
    let mut p = Props::default();
    for (name, field) in fields(header_block(content)) {
        let slot = match name {
            n if n.eq_ignore_ascii_case(b"subject") => &mut p.subject,
            n if n.eq_ignore_ascii_case(b"from") => &mut p.from,
            n if n.eq_ignore_ascii_case(b"to") => &mut p.to,
            n if n.eq_ignore_ascii_case(b"date") => &mut p.date,
            n if n.eq_ignore_ascii_case(b"message-id") => &mut p.message_id,
            _ => continue,
        };
        if slot.is_some() {
            continue;
        }
        let decode = name.eq_ignore_ascii_case(b"subject")
            || name.eq_ignore_ascii_case(b"from")
            || name.eq_ignore_ascii_case(b"to");
        *slot = Some(if decode { decoded_value(field) } else { raw_value(field) });
    }
    p.date_unix = p.date.as_deref().and_then(date::parse_date);
    p
}

/// Cut `s` to at most `max` bytes on a character boundary.
fn cut_at(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The subject as a name part: `/` becomes `_`, NUL and other control characters (and the
/// Unicode line and paragraph separators) become spaces, runs of blanks collapse to one,
/// leading dots go (the mount treats dot names as editors' scratch files), then it is
/// trimmed and cut at [`MAX_SUBJECT_BYTES`]. Empty gives [`NO_SUBJECT`].
pub fn clean_subject(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len().min(MAX_SUBJECT_BYTES * 2));
    let mut blank = true; // at the start, so leading blanks are dropped
    for c in subject.chars() {
        let c = match c {
            '/' => '_',
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => ' ',
            c => c,
        };
        if c.is_whitespace() {
            if !blank {
                out.push(' ');
            }
            blank = true;
        } else if c == '.' && out.is_empty() {
            // a leading dot, dropped
        } else {
            out.push(c);
            blank = false;
        }
        // Stop early on huge subjects; a little slack keeps the cut below exact.
        if out.len() > MAX_SUBJECT_BYTES + 8 {
            break;
        }
    }
    let cut = cut_at(&out, MAX_SUBJECT_BYTES).trim_end();
    if cut.is_empty() {
        NO_SUBJECT.to_string()
    } else {
        cut.to_string()
    }
}

/// The name an imported message gets: `YYYY-MM-DD Subject.eml`, the date being the Date
/// header's day in UTC. Without a parsable Date the date part is left out: `Subject.eml`.
pub fn import_name(props: &Props) -> String {
    let subject = clean_subject(props.subject.as_deref().unwrap_or(""));
    match props.date_unix {
        Some(t) => format!("{} {subject}.eml", date::ymd(t)),
        None => format!("{subject}.eml"),
    }
}

/// Split a name into stem and extension (with its dot). Only a short extension counts,
/// so `Re: v1.2 release notes` has none.
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 8 && !name[i..].contains(' ') => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// `wanted` if it is free, else the first of `stem (2).eml`, `stem (3).eml`, ... that is.
pub fn unique_name(wanted: &str, taken: impl Fn(&str) -> bool) -> String {
    unique_name_from(wanted, 2, taken).0
}

/// [`unique_name`] starting the numbering at `first` (callers that know `(2)` to
/// `(first - 1)` are taken skip them). Returns the name and the number used (1 for
/// `wanted` itself). Names stay within 255 bytes by shortening the stem.
pub fn unique_name_from(wanted: &str, first: u64, taken: impl Fn(&str) -> bool) -> (String, u64) {
    if !taken(wanted) {
        return (wanted.to_string(), 1);
    }
    let (stem, ext) = split_ext(wanted);
    let mut n = first.max(2);
    loop {
        let suffix = format!(" ({n}){ext}");
        let stem = cut_at(stem, MAX_NAME_BYTES.saturating_sub(suffix.len()));
        let candidate = format!("{stem}{suffix}");
        if !taken(&candidate) {
            return (candidate, n);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(raw: &str) -> Props {
        parse_props(raw.as_bytes())
    }

    #[test]
    fn parse_props_reads_only_the_header_block() {
        let p = props("Subject: hello\nFrom: a@b\n\nSubject: body\nDate: 1 Jan 2000 00:00 +0000\n");
        assert_eq!(p.subject.as_deref(), Some("hello"));
        assert_eq!(p.from.as_deref(), Some("a@b"));
        assert_eq!(p.date, None);
        assert_eq!(p.date_unix, None);
    }

    #[test]
    fn parse_props_handles_crlf_and_folding() {
        let p = props("Subject: a long\r\n  folded\r\n\tsubject\r\nMessage-ID:\r\n <x@y>\r\nDate: Thu, 22 Aug 2002\r\n 11:36:23 +0000\r\n\r\nbody");
        assert_eq!(p.subject.as_deref(), Some("a long folded subject"));
        assert_eq!(p.message_id.as_deref(), Some("<x@y>"));
        assert_eq!(p.date.as_deref(), Some("Thu, 22 Aug 2002 11:36:23 +0000"));
        assert_eq!(p.date_unix, Some(1030016183));
    }

    #[test]
    fn parse_props_decodes_encoded_words() {
        let p = props("Subject: =?UTF-8?B?SGVsbG8gV8O2cmxk?=\nFrom: =?ISO-8859-1?Q?Andr=E9?= <a@b>\nTo: =?utf-8?q?J=C3=BCrgen?= <j@k>\n\n");
        assert_eq!(p.subject.as_deref(), Some("Hello Wörld"));
        assert_eq!(p.from.as_deref(), Some("André <a@b>"));
        assert_eq!(p.to.as_deref(), Some("Jürgen <j@k>"));
    }

    #[test]
    fn parse_props_reads_8bit_as_utf8_else_latin1() {
        assert_eq!(parse_props("Subject: caf\u{e9}\n\n".as_bytes()).subject.as_deref(), Some("café"));
        assert_eq!(parse_props(b"Subject: caf\xe9\n\n").subject.as_deref(), Some("café"));
    }

    #[test]
    fn parse_props_skips_an_mbox_from_line_and_stops_at_garbage() {
        let p = props("From someone Thu Aug 22 11:36:23 2002\nSubject: s\nthis is no header\nTo: x\n");
        assert_eq!(p.subject.as_deref(), Some("s"));
        assert_eq!(p.to, None);
    }

    #[test]
    fn parse_props_survives_malformed_input() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"Subject:From:To:Date=?UTF-8?B?Q?=\r\n \t\x00\xff\xc3>abc";
        for len in 0..2000 {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let p = parse_props(&buf);
            let _ = import_name(&p);
        }
        let huge = vec![b'X'; 3 * MAX_HEADER_BYTES];
        assert_eq!(parse_props(&huge), Props::default());
    }

    #[test]
    fn import_name_is_utc_date_and_subject() {
        let p = props("Date: Mon, 1 Jan 2024 23:30:00 -0800\nSubject: Plans\n\n");
        assert_eq!(import_name(&p), "2024-01-02 Plans.eml");
        assert_eq!(import_name(&props("Subject: No date\n\n")), "No date.eml");
        assert_eq!(import_name(&props("Date: 1 Jan 2024 00:00 +0000\n\n")), "2024-01-01 (no subject).eml");
    }

    #[test]
    fn clean_subject_removes_slash_nul_and_controls() {
        assert_eq!(clean_subject("a/b\0c\td\r\n  e\u{7f}f"), "a_b c d e f");
        assert_eq!(clean_subject("  \t "), NO_SUBJECT);
        assert_eq!(clean_subject("...hidden"), "hidden");
        assert_eq!(clean_subject(". . ."), NO_SUBJECT);
        assert_eq!(clean_subject("line\u{2028}sep"), "line sep");
    }

    #[test]
    fn clean_subject_cuts_at_200_bytes_on_a_char_boundary() {
        let s = "é".repeat(300); // 600 bytes
        let c = clean_subject(&s);
        assert_eq!(c.len(), 200);
        assert_eq!(c, "é".repeat(100));
        let s = format!("a{}", "€".repeat(100)); // 1 + 300 bytes; 3-byte chars
        let c = clean_subject(&s);
        assert!(c.len() <= 200 && c.len() > 196, "{}", c.len());
        assert!(c.starts_with('a'));
        let c = clean_subject(&format!("{} tail", "x".repeat(199)));
        assert_eq!(c, "x".repeat(199), "a cut that ends in a blank is trimmed");
    }

    #[test]
    fn unique_name_numbers_before_the_extension() {
        let taken = ["a.eml", "a (2).eml", "b"];
        let t = |n: &str| taken.contains(&n);
        assert_eq!(unique_name("c.eml", t), "c.eml");
        assert_eq!(unique_name("a.eml", t), "a (3).eml");
        assert_eq!(unique_name("b", t), "b (2)");
        assert_eq!(unique_name_from("a.eml", 5, t), ("a (5).eml".to_string(), 5));
    }

    #[test]
    fn unique_name_stays_within_255_bytes() {
        let long = format!("2024-01-01 {}.eml", "ü".repeat(120)); // 11 + 240 + 4 = 255
        assert_eq!(long.len(), 255);
        let n = unique_name(&long, |n| n == long);
        assert!(n.len() <= 255, "{}", n.len());
        assert!(n.ends_with(" (2).eml"));
    }
}
