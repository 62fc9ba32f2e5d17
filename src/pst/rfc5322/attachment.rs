//! The parts that carry a PST item's attachments: files, embedded messages, and notes
//! standing in for attachments that could not be read.
//!
//! File attachments are base64 in 76-column lines; embedded messages (and message/rfc822
//! files that look like one) are 7bit/8bit/binary as their content needs, since RFC 2046
//! forbids base64 there. An unreadable attachment becomes a short text/plain note naming
//! it and the reason. File names go into both `name` (Content-Type) and `filename`
//! (Content-Disposition), since mail clients read one or the other.

use super::encode::{base64_lines, to_lf};
use super::headers::{encoded_words, msg_id, one_line, quoted};
use super::mime::{text_leaf, Body, Part};
use super::{write_nested, MAX_LINE, MAX_NESTING};
use crate::pst::item::{Attachment, AttachmentData};

pub(super) fn attachment_part(att: &Attachment, depth: usize) -> Part {
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
    text_attachment("text/plain; charset=utf-8", &note_name, &text)
}

/// A text part (see [`text_leaf`]) written as an attachment named `filename`: the notes,
/// vCards and iCalendar files this writer makes itself.
pub(super) fn text_attachment(content_type: &str, filename: &str, text: &str) -> Part {
    let mut part = text_leaf(with_name(content_type, Some(filename)), text);
    part.headers.insert(0, content_disposition("attachment", Some(filename)));
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
pub(super) fn with_name(content_type: &str, name: Option<&str>) -> String {
    match name {
        None => content_type.to_string(),
        Some(n) if n.is_ascii() && n.len() <= 60 => format!("{content_type}; name={}", quoted(n)),
        Some(n) => format!("{content_type}; name=\"{}\"", encoded_words(n)),
    }
}

/// `Content-Disposition: inline|attachment; filename=...`: a quoted string when the name
/// is short ASCII, else RFC 2231 `filename*=utf-8''%..` in continuation segments short
/// enough to fold under 78 columns.
pub(super) fn content_disposition(disposition: &str, filename: Option<&str>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pst::rfc5322::testkit::*;
    use crate::pst::rfc5322::write_item;
    use mailparse::parse_mail;

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
}
