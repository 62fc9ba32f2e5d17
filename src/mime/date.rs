//! Dates in mail: RFC 5322 `Date:` values and the asctime dates of mbox `From ` lines, to
//! and from Unix time, without a calendar crate.
//!
//! Parsing is deliberately forgiving (real headers are often malformed) but bounded: a
//! value is split into at most a few dozen tokens and every number is range-checked, so
//! no input panics or overflows. Years outside 1..=9999 are refused, which keeps
//! [`ymd`] and [`asctime`] in four digits.

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date of a day count from 1970-01-01: (year, month 1..=12, day 1..=31).
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
    let (y, m, d) = civil_from_days(unix.div_euclid(86400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The C `asctime` form used on mbox `From ` lines, in UTC: `Thu Jan  1 00:00:00 1970`.
pub fn asctime(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let wd = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let mon = MONTHS[(m - 1) as usize];
    format!("{wd} {mon} {d:2} {:02}:{:02}:{:02} {y:04}", secs / 3600, secs / 60 % 60, secs % 60)
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
    Some(days * 86400 + time.unwrap_or(0) - zone.unwrap_or(0))
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
}
