//! Server mailbox names: modified UTF-7 (RFC 3501 §5.1.3) on the wire, UTF-8 in the store,
//! and the rule that turns a server folder into a store folder path.
//!
//! Mapping: the server's INBOX is `Inbox`; SPECIAL-USE `\Sent`, `\Trash` and `\Drafts` are
//! `Sent Items`, `Deleted Items` and `Drafts`; every other folder keeps its server name,
//! split into levels at the server's hierarchy delimiter. A `/` inside one level (possible
//! when the delimiter is not `/`) cannot be a file name character, so it is written as
//! U+FF0F FULLWIDTH SOLIDUS `／` (the convention rclone uses), which looks like a slash but
//! is visibly wider; the way back turns `／` into `/` again. A name with an empty, `.` or
//! `..` level has no store folder (it could not be a directory, or would climb out of the
//! tree); the survey lists it as not synced.

use std::fmt;

/// What stands for `/` inside one level of a folder name in the store.
pub const SLASH_STANDIN: char = '\u{FF0F}';

#[derive(Debug, PartialEq, Eq)]
pub struct Utf7Error(pub String);

impl fmt::Display for Utf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad modified UTF-7 mailbox name {:?}", self.0)
    }
}

impl std::error::Error for Utf7Error {}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn b64_value(c: u8) -> Option<u32> {
    B64.iter().position(|&b| b == c).map(|v| v as u32)
}

/// Decodes a modified UTF-7 name. Strict: rejects what RFC 3501 forbids (raw non-ASCII, an
/// unterminated `&`, leftover bits, printable ASCII inside a shifted run), so that two
/// different wire names do not decode to one store name.
pub fn decode(wire: &[u8]) -> Result<String, Utf7Error> {
    let bad = || Utf7Error(String::from_utf8_lossy(wire).into_owned());
    let mut out = String::new();
    let mut i = 0;
    while i < wire.len() {
        let c = wire[i];
        if !(0x20..=0x7e).contains(&c) {
            return Err(bad());
        }
        if c != b'&' {
            out.push(c as char);
            i += 1;
            continue;
        }
        let end = wire[i + 1..].iter().position(|&b| b == b'-').ok_or_else(bad)? + i + 1;
        let run = &wire[i + 1..end];
        i = end + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let (mut bits, mut nbits, mut units) = (0u32, 0u32, Vec::new());
        for &b in run {
            bits = (bits << 6) | b64_value(b).ok_or_else(bad)?;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push((bits >> nbits) as u16);
                bits &= (1 << nbits) - 1;
            }
        }
        if nbits >= 6 || bits != 0 || units.is_empty() {
            return Err(bad());
        }
        let s = String::from_utf16(&units).map_err(|_| bad())?;
        // A shifted run of printable ASCII would give a second spelling of the same name.
        if s.chars().any(|ch| (' '..='~').contains(&ch)) {
            return Err(bad());
        }
        out.push_str(&s);
    }
    Ok(out)
}

/// Encodes a UTF-8 name in modified UTF-7: printable ASCII as itself, `&` as `&-`, runs of
/// anything else as `&` + modified base64 of UTF-16BE + `-`.
pub fn encode(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut Vec<u8>| {
        if run.is_empty() {
            return;
        }
        out.push(b'&');
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
            for k in 0..=chunk.len() {
                out.push(B64[((n >> (18 - 6 * k)) & 63) as usize]);
            }
        }
        out.push(b'-');
        run.clear();
    };
    for ch in name.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut run, &mut out);
            out.push(ch as u8);
            if ch == '&' {
                out.push(b'-');
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The SPECIAL-USE roles that have a store folder of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialUse {
    Sent,
    Trash,
    Drafts,
}

impl SpecialUse {
    /// From a LIST attribute such as `\Sent` (case-insensitive, as IMAP atoms are).
    pub fn from_attribute(attr: &str) -> Option<SpecialUse> {
        match attr.to_ascii_lowercase().as_str() {
            "\\sent" => Some(SpecialUse::Sent),
            "\\trash" => Some(SpecialUse::Trash),
            "\\drafts" => Some(SpecialUse::Drafts),
            _ => None,
        }
    }

    pub fn store_name(self) -> &'static str {
        match self {
            SpecialUse::Sent => "Sent Items",
            SpecialUse::Trash => "Deleted Items",
            SpecialUse::Drafts => "Drafts",
        }
    }
}

/// The store folder path (one entry per level) of a server folder: `name` in UTF-8,
/// `delimiter` as LIST gave it, `special` its SPECIAL-USE role if any. `None` when a level
/// would be empty, `.` or `..` (e.g. `a//b` or `../x` with delimiter `/`): such a name cannot
/// be a directory, and `..` must never lead outside the folder tree.
pub fn store_path(name: &str, delimiter: Option<char>, special: Option<SpecialUse>) -> Option<Vec<String>> {
    if let Some(s) = special {
        return Some(vec![s.store_name().to_string()]);
    }
    let levels: Vec<&str> = match delimiter {
        Some(d) => name.split(d).collect(),
        None => vec![name],
    };
    if levels.iter().any(|l| l.is_empty() || *l == "." || *l == "..") {
        return None;
    }
    let stand_in = delimiter.and_then(delimiter_stand_in);
    let path: Vec<String> = levels
        .iter()
        .enumerate()
        .map(|(i, level)| {
            // INBOX is case-insensitive (RFC 3501 §5.1), and only at the top.
            if i == 0 && level.eq_ignore_ascii_case("INBOX") {
                "Inbox".to_string()
            } else {
                let level = level.replace('/', &SLASH_STANDIN.to_string());
                match (stand_in, delimiter) {
                    (Some(s), Some(d)) => level.replace(s, &d.to_string()),
                    _ => level,
                }
            }
        })
        .collect();
    // Checked again once stand-ins are back: `．．` must not become `..`.
    if path.iter().any(|l| l.is_empty() || l == "." || l == "..") {
        return None;
    }
    Some(path)
}

/// What a server level holds in place of its hierarchy delimiter, which a level cannot
/// hold (a local folder named `a.b` on a server whose delimiter is `.`): the delimiter's
/// full-width form. None for a delimiter without one (such a name is not synced).
pub fn delimiter_stand_in(delimiter: char) -> Option<char> {
    match delimiter {
        '.' => Some('\u{FF0E}'),
        // A local name cannot hold `/`; any other delimiter has no stand-in.
        _ => None,
    }
}

/// The server name (UTF-8) of a store folder path, the inverse of [`store_path`] for folders
/// that are not special-use: `Inbox` at the top is `INBOX`, `／` is `/`, the delimiter
/// inside a level is its stand-in (`a.b` is `a．b` where `.` is the delimiter), levels
/// joined by the delimiter. None when a level holds a delimiter without a stand-in.
/// Special-use folders are found by role from LIST, not by this rule.
pub fn server_name(path: &[String], delimiter: char) -> Option<String> {
    let mut levels = Vec::with_capacity(path.len());
    for (i, level) in path.iter().enumerate() {
        if i == 0 && level == "Inbox" {
            levels.push("INBOX".to_string());
            continue;
        }
        // The delimiter inside a level: its stand-in, or no server name at all.
        let level = if level.contains(delimiter) {
            level.replace(delimiter, &delimiter_stand_in(delimiter)?.to_string())
        } else {
            level.clone()
        };
        // `／` is `/` on a server whose delimiter is not `/`.
        levels.push(if delimiter == '/' { level } else { level.replace(SLASH_STANDIN, "/") });
    }
    Some(levels.join(&delimiter.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7_round_trips_non_ascii_ampersand_and_slash() {
        let cases: &[(&str, &str)] = &[
            ("INBOX", "INBOX"),
            ("Été", "&AMk-t&AOk-"),
            ("R&D", "R&-D"),
            ("A/B", "A/B"),
            ("日本語", "&ZeVnLIqe-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Émoji 📬 & co", "&AMk-moji &2D3c7A- &- co"),
            ("", ""),
        ];
        for (utf8, wire) in cases {
            assert_eq!(String::from_utf8(encode(utf8)).unwrap(), *wire, "encode {utf8}");
            assert_eq!(decode(wire.as_bytes()).unwrap(), *utf8, "decode {wire}");
        }
    }

    #[test]
    fn malformed_modified_utf7_is_refused() {
        for wire in ["&AMk", "&AM!-", "caf\u{e9}", "&AMkA-", "&AGE-", "&A-"] {
            assert!(decode(wire.as_bytes()).is_err(), "{wire}");
        }
    }

    #[test]
    fn inbox_and_special_use_folders_take_the_store_names() {
        assert_eq!(store_path("INBOX", Some('.'), None).unwrap(), ["Inbox"]);
        assert_eq!(store_path("inbox", Some('/'), None).unwrap(), ["Inbox"]);
        assert_eq!(store_path("INBOX.Lists", Some('.'), None).unwrap(), ["Inbox", "Lists"]);
        assert_eq!(store_path("Sent", Some('.'), Some(SpecialUse::Sent)).unwrap(), ["Sent Items"]);
        assert_eq!(store_path("[Gmail]/Trash", Some('/'), Some(SpecialUse::Trash)).unwrap(), ["Deleted Items"]);
        assert_eq!(store_path("Brouillons", Some('.'), Some(SpecialUse::Drafts)).unwrap(), ["Drafts"]);
        assert_eq!(SpecialUse::from_attribute("\\SENT"), Some(SpecialUse::Sent));
        assert_eq!(SpecialUse::from_attribute("\\Junk"), None);
    }

    #[test]
    fn a_level_that_is_empty_dot_or_dot_dot_has_no_store_path() {
        for (name, d) in [("..", Some('/')), ("../x", Some('/')), ("a//b", Some('/')), ("a/./b", Some('/')), ("", None)]
        {
            assert_eq!(store_path(name, d, None), None, "{name}");
        }
        assert_eq!(store_path("..", Some('.'), None), None, "two empty levels");
        assert_eq!(store_path("...x", None, None).unwrap(), ["...x"]);
        assert_eq!(store_path("a.b", Some('/'), None).unwrap(), ["a.b"]);
    }

    #[test]
    fn other_folders_nest_by_the_delimiter_and_a_slash_inside_a_level_is_not_split() {
        assert_eq!(store_path("Work.Projects.Été", Some('.'), None).unwrap(), ["Work", "Projects", "Été"]);
        assert_eq!(store_path("Work/Projects", Some('/'), None).unwrap(), ["Work", "Projects"]);
        assert_eq!(store_path("A/B.C", Some('.'), None).unwrap(), ["A／B", "C"]);
        assert_eq!(store_path("flat.name", None, None).unwrap(), ["flat.name"]);
        for (name, d) in [("A/B.C", '.'), ("INBOX.x/y", '.'), ("Work/Été", '/')] {
            assert_eq!(server_name(&store_path(name, Some(d), None).unwrap(), d).unwrap(), name);
        }
    }

    #[test]
    fn a_delimiter_inside_a_local_name_goes_as_its_stand_in_and_comes_back() {
        let local = vec!["mbox".to_string(), "perl-mbox.src".to_string()];
        let server = server_name(&local, '.').unwrap();
        assert_eq!(server, "mbox.perl-mbox\u{FF0E}src");
        assert_eq!(store_path(&server, Some('.'), None).unwrap(), local);
        // Where `/` is the delimiter a local name cannot hold it; `.` is plain.
        assert_eq!(server_name(&["a.b".to_string()], '/').unwrap(), "a.b");
        // No stand-in for other delimiters: no server name.
        assert_eq!(server_name(&["a:b".to_string()], ':'), None);
        // Stand-ins that would make `..` are refused.
        assert_eq!(store_path("x.\u{FF0E}\u{FF0E}", Some('.'), None), None);
    }
}
