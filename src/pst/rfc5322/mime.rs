//! The MIME tree of a written message: which parts an item becomes, how they nest, and
//! their rendering with boundaries.
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
//! Text parts are UTF-8, 7bit when ASCII with lines of at most 998 octets, else
//! quoted-printable.

use super::attachment::attachment_part;
use super::encode::{base64_lines, quoted_printable, to_lf};
use super::headers::fold;
use super::icalendar::calendar_part;
use super::vcard::{contact_summary, vcard_part};
use super::MAX_LINE;
use crate::pst::item::{Attachment, AttachmentData, Item};
use crate::pst::rtf;

/// A MIME entity before rendering.
pub(super) struct Part {
    /// The Content-Type value (unfolded); a multipart gets its boundary at rendering.
    pub(super) content_type: String,
    /// Other header fields, unfolded.
    pub(super) headers: Vec<String>,
    pub(super) body: Body,
}

pub(super) enum Body {
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
pub(super) fn render(part: Part, depth: usize, counter: &mut u32) -> (Vec<String>, Vec<u8>) {
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
                    entity(&h, &b)
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

/// An entity as bytes: its header lines, each ending with LF, an empty line, the body.
pub(super) fn entity(headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1024);
    for line in headers {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// A boundary that occurs in none of the parts (see the doc of [`super`]).
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

pub(super) fn build_body(item: &Item, depth: usize) -> Part {
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
pub(super) fn text_leaf(content_type: String, text: &str) -> Part {
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

#[cfg(test)]
mod tests {
    use crate::pst::item::{AttachmentData, Html, Item};
    use crate::pst::rfc5322::testkit::*;
    use crate::pst::rfc5322::write_item;
    use mailparse::parse_mail;

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
}
