//! Dates in mail, and the one place in the crate that does calendar arithmetic: Unix
//! time to and from the proleptic Gregorian calendar in UTC, and the formats written and
//! read: RFC 5322 `Date:` values, iCalendar UTC date-times and dates, the asctime dates
//! of mbox `From ` lines, `YYYY-MM-DD` names, and Windows FILETIMEs.
//!
//! Parsing is deliberately forgiving (real headers are often malformed) but bounded: a
//! value is split into at most a few dozen tokens and every number is range-checked, so
//! no input panics or overflows. Years outside 1..=9999 are refused, which keeps
//! [`ymd`] and [`asctime`] in four digits. The formatters that return `Option` refuse
//! the same range ([`MIN_UNIX`]..=[`MAX_UNIX`]), so what they write parses back.

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

const DAY: i64 = 86_400;

/// 0001-01-01T00:00:00Z, the first moment the four-digit formats can show.
pub const MIN_UNIX: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z, the last one.
pub const MAX_UNIX: i64 = 253_402_300_799;

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`), computed over 400-year cycles of 146097 days from an epoch moved
/// to 0000-03-01, so that the leap day falls at the end of each year.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date of a day count from 1970-01-01: (year, month 1..=12, day 1..=31); the
/// inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A Unix time broken down in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    /// 0 = Sunday .. 6 = Saturday.
    pub weekday: usize,
}

impl Utc {
    /// Any Unix time, however far from the present.
    pub fn of(unix: i64) -> Utc {
        let days = unix.div_euclid(DAY);
        let secs = unix.rem_euclid(DAY);
        let (year, month, day) = civil_from_days(days);
        Utc {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as usize,
        }
    }

    /// A Unix time within years 1 to 9999; None outside them (in a PST, a corrupt time).
    pub fn checked(unix: i64) -> Option<Utc> {
        (MIN_UNIX..=MAX_UNIX).contains(&unix).then(|| Utc::of(unix))
    }

    fn weekday_name(&self) -> &'static str {
        WEEKDAYS[self.weekday]
    }

    fn month_name(&self) -> &'static str {
        MONTHS[self.month as usize - 1]
    }
}

/// RFC 5322 date-time in UTC: `Thu, 01 Feb 2024 13:05:00 +0000`; None outside years 1
/// to 9999.
pub fn rfc5322(unix: i64) -> Option<String> {
    let t = Utc::checked(unix)?;
    Some(format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        t.weekday_name(),
        t.day,
        t.month_name(),
        t.year,
        t.hour,
        t.minute,
        t.second
    ))
}

/// iCalendar UTC DATE-TIME (RFC 5545 3.3.5, form 2): `20240201T130500Z`; None outside
/// years 1 to 9999.
pub fn ical_utc(unix: i64) -> Option<String> {
    let t = Utc::checked(unix)?;
    Some(format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", t.year, t.month, t.day, t.hour, t.minute, t.second))
}

/// iCalendar DATE (RFC 5545 3.3.4) of the UTC day of `unix`: `20240201`; None outside
/// years 1 to 9999.
pub fn ical_date(unix: i64) -> Option<String> {
    let t = Utc::checked(unix)?;
    Some(format!("{:04}{:02}{:02}", t.year, t.month, t.day))
}

/// Seconds from 1601-01-01 (the Windows FILETIME epoch) to 1970-01-01.
const FILETIME_EPOCH_OFFSET: i64 = 11_644_473_600;

/// A Windows FILETIME (100 ns units since 1601-01-01 UTC) as Unix seconds, truncated;
/// None for 0 and negative values, which Outlook writes for "no time".
pub fn from_filetime(t: i64) -> Option<i64> {
    (t > 0).then(|| t / 10_000_000 - FILETIME_EPOCH_OFFSET)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `YYYY-MM-DD` of a Unix time, in UTC.
pub fn ymd(unix: i64) -> String {
    let t = Utc::of(unix);
    format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)
}

/// The C `asctime` form used on mbox `From ` lines, in UTC: `Thu Jan  1 00:00:00 1970`.
/// Total: a time outside years 1 to 9999 gives a longer or signed year, not nothing,
/// since every exported message needs a From line.
pub fn asctime(unix: i64) -> String {
    let t = Utc::of(unix);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {:04}",
        t.weekday_name(),
        t.month_name(),
        t.day,
        t.hour,
        t.minute,
        t.second,
        t.year
    )
}

/// The date of an mbox `From ` line after its sender: an asctime date that starts with a
/// weekday abbreviation and has a time (`Thu Jan  1 00:00:00 1970`, with or without a
/// zone). Stricter than [`parse_date`], since it decides where messages start: None for a
/// line of text that merely begins with "From ".
pub fn parse_from_line_date(rest: &str) -> Option<i64> {
    let mut toks = rest.split_whitespace();
    let weekday = toks.next()?;
    let is_weekday = WEEKDAYS.iter().any(|w| weekday.eq_ignore_ascii_case(w));
    let tail: Vec<&str> = toks.collect();
    if !is_weekday || !tail.iter().any(|t| t.contains(':')) {
        return None;
    }
    parse_date(&tail.join(" "))
}

fn month_of(tok: &str) -> Option<u32> {
    if tok.len() < 3 || !tok.is_ascii() {
        return None;
    }
    let head = &tok[..3];
    MONTHS.iter().position(|m| m.eq_ignore_ascii_case(head)).map(|i| i as u32 + 1)
}

fn is_weekday(tok: &str) -> bool {
    tok.len() >= 3 && tok.is_ascii() && WEEKDAYS.iter().any(|w| w.eq_ignore_ascii_case(&tok[..3]))
}

/// Offset east of UTC in seconds, for a zone token: `+hhmm`, `-hhmm`, or an RFC 822 name.
/// Military single letters are ignored, as RFC 5322 advises (they were used both ways).
fn zone_of(tok: &str) -> Option<i64> {
    let b = tok.as_bytes();
    if b.len() == 5 && (b[0] == b'+' || b[0] == b'-') && b[1..].iter().all(u8::is_ascii_digit) {
        let n = |i: usize| i64::from(b[i] - b'0');
        let (hh, mm) = (n(1) * 10 + n(2), n(3) * 10 + n(4));
        if hh > 23 || mm > 59 {
            return None;
        }
        let off = hh * 3600 + mm * 60;
        return Some(if b[0] == b'-' { -off } else { off });
    }
    let hours = match tok.to_ascii_uppercase().as_str() {
        "UT" | "UTC" | "GMT" | "Z" => 0,
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        _ => return None,
    };
    Some(hours * 3600)
}

/// Parse `hh:mm` or `hh:mm:ss` (a leap second 60 counts as 59).
fn time_of(tok: &str) -> Option<i64> {
    let mut parts = tok.split(':');
    let mut next = |max: i64| -> Option<Option<i64>> {
        match parts.next() {
            None => Some(None),
            Some(p) if (1..=2).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()) => {
                let v: i64 = p.parse().ok()?;
                (v <= max).then_some(Some(v))
            }
            Some(_) => None,
        }
    };
    let h = next(23)??;
    let m = next(59)??;
    let s = next(60)?.unwrap_or(0).min(59);
    if parts.next().is_some() {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// Parse a mail date into Unix time (seconds, UTC). Accepts RFC 5322 (`Thu, 22 Aug 2002
/// 12:36:23 +0200 (CEST)`), its obsolete forms (two-digit years, zone names, no seconds,
/// no zone = UTC) and the asctime order (`Thu Aug 22 12:36:23 2002`). None when no day,
/// month and year can be found, or a field is out of range.
pub fn parse_date(value: &str) -> Option<i64> {
    // Comments such as "(PDT)" carry nothing we trust; drop them (nesting is not worth it).
    let mut text = String::with_capacity(value.len().min(256));
    let mut depth = 0u32;
    for c in value.chars().take(256) {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => text.push(if c == ',' { ' ' } else { c }),
            _ => {}
        }
    }
    let (mut day, mut month, mut year, mut time, mut zone) = (None, None, None, None, None);
    for tok in text.split_whitespace().take(32) {
        if tok.contains(':') {
            if time.is_none() {
                time = Some(time_of(tok)?);
            }
        } else if tok.bytes().all(|c| c.is_ascii_digit()) {
            let v: i64 = if tok.len() <= 4 { tok.parse().ok()? } else { return None };
            if tok.len() <= 2 && day.is_none() && year.is_none() {
                day = Some(v);
            } else if year.is_none() {
                // RFC 5322 4.3: two-digit years below 50 are 20xx, others 19xx; three digits
                // add 1900.
                year = Some(match tok.len() {
                    1 | 2 if v < 50 => 2000 + v,
                    1 | 2 => 1900 + v,
                    3 => 1900 + v,
                    _ => v,
                });
            }
        } else if let Some(z) = zone_of(tok) {
            zone.get_or_insert(z);
        } else if let Some(m) = month_of(tok) {
            if month.is_none() && !is_weekday(tok) {
                month = Some(m);
            }
        }
    }
    let (d, m, y) = (day?, month?, year?);
    if !(1..=9999).contains(&y) || d < 1 || d > i64::from(days_in_month(y, m)) {
        return None;
    }
    let days = days_from_civil(y, m, d as u32);
    Some(days * DAY + time.unwrap_or(0) - zone.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_conversions_agree_both_ways() {
        for z in [-800_000i64, -1, 0, 1, 10_957, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn rfc5322_dates_parse_with_zones() {
        assert_eq!(parse_date("Sun, 02 Oct 2016 07:06:22 -0700 (PDT)"), Some(1475417182));
        assert_eq!(parse_date("Thu, 22 Aug 2002 12:36:23 +0100"), Some(1030016183));
        assert_eq!(parse_date("22 Aug 2002 11:36:23 GMT"), Some(1030016183));
        assert_eq!(parse_date("Thu, 22 Aug 02 11:36 UT"), Some(1030016160));
        assert_eq!(parse_date("Thu Aug 22 11:36:23 2002"), Some(1030016183));
        assert_eq!(parse_date("1 Jan 1960 00:00:00 +0000"), Some(-315619200));
    }

    #[test]
    fn bad_dates_are_refused_without_panic() {
        for bad in
            ["", "yesterday", "32 Jan 2002", "30 Feb 2000 10:00", "1 Jan 2002 25:00", "1 Foo 2002", "1 Jan 99999"]
        {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        let long = "1 ".repeat(100_000);
        assert_eq!(parse_date(&long), None);
    }

    #[test]
    fn asctime_matches_c() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1030016183), "Thu Aug 22 11:36:23 2002");
        assert_eq!(parse_date(&asctime(1_700_000_000)), Some(1_700_000_000));
        assert_eq!(ymd(1030016183), "2002-08-22");
    }

    /// Moments around the edges: before 1970, leap days (2000 is a leap year, 1900 and
    /// 2100 are not), the first and last moment of the four-digit range.
    const SAMPLES: [i64; 12] = [
        MIN_UNIX,
        -11_644_473_600, // 1601-01-01
        -2_203_891_200,  // 1900-03-01
        -315_619_200,    // 1960-01-01
        -1,
        0,
        951_782_400,     // 2000-02-29
        1_706_792_700,   // 2024-02-01 13:05
        1_709_164_799,   // 2024-02-28 23:59:59
        4_107_628_800,   // 2100-03-01
        253_402_214_400, // 9999-12-31
        MAX_UNIX,
    ];

    #[test]
    fn broken_down_time_agrees_with_the_day_count() {
        for unix in SAMPLES {
            let t = Utc::checked(unix).unwrap();
            let back = days_from_civil(t.year, t.month, t.day) * DAY + t.hour * 3600 + t.minute * 60 + t.second;
            assert_eq!(back, unix);
        }
        assert_eq!(Utc::checked(MIN_UNIX - 1), None);
        assert_eq!(Utc::checked(MAX_UNIX + 1), None);
        assert_eq!(civil_from_days(-25_508), (1900, 3, 1));
        assert_eq!(civil_from_days(-25_509), (1900, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        for z in [-1_000_000_000_000i64, 1_000_000_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn rfc5322_format_and_round_trip() {
        assert_eq!(rfc5322(1_706_792_700).unwrap(), "Thu, 01 Feb 2024 13:05:00 +0000");
        assert_eq!(rfc5322(951_782_400).unwrap(), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322(-1).unwrap(), "Wed, 31 Dec 1969 23:59:59 +0000");
        assert_eq!(rfc5322(MIN_UNIX).unwrap(), "Mon, 01 Jan 0001 00:00:00 +0000");
        assert_eq!(rfc5322(MAX_UNIX).unwrap(), "Fri, 31 Dec 9999 23:59:59 +0000");
        assert_eq!(rfc5322(MAX_UNIX + 1), None);
        assert_eq!(rfc5322(i64::MAX), None);
        assert_eq!(rfc5322(i64::MIN), None);
        for unix in SAMPLES {
            assert_eq!(parse_date(&rfc5322(unix).unwrap()), Some(unix), "{unix}");
        }
    }

    /// iCalendar values back to Unix time, for the round trips.
    fn from_ical(v: &str) -> i64 {
        let n = |r: std::ops::Range<usize>| v[r].parse::<i64>().unwrap();
        let days = days_from_civil(n(0..4), n(4..6) as u32, n(6..8) as u32);
        if v.len() == 8 {
            return days * DAY;
        }
        assert_eq!((&v[8..9], &v[15..]), ("T", "Z"));
        days * DAY + n(9..11) * 3600 + n(11..13) * 60 + n(13..15)
    }

    #[test]
    fn ical_formats_and_round_trip() {
        assert_eq!(ical_utc(1_706_792_700).unwrap(), "20240201T130500Z");
        assert_eq!(ical_date(1_706_792_700).unwrap(), "20240201");
        assert_eq!(ical_utc(-1).unwrap(), "19691231T235959Z");
        assert_eq!(ical_date(951_782_400).unwrap(), "20000229");
        assert_eq!(ical_utc(MAX_UNIX + 1), None);
        assert_eq!(ical_date(MIN_UNIX - 1), None);
        for unix in SAMPLES {
            assert_eq!(from_ical(&ical_utc(unix).unwrap()), unix);
            assert_eq!(from_ical(&ical_date(unix).unwrap()), unix.div_euclid(DAY) * DAY);
        }
    }

    #[test]
    fn asctime_and_from_line_round_trip() {
        assert_eq!(asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
        assert_eq!(asctime(MIN_UNIX), "Mon Jan  1 00:00:00 0001");
        for unix in SAMPLES {
            assert_eq!(parse_date(&asctime(unix)), Some(unix), "{unix}");
            assert_eq!(parse_from_line_date(&asctime(unix)), Some(unix), "{unix}");
        }
        assert_eq!(parse_from_line_date("Thu Jan  1 00:00:00 1970 +0100"), Some(-3600));
        // Not a From line's date: no weekday first, a full weekday name, or no time.
        for bad in ["Jan  1 00:00:00 1970", "Thursday Jan  1 00:00:00 1970", "Thu Jan  1 1970", "the meeting"] {
            assert_eq!(parse_from_line_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn filetime_epoch_is_1601() {
        assert_eq!(FILETIME_EPOCH_OFFSET, -days_from_civil(1601, 1, 1) * DAY);
        assert_eq!(from_filetime(0), None);
        assert_eq!(from_filetime(-5), None);
        assert_eq!(from_filetime(116_444_736_000_000_000), Some(0));
        assert_eq!(from_filetime(116_444_736_019_999_999), Some(1));
    }
}
