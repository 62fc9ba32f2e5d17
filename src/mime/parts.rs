//! The part tree of a MIME message: which parts it has (type, decoded size, the file name
//! each gets in its `.parts` directory), and each part's bytes decoded from base64 or
//! quoted-printable on demand. Used by the mounted views (`crate::fs::parts`) and by
//! `msgfs parts`.
//!
//! The tree keeps no content: each leaf keeps the place of its encoded body in the
//! message's bytes and its encoding, so a tree costs a few hundred bytes per part whatever
//! the message's size, and a part is decoded only when it is read ([`PartTree::decode`]).
//! Charsets are left as they are: a part's file holds its bytes after the transfer
//! encoding is undone, nothing more.
//!
//! Parsing never fails. mailparse reads the structure (boundaries, headers, RFC 2047 and
//! RFC 2231 parameters); whatever it cannot read (a part without its closing boundary, a
//! multipart without a boundary, a header block it refuses) still gives the parts that
//! can be read, at worst the whole body as one part, and a body whose encoding is broken
//! is decoded as far as it goes.

use std::collections::HashMap;
use std::ops::Range;

use mailparse::body::Body;
use mailparse::{DispositionType, ParsedContentType, ParsedMail};

use super::{clean_subject, parse_props, unique_name_from, NO_SUBJECT};

/// The longest file name a part gets, in bytes (a directory entry's limit).
const MAX_NAME_BYTES: usize = 255;

/// How a part's body is written in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// 7bit, 8bit, binary, or none given: the bytes are the content.
    Identity,
    Base64,
    QuotedPrintable,
}

/// What a part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A multipart: its parts follow it in the tree, one level deeper.
    Container,
    /// A body or an attachment: a file.
    Leaf,
    /// An embedded message (message/rfc822): a file of its own, with parts of its own.
    Message,
}

/// One part, in document order.
#[derive(Clone, Debug)]
pub struct Part {
    /// 0 for the message's own top part.
    pub depth: u32,
    /// The Content-Type's type/subtype, lower case.
    pub mimetype: String,
    pub kind: Kind,
    /// Its file name in the message's `.parts` directory: unique among the message's
    /// parts; None for containers.
    pub name: Option<String>,
    /// Decoded size in bytes (0 for containers).
    pub size: u64,
    /// Where its encoded body is in the message's bytes.
    body: Range<usize>,
    encoding: Encoding,
}

/// The parts of one message.
#[derive(Clone, Debug, Default)]
pub struct PartTree {
    pub parts: Vec<Part>,
    /// Index of each name in `parts`: a message may have many thousands of parts, and
    /// naming each or looking one up must not go through them all.
    by_name: HashMap<String, usize>,
}

/// A part as mailparse read it, before names are given.
struct Raw {
    depth: u32,
    mimetype: String,
    kind: Kind,
    /// The file name the message gives it (Content-Disposition's filename, else
    /// Content-Type's name), decoded.
    filename: Option<String>,
    attachment: bool,
    body: Range<usize>,
    encoding: Encoding,
}

impl PartTree {
    /// The part tree of `msg`. Never fails (see the module's comment).
    pub fn parse(msg: &[u8]) -> PartTree {
        let mut raws = Vec::new();
        match mailparse::parse_mail(msg) {
            Ok(top) => walk(msg, &top, 0, &mut raws),
            Err(e) => {
                // The whole body (or the whole message, with no header block found) as one
                // text part: the bytes are all there is to give.
                log::debug!("a message's MIME structure cannot be read ({e}); its body is one part");
                let start = body_start(msg);
                raws.push(Raw {
                    depth: 0,
                    mimetype: "text/plain".into(),
                    kind: Kind::Leaf,
                    filename: None,
                    attachment: false,
                    body: start..msg.len(),
                    encoding: Encoding::Identity,
                });
            }
        }
        let mut tree = PartTree { parts: Vec::with_capacity(raws.len()), by_name: HashMap::new() };
        // The next ` (N)` to try for each name asked for: many parts of one name are
        // numbered without trying every number before theirs again.
        let mut next: HashMap<String, u64> = HashMap::new();
        for (i, raw) in raws.into_iter().enumerate() {
            let name = (raw.kind != Kind::Container).then(|| {
                let wanted = tree.wanted_name(msg, &raw, i);
                let first = next.get(&wanted).copied().unwrap_or(2);
                let (name, n) = unique_name_from(&wanted, first, |n| tree.by_name.contains_key(n));
                next.insert(wanted, n.max(1) + 1);
                tree.by_name.insert(name.clone(), i);
                name
            });
            let body = &msg[raw.body.clone()];
            let size = match (raw.kind, raw.encoding) {
                (Kind::Container, _) => 0,
                (_, Encoding::Identity) => body.len() as u64,
                // Decoded once here for its exact size; the bytes are not kept.
                (_, enc) => decode_body(body, enc).len() as u64,
            };
            tree.parts.push(Part {
                depth: raw.depth,
                mimetype: raw.mimetype,
                kind: raw.kind,
                name,
                size,
                body: raw.body,
                encoding: raw.encoding,
            });
        }
        tree
    }

    /// The name a part asks for, before clashes are settled.
    fn wanted_name(&self, msg: &[u8], raw: &Raw, index: usize) -> String {
        let given = raw.filename.as_deref().map(clean_file_name).filter(|n| !n.is_empty());
        if raw.kind == Kind::Message {
            let name = given.unwrap_or_else(|| {
                // Named after its subject, as a mail client saves one.
                let inner = &msg[raw.body.clone()];
                let inner = if raw.encoding == Encoding::Identity {
                    parse_props(inner)
                } else {
                    parse_props(&decode_body(&inner[..inner.len().min(super::MAX_HEADER_BYTES)], raw.encoding))
                };
                match inner.subject.as_deref().map(clean_subject) {
                    Some(s) if s != NO_SUBJECT => s,
                    _ => "message".to_string(),
                }
            });
            // Always `.eml`, so that its own parts are `NAME.eml.parts`.
            let name = if name.to_ascii_lowercase().ends_with(".eml") { name } else { format!("{name}.eml") };
            return cut_name(&name);
        }
        if let Some(name) = given {
            return name;
        }
        match raw.mimetype.as_str() {
            "text/plain" if !raw.attachment => "body.txt".into(),
            "text/html" if !raw.attachment => "body.html".into(),
            m => format!("part-{}.{}", index + 1, extension(m)),
        }
    }

    /// The part named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Part `i`'s content: its body with the transfer encoding undone.
    pub fn decode(&self, msg: &[u8], i: usize) -> Vec<u8> {
        let p = &self.parts[i];
        match msg.get(p.body.clone()) {
            Some(body) => decode_body(body, p.encoding),
            // Another message's bytes: nothing of this tree is in there.
            None => Vec::new(),
        }
    }

    /// Roughly what the tree takes in memory, for a cache's byte budget.
    pub fn heap_bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| std::mem::size_of::<Part>() + p.mimetype.len() + 2 * p.name.as_ref().map_or(0, String::len) + 32)
            .sum()
    }
}

/// Where the body starts: after the first empty line, or at 0 when there is none.
fn body_start(msg: &[u8]) -> usize {
    let mut at = 0;
    for line in msg.split_inclusive(|&b| b == b'\n') {
        at += line.len();
        if line == b"\n" || line == b"\r\n" {
            return at;
        }
    }
    0
}

/// Add `p` and its descendants to `out`, in document order.
fn walk(msg: &[u8], p: &ParsedMail<'_>, depth: u32, out: &mut Vec<Raw>) {
    let (raw_body, encoding) = match p.get_body_encoded() {
        Body::Base64(b) => (b.get_raw(), Encoding::Base64),
        Body::QuotedPrintable(b) => (b.get_raw(), Encoding::QuotedPrintable),
        Body::SevenBit(b) | Body::EightBit(b) => (b.get_raw(), Encoding::Identity),
        Body::Binary(b) => (b.get_raw(), Encoding::Identity),
    };
    // mailparse's slices point into `msg`: their place there is what the tree keeps.
    let start = (raw_body.as_ptr() as usize).saturating_sub(msg.as_ptr() as usize).min(msg.len());
    let body = start..(start + raw_body.len()).min(msg.len());
    let disposition = p.get_content_disposition();
    let filename = disposition
        .params
        .get("filename")
        .or_else(|| p.ctype.params.get("name"))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let attachment = disposition.disposition == DispositionType::Attachment;
    let multipart = p.ctype.mimetype.starts_with("multipart/");
    if multipart && !p.subparts.is_empty() {
        out.push(Raw {
            depth,
            mimetype: p.ctype.mimetype.clone(),
            kind: Kind::Container,
            filename: None,
            attachment,
            body,
            encoding,
        });
        for s in &p.subparts {
            walk(msg, s, depth + 1, out);
        }
        return;
    }
    let (mimetype, kind) = if multipart {
        // No part could be found in it (no boundary, or none of its lines): its body is
        // all that can be read, shown as text.
        ("text/plain".to_string(), Kind::Leaf)
    } else if p.ctype.mimetype == "message/rfc822" || p.ctype.mimetype == "message/global" {
        (p.ctype.mimetype.clone(), Kind::Message)
    } else {
        (p.ctype.mimetype.clone(), Kind::Leaf)
    };
    out.push(Raw { depth, mimetype, kind, filename, attachment, body, encoding });
}

/// Undo a transfer encoding. mailparse's decoders first; a body they refuse (stray
/// characters, a cut group) is decoded leniently as far as it goes, never refused.
fn decode_body(body: &[u8], encoding: Encoding) -> Vec<u8> {
    let cte = match encoding {
        Encoding::Identity => return body.to_vec(),
        Encoding::Base64 => "base64",
        Encoding::QuotedPrintable => "quoted-printable",
    };
    let ctype = ParsedContentType::default();
    let decoded = match Body::new(body, &ctype, &Some(cte.to_string())) {
        Body::Base64(b) | Body::QuotedPrintable(b) => b.get_decoded().ok(),
        _ => None,
    };
    decoded.unwrap_or_else(|| match encoding {
        Encoding::Base64 => lenient_base64(body),
        // mailparse's quoted-printable decoding is the robust mode, which refuses nothing
        // in practice; were it to, the bytes as written are the best guess.
        _ => body.to_vec(),
    })
}

/// Base64 read as far as it makes sense: characters outside the alphabet are skipped,
/// padding ends the data, and a last incomplete group gives the whole bytes it holds.
fn lenient_base64(body: &[u8]) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        if c == b'=' {
            break;
        }
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A file name as a message gives it, made safe as one directory entry: `/` and control
/// characters become `_`, blanks at the ends go, a leading dot becomes `_` (so that `.`,
/// `..` and hidden names cannot be made), and it is cut to 255 bytes keeping its
/// extension. May be empty (the caller names the part itself then).
pub fn clean_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c == '/' || c.is_control() || c == '\u{2028}' || c == '\u{2029}' { '_' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    let name = match trimmed.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None => trimmed.to_string(),
    };
    cut_name(&name)
}

/// `name` within [`MAX_NAME_BYTES`], cutting the stem (on a character boundary) and
/// keeping a short extension.
fn cut_name(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_string();
    }
    let ext = match name.rfind('.') {
        Some(i) if name.len() - i <= 16 => &name[i..],
        _ => "",
    };
    let mut end = MAX_NAME_BYTES - ext.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", &name[..end])
}

/// An extension for a part with no name, from its type.
fn extension(mimetype: &str) -> &'static str {
    match mimetype {
        "text/plain" => "txt",
        "text/html" => "html",
        "text/calendar" => "ics",
        "text/vcard" | "text/x-vcard" => "vcf",
        "text/rtf" | "application/rtf" => "rtf",
        "application/pdf" => "pdf",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "application/zip" => "zip",
        "message/delivery-status" | "message/disposition-notification" => "txt",
        "text/rfc822-headers" | "message/rfc822-headers" => "txt",
        m if m.starts_with("text/") => "txt",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &PartTree) -> Vec<&str> {
        t.parts.iter().filter_map(|p| p.name.as_deref()).collect()
    }

    const MIXED: &str = "From: a@b\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=\"X\"\r\n\r\n\
--X\r\nContent-Type: multipart/alternative; boundary=\"Y\"\r\n\r\n\
--Y\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9 =\r\nau lait\r\n\
--Y\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--Y--\r\n\
--X\r\nContent-Type: application/pdf; name=\"a/b.pdf\"\r\nContent-Disposition: attachment\r\n\
Content-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n\
--X\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.txt\r\n\r\nraw\r\n\
--X\r\nContent-Type: image/png; name=\"=?UTF-8?B?w6kucG5n?=\"\r\n\r\npng\r\n\
--X\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"r\u{e9}sum\u{e9}.txt\"\r\n\r\ndup\r\n\
--X\r\nContent-Type: message/rfc822\r\n\r\nSubject: Inner one\r\n\r\ninner body\r\n\
--X--\r\n";

    #[test]
    fn parts_get_bodies_attachment_names_and_embedded_messages() {
        let msg = MIXED.as_bytes();
        let t = PartTree::parse(msg);
        assert_eq!(
            names(&t),
            ["body.txt", "body.html", "a_b.pdf", "résumé.txt", "é.png", "résumé (2).txt", "Inner one.eml"]
        );
        let get = |n: &str| t.decode(msg, t.find(n).unwrap());
        assert_eq!(get("body.txt"), "café au lait".as_bytes());
        assert_eq!(get("body.html"), b"<p>hi</p>");
        assert_eq!(get("a_b.pdf"), b"hello world");
        assert_eq!(get("résumé.txt"), b"raw");
        assert_eq!(get("Inner one.eml"), b"Subject: Inner one\r\n\r\ninner body");
        for p in &t.parts {
            if let Some(n) = &p.name {
                assert_eq!(p.size, get(n).len() as u64, "{n}");
            }
        }
        let kinds: Vec<Kind> = t.parts.iter().map(|p| p.kind).collect();
        assert_eq!(kinds[..2], [Kind::Container, Kind::Container]);
        assert_eq!(t.parts.last().unwrap().kind, Kind::Message);
        assert_eq!(t.parts[2].depth, 2);
    }

    #[test]
    fn a_plain_message_is_one_body() {
        let msg = b"Subject: x\n\nhello\n";
        let t = PartTree::parse(msg);
        assert_eq!(names(&t), ["body.txt"]);
        assert_eq!(t.decode(msg, 0), b"hello\n");
    }

    #[test]
    fn broken_base64_is_decoded_as_far_as_it_goes() {
        let msg = b"Content-Transfer-Encoding: base64\nContent-Type: application/pdf\n\naGVs*bG8gd29y\nbGQ";
        let t = PartTree::parse(msg);
        assert_eq!(names(&t), ["part-1.pdf"]);
        assert_eq!(t.decode(msg, 0), b"hello world");
        assert_eq!(t.parts[0].size, 11);
    }

    #[test]
    fn many_parts_of_one_name_are_numbered_in_order() {
        let mut msg = b"Content-Type: multipart/mixed; boundary=b\n\n".to_vec();
        for _ in 0..5000 {
            msg.extend_from_slice(b"--b\nContent-Type: application/pdf; name=x.pdf\n\ny\n");
        }
        let t = PartTree::parse(&msg);
        assert_eq!(t.parts.len(), 5001);
        assert_eq!(t.parts[1].name.as_deref(), Some("x.pdf"));
        assert_eq!(t.parts[5000].name.as_deref(), Some("x (5000).pdf"));
        assert_eq!(t.find("x (4999).pdf"), Some(4999));
    }

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(clean_file_name(" ../x\ty\u{0}.txt "), "_._x_y_.txt");
        assert_eq!(clean_file_name(".."), "_.");
        assert_eq!(clean_file_name("   "), "");
        let long = format!("{}.pdf", "é".repeat(200));
        let c = clean_file_name(&long);
        assert!(c.len() <= 255 && c.ends_with(".pdf"), "{}", c.len());
    }

    #[test]
    fn malformed_mime_gives_the_parts_it_can() {
        let cases: [&[u8]; 5] = [
            b"Content-Type: multipart/mixed; boundary=\"ab\"\n\nbody\n",
            b"Content-Type: multipart/mixed\n\n--x\nContent-Type: text/plain\n\nno boundary param\n",
            b"Content-Type: multipart/mixed; boundary=\"a\"\n\n--a\nContent-Type: text/plain\n\nunclosed",
            b"no header block at all",
            b"",
        ];
        for msg in cases {
            let t = PartTree::parse(msg);
            assert!(!names(&t).is_empty(), "{:?}", String::from_utf8_lossy(msg));
            for (i, p) in t.parts.iter().enumerate() {
                assert_eq!(p.size, t.decode(msg, i).len() as u64);
            }
        }
    }
}
