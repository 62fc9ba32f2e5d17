//! `msgfs ls`: a summary listing, one line per message (date, sender, subject, size,
//! flags, attachments), of folders or messages named by a path in a mount or in a store
//! directory. The store is always opened read-only (no lock, no recovery), as `msgfs
//! export` opens it, so a daemon serving it is neither blocked nor disturbed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use super::CmdResult;
use crate::mime::summary::{attachment_count, count_from_header, header_end};
use crate::mime::{parse_props, MAX_HEADER_BYTES};
use crate::store::{flags, Child, Entry, Id, Options, Store, FORMAT_FILE, ROOT};

/// How `--sort` orders the lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Date,
    From,
    Subject,
    Size,
}

/// `msgfs ls`, as parsed.
pub struct Args {
    pub paths: Vec<PathBuf>,
    pub long: bool,
    pub sort: SortKey,
    pub json: bool,
}

/// One message of the listing.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// Its path in the store: folder path and name.
    pub path: String,
    pub entry_id: String,
    pub size: u64,
    pub flags: u8,
    /// The stored mtime (ns), the date shown when the Date header does not parse.
    pub mtime_ns: i64,
    pub date: Option<String>,
    pub date_unix: Option<i64>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub attachments: u32,
}

impl Row {
    /// Seconds since the epoch: the Date header's, else the stored mtime.
    fn when(&self) -> i64 {
        self.date_unix.unwrap_or(self.mtime_ns.div_euclid(1_000_000_000))
    }
}

/// Where a PATH leads: a store directory and a `/`-separated path inside it.
fn locate(path: &Path) -> Result<(PathBuf, String), String> {
    let shown = path.display();
    if let Some(mp) = super::mount::msgfs_mount_containing(path) {
        let store = super::mount::store_of(&mp).ok_or_else(|| format!("{shown}: no store behind {}", mp.display()))?;
        if crate::pst::is_pst(&store) {
            return Err(format!("{shown}: a mounted PST has no store to list; msgfs ls lists msgfs stores"));
        }
        let abs = std::fs::canonicalize(path).map_err(|e| format!("{shown}: {e}"))?;
        let rel = abs.strip_prefix(&mp).map_err(|_| format!("{shown}: not inside {}", mp.display()))?;
        return Ok((store, rel.to_string_lossy().into_owned()));
    }
    // An unmounted store: its folders are not directories, so the path is walked up
    // without touching the disk until a directory holding a store's format file.
    let abs = std::path::absolute(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut parts: Vec<String> = Vec::new();
    let mut dir = abs.as_path();
    loop {
        if dir.join(FORMAT_FILE).is_file() {
            parts.reverse();
            return Ok((dir.to_path_buf(), parts.join("/")));
        }
        match dir.components().next_back() {
            Some(Component::Normal(n)) => parts.push(n.to_string_lossy().into_owned()),
            _ => return Err(format!("{shown}: neither in a msgfs mount nor in a store directory")),
        }
        dir = dir.parent().ok_or_else(|| format!("{shown}: neither in a msgfs mount nor in a store directory"))?;
    }
}

/// A message to list, as the index has it, before its header is read.
struct Todo {
    id: Id,
    row: Row,
}

/// The messages `rel` names in `st`: those of a folder (not its subfolders), or one.
fn gather(st: &Store, rel: &str) -> Result<Vec<Todo>, String> {
    let ix = st.index();
    let mut folder = ROOT;
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let todo = |id: Id, folder: Id, name: &str| -> Result<Todo, String> {
        let m = ix.message(id).map_err(|e| format!("{rel}: {e}"))?;
        let dir = ix.folder_path(folder);
        let path = if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
        let row = Row {
            path,
            entry_id: st.entry_id_hex(id),
            size: m.size(),
            flags: m.flags(),
            mtime_ns: m.attrs().mtime,
            ..Default::default()
        };
        Ok(Todo { id, row })
    };
    for (i, part) in parts.iter().enumerate() {
        match ix.lookup(folder, part) {
            Some(Entry::Folder(f)) => folder = f,
            Some(Entry::Message(id)) if i + 1 == parts.len() => return Ok(vec![todo(id, folder, part)?]),
            _ => return Err(format!("{rel}: no such folder or message")),
        }
    }
    let children = ix.children(folder).map_err(|e| format!("{rel}: {e}"))?;
    children
        .filter_map(|(name, c)| match c {
            Child::Message(id, _) => Some(todo(id, folder, name)),
            Child::Folder(_) => None,
        })
        .collect()
}

/// Fill a row from its message's header block (and its body, for a multipart message's
/// attachments). Only the header is read otherwise, in one read for most messages.
fn read_header(st: &Store, t: &mut Todo) -> Result<(), String> {
    let view = st.open_message(t.id).map_err(|e| format!("{}: {e}", t.row.path))?;
    let size = view.size as usize;
    // Most header blocks fit in 4 KiB (a long Received chain in 16).
    let mut want = size.min(4 << 10);
    let mut buf = Vec::new();
    let header_len = loop {
        buf.resize(want, 0);
        view.file.read_exact_at(&mut buf, 0).map_err(|e| format!("{}: {e}", t.row.path))?;
        match header_end(&buf) {
            Some(n) => break n,
            None if want >= size.min(MAX_HEADER_BYTES) => break want,
            None => want = (want * 4).min(size.min(MAX_HEADER_BYTES)),
        }
    };
    let header = &buf[..header_len];
    let p = parse_props(header);
    t.row.attachments = match count_from_header(header) {
        Some(n) => n,
        None => attachment_count(&view.file.read_all().map_err(|e| format!("{}: {e}", t.row.path))?),
    };
    t.row.date = p.date;
    t.row.date_unix = p.date_unix;
    t.row.from = p.from;
    t.row.subject = p.subject;
    t.row.message_id = p.message_id;
    Ok(())
}

/// Read every row's header, on a few threads (most time goes to reading the content).
fn read_all(st: &Store, todo: &mut [Todo]) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    let chunk = todo.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = todo
            .chunks_mut(chunk)
            .map(|part| s.spawn(move || part.iter_mut().filter_map(|t| read_header(st, t).err()).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

pub fn run(args: Args) -> CmdResult {
    let mut stores: BTreeMap<PathBuf, Store> = BTreeMap::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
    let paths = if args.paths.is_empty() { vec![PathBuf::from(".")] } else { args.paths.clone() };
    for path in &paths {
        let found = locate(path).and_then(|(store, rel)| {
            if !stores.contains_key(&store) {
                let st = Store::open(&store, Options { read_only: true, ..Default::default() })
                    .map_err(|e| format!("store {}: {e}", store.display()))?;
                stores.insert(store.clone(), st);
            }
            let st = &stores[&store];
            let mut todo = gather(st, &rel)?;
            for e in read_all(st, &mut todo) {
                // A message the daemon changed or deleted since the store was opened.
                eprintln!("msgfs: ls: {e}");
                failed = true;
            }
            rows.extend(todo.into_iter().map(|t| t.row));
            Ok(())
        });
        if let Err(e) = found {
            eprintln!("msgfs: ls: {e}");
            failed = true;
        }
    }
    for st in stores.values() {
        st.close()?;
    }
    sort(&mut rows, args.sort);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for r in &rows {
        let line = if args.json {
            json_line(r)
        } else if args.long {
            long_line(r)
        } else {
            short_line(r)
        };
        out.write_all(line.as_bytes())?;
    }
    out.flush()?;
    Ok(u8::from(failed))
}

/// A subject as it sorts: lower case, without its `Re:`/`Fwd:` prefixes.
fn subject_key(s: Option<&str>) -> String {
    let mut s = s.unwrap_or("").trim();
    loop {
        let lower = s.get(..4).map(str::to_ascii_lowercase);
        let cut = match lower.as_deref() {
            Some("re: ") | Some("fw: ") => 3,
            Some("fwd:") => 4,
            _ => break,
        };
        s = s[cut..].trim_start();
    }
    s.to_lowercase()
}

/// Sort by `key`, oldest, smallest or A first; ties by path, so the order is stable.
pub fn sort(rows: &mut [Row], key: SortKey) {
    match key {
        SortKey::Date => rows.sort_by(|a, b| a.when().cmp(&b.when()).then_with(|| a.path.cmp(&b.path))),
        SortKey::Size => rows.sort_by(|a, b| a.size.cmp(&b.size).then_with(|| a.path.cmp(&b.path))),
        SortKey::From => rows.sort_by_cached_key(|r| (sender_name(r.from.as_deref()).to_lowercase(), r.path.clone())),
        SortKey::Subject => rows.sort_by_cached_key(|r| (subject_key(r.subject.as_deref()), r.path.clone())),
    }
}

/// The sender's display name, else its address: `"Alice B" <a@b>` gives `Alice B`.
fn sender_name(from: Option<&str>) -> String {
    let from = from.unwrap_or("").trim();
    let name = match from.find('<') {
        Some(i) if i > 0 => from[..i].trim().trim_matches('"').trim(),
        Some(_) => from.trim_matches(['<', '>']),
        None => from,
    };
    name.to_string()
}

/// Local time of `secs` as `YYYY-MM-DD HH:MM`, with `:SS +ZZZZ` when `long`.
fn local_time(secs: i64, long: bool) -> String {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r writes into the zeroed struct we own (glibc's reads TZ once).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return "????-??-?? ??:??".into();
    }
    let mut s =
        format!("{:04}-{:02}-{:02} {:02}:{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
    if long {
        let off = tm.tm_gmtoff / 60;
        let sign = if off < 0 { '-' } else { '+' };
        let _ = write!(s, ":{:02} {sign}{:02}{:02}", tm.tm_sec, off.abs() / 60, off.abs() % 60);
    }
    s
}

/// Sizes as `ls -h` gives them: 1024-based, one decimal below 10.
fn human_size(n: u64) -> String {
    let mut v = n as f64;
    for unit in ["", "K", "M", "G", "T"] {
        if v < 1024.0 || unit == "T" {
            return match unit {
                "" => format!("{n}"),
                _ if v < 10.0 => format!("{:.1}{unit}", (v * 10.0).ceil() / 10.0),
                _ => format!("{}{unit}", v.ceil() as u64),
            };
        }
        v /= 1024.0;
    }
    unreachable!()
}

/// Cut or pad `s` to exactly `width` characters.
fn fit(s: &str, width: usize) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(width).collect();
    let n = out.chars().count();
    out.extend(std::iter::repeat_n(' ', width - n));
    out
}

fn flag_letters(f: u8) -> String {
    let l = flags::to_letters(f & flags::USER);
    if l.is_empty() {
        "-".into()
    } else {
        l
    }
}

fn one_line(s: Option<&str>) -> String {
    s.unwrap_or("").chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `FLAGS DATE SENDER SIZE ATTACHMENTS SUBJECT`, as `mail -H` or mutt's index.
fn short_line(r: &Row) -> String {
    format!(
        "{:<6} {} {} {:>5} {:>2} {}\n",
        flag_letters(r.flags),
        local_time(r.when(), false),
        fit(&sender_name(r.from.as_deref()), 20),
        human_size(r.size),
        r.attachments,
        one_line(r.subject.as_deref())
    )
}

/// The full date, exact size, whole From and the message's path in the store.
fn long_line(r: &Row) -> String {
    format!(
        "{:<6} {} {:>10} {:>2} {}  {}  {}\n",
        flag_letters(r.flags),
        local_time(r.when(), true),
        r.size,
        r.attachments,
        one_line(r.from.as_deref()),
        one_line(r.subject.as_deref()),
        r.path
    )
}

fn json_str(out: &mut String, s: Option<&str>) {
    let Some(s) = s else {
        out.push_str("null");
        return;
    };
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One JSON object per line (JSON Lines), every field present (null when the header has
/// none).
fn json_line(r: &Row) -> String {
    let mut o = String::from("{\"path\":");
    json_str(&mut o, Some(&r.path));
    o.push_str(",\"entry_id\":");
    json_str(&mut o, Some(&r.entry_id));
    o.push_str(",\"date\":");
    json_str(&mut o, r.date.as_deref());
    o.push_str(",\"date_unix\":");
    match r.date_unix {
        Some(t) => {
            let _ = write!(o, "{t}");
        }
        None => o.push_str("null"),
    }
    o.push_str(",\"from\":");
    json_str(&mut o, r.from.as_deref());
    o.push_str(",\"subject\":");
    json_str(&mut o, r.subject.as_deref());
    o.push_str(",\"message_id\":");
    json_str(&mut o, r.message_id.as_deref());
    let _ = write!(o, ",\"size\":{},\"flags\":", r.size);
    json_str(&mut o, Some(&flags::to_letters(r.flags & flags::USER)));
    let _ = writeln!(o, ",\"attachments\":{}}}", r.attachments);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, date: i64, from: &str, subject: &str, size: u64) -> Row {
        Row {
            path: path.into(),
            date_unix: Some(date),
            from: Some(from.into()),
            subject: Some(subject.into()),
            size,
            ..Default::default()
        }
    }

    #[test]
    fn sorting_by_each_key_breaks_ties_by_path() {
        let mut rows = vec![
            row("c", 30, "\"Zed\" <a@x>", "Re: apples", 5),
            row("a", 20, "bob@x", "Fwd: Re: bananas", 5),
            row("b", 20, "<Carol@x>", "cherries", 1),
        ];
        let order = |rows: &[Row]| rows.iter().map(|r| r.path.as_str()).collect::<String>();
        sort(&mut rows, SortKey::Date);
        assert_eq!(order(&rows), "abc");
        sort(&mut rows, SortKey::Size);
        assert_eq!(order(&rows), "bac");
        sort(&mut rows, SortKey::From);
        assert_eq!(order(&rows), "abc");
        sort(&mut rows, SortKey::Subject);
        assert_eq!(order(&rows), "cab");
    }

    #[test]
    fn json_lines_escape_and_give_null_for_missing_fields() {
        let r = Row { path: "In\"box/a\\b.eml".into(), subject: Some("tab\there\u{1}".into()), ..Default::default() };
        assert_eq!(
            json_line(&r),
            "{\"path\":\"In\\\"box/a\\\\b.eml\",\"entry_id\":\"\",\"date\":null,\"date_unix\":null,\"from\":null,\
             \"subject\":\"tab\\there\\u0001\",\"message_id\":null,\"size\":0,\"flags\":\"\",\"attachments\":0}\n"
        );
    }

    #[test]
    fn sizes_read_as_ls_h_gives_them() {
        assert_eq!(human_size(999), "999");
        assert_eq!(human_size(1024), "1.0K");
        assert_eq!(human_size(4300), "4.2K");
        assert_eq!(human_size(20_000), "20K");
        assert_eq!(human_size(3 << 20), "3.0M");
    }
}
