//! A PST contact as a vCard 4.0 part (RFC 6350) and as the readable text/plain body
//! beside it.

use super::attachment::text_attachment;
use super::encode::{content_line, escape_text};
use super::headers::one_line;
use super::mime::Part;
use crate::pst::item::Contact;

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
pub(super) fn contact_summary(c: &Contact, notes: Option<&str>) -> String {
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

pub(super) fn vcard_part(c: &Contact) -> Part {
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
    text_attachment("text/vcard; charset=utf-8", &filename, &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pst::item::Item;
    use crate::pst::rfc5322::testkit::*;
    use crate::pst::rfc5322::write_item;
    use mailparse::parse_mail;

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
}
