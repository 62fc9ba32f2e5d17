//! A PST appointment as an iCalendar VEVENT part (RFC 5545, METHOD:PUBLISH). Its
//! DTSTAMP is the submit, delivery or start time, never "now", and a missing UID is made
//! from what identifies the event, so the part is the same each time it is written.

use super::attachment::text_attachment;
use super::encode::{content_line, escape_text, IdHash};
use super::headers::{clean_email, one_line};
use super::mime::Part;
use crate::mime::date;
use crate::pst::item::{Address, Appointment, Item, Recipient, RecipientKind};

/// A parameter value (CN=...) in double quotes, which it may not contain (RFC 5545 3.1).
fn param_value(s: &str) -> String {
    let clean: String = s.chars().map(|c| if c == '"' { '\'' } else { c }).filter(|c| !c.is_control()).collect();
    format!("\"{clean}\"")
}

/// iCalendar DATE of an all-day boundary. Outlook stores all-day events at local
/// midnight converted to UTC, so the nearest UTC midnight is the local date for any
/// time zone within 12 hours of UTC.
fn all_day_date(secs: i64) -> Option<String> {
    date::ical_date(secs.checked_add(43_200)?)
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

pub(super) fn calendar_part(item: &Item, a: &Appointment) -> Part {
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
            let mut hash = IdHash::new();
            hash.write(key.as_bytes());
            let (crc, fnv) = hash.finish();
            format!("{crc:08x}{fnv:016x}@msgfs.invalid")
        });
    line(format!("UID:{}", escape_text(&uid)));
    let stamp = item
        .submit_time
        .or(item.delivery_time)
        .or(a.start)
        .and_then(date::ical_utc)
        .unwrap_or_else(|| "19700101T000000Z".to_string());
    line(format!("DTSTAMP:{stamp}"));
    for (prop, time) in [("DTSTART", a.start), ("DTEND", a.end)] {
        let value = if a.all_day {
            time.and_then(all_day_date).map(|d| format!("{prop};VALUE=DATE:{d}"))
        } else {
            time.and_then(date::ical_utc).map(|t| format!("{prop}:{t}"))
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
    text_attachment("text/calendar; charset=utf-8; method=PUBLISH", "invite.ics", &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pst::rfc5322::testkit::*;
    use crate::pst::rfc5322::write_item;
    use mailparse::parse_mail;

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
}
