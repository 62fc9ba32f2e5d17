//! How many attachments a message has, for summary listings (`msgfs ls`): counted from its
//! MIME structure, reading the body only when the header says it is multipart.

use mailparse::{DispositionType, ParsedMail};

/// The length of the header block in `buf` up to and including the empty line that ends
/// it, or None when `buf` holds no such line (read more, or the message is all header).
pub fn header_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + i + 1];
        if line == b"\n" || line == b"\r\n" {
            return Some(start + i + 1);
        }
        start += i + 1;
    }
    None
}

/// The attachment count when the header block says it, None when the body must be read
/// ([`attachment_count`] of the whole message): only a multipart message can hold several
/// parts; any other is one part, an attachment only if its Content-Disposition says so.
pub fn count_from_header(header: &[u8]) -> Option<u32> {
    use mailparse::MailHeaderMap;
    let Ok((headers, _)) = mailparse::parse_headers(header) else { return Some(0) };
    let multipart = headers
        .get_first_value("Content-Type")
        .is_some_and(|v| mailparse::parse_content_type(&v).mimetype.starts_with("multipart/"));
    if multipart {
        return None;
    }
    let attached = headers
        .get_first_value("Content-Disposition")
        .is_some_and(|v| mailparse::parse_content_disposition(&v).disposition == DispositionType::Attachment);
    Some(u32::from(attached))
}

/// The attachments of `content`, a whole message: the leaf parts that are attachments by
/// disposition, that carry a file name, or that are embedded messages. The text and HTML
/// bodies are not counted, nor are the parts of an embedded message. Malformed MIME counts
/// what can be read.
pub fn attachment_count(content: &[u8]) -> u32 {
    match mailparse::parse_mail(content) {
        Ok(m) => count(&m, true),
        Err(_) => 0,
    }
}

fn count(part: &ParsedMail, top: bool) -> u32 {
    if !part.subparts.is_empty() {
        return part.subparts.iter().map(|p| count(p, false)).sum();
    }
    u32::from(is_attachment(part, top))
}

fn is_attachment(part: &ParsedMail, top: bool) -> bool {
    let disp = part.get_content_disposition();
    let named = disp.params.keys().any(|k| k.starts_with("filename"))
        || part.ctype.params.keys().any(|k| k.starts_with("name"));
    // A whole message that is one part is its own body unless it says it is an attachment.
    if top {
        return disp.disposition == DispositionType::Attachment;
    }
    disp.disposition == DispositionType::Attachment || named || part.ctype.mimetype == "message/rfc822"
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &str = "From: a@b\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\n\
        Content-Type: multipart/alternative; boundary=YY\n\n--YY\nContent-Type: text/plain\n\nhi\n--YY\n\
        Content-Type: text/html\n\n<p>hi</p>\n--YY--\n--XX\nContent-Type: application/pdf; name=\"a.pdf\"\n\
        Content-Transfer-Encoding: base64\n\nAAAA\n--XX\nContent-Type: image/png\n\
        Content-Disposition: inline; filename=\"logo.png\"\n\nPNG\n--XX\nContent-Type: message/rfc822\n\n\
        Subject: inner\nContent-Type: multipart/mixed; boundary=ZZ\n\n--ZZ\nContent-Disposition: attachment\n\nx\n--ZZ--\n\
        --XX--\n";

    #[test]
    fn attachments_are_named_or_attached_parts_and_embedded_messages_not_the_bodies() {
        assert_eq!(count_from_header(MIXED.as_bytes()), None);
        // The PDF (by name), the inline image (by file name), the embedded message (whole).
        assert_eq!(attachment_count(MIXED.as_bytes()), 3);
    }

    #[test]
    fn a_single_part_message_is_read_from_its_header_alone() {
        let plain = b"Subject: x\nContent-Type: text/plain\n\n";
        assert_eq!(count_from_header(plain), Some(0));
        assert_eq!(attachment_count(plain), 0);
        let attached = b"Content-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n\n";
        assert_eq!(count_from_header(attached), Some(1));
        assert_eq!(attachment_count(attached), 1);
        assert_eq!(count_from_header(b"no header at all"), Some(0));
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(header_end(b"A: b\nC: d\n"), None);
    }

    #[test]
    fn malformed_mime_counts_what_it_can_and_never_fails() {
        let cut = &MIXED.as_bytes()[..MIXED.find("message/rfc822").unwrap()];
        assert_eq!(attachment_count(cut), 2);
        assert_eq!(attachment_count(b"Content-Type: multipart/mixed\n\nno boundary\n"), 0);
        assert_eq!(attachment_count(b"\xff\xfe\x00garbage"), 0);
    }
}
