//! PST import checked against an independent reader: `pffexport` (Debian pff-tools, from
//! libpff) exports every sample PST of MSGFS_TESTDATA, and the store made by `msgfs import`
//! must hold the same folders, the same number of items in each, the same subjects and
//! senders, and the same attachment names and sizes. Bad input (a password, an OST, a
//! truncated or damaged file) gets a clear error and never a panic or a hang.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use msgfs::store::{Entry, Id, Options, Store, ROOT};

fn msgfs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_msgfs"))
}

fn testdata() -> Option<PathBuf> {
    msgfs::testdata::path("pst")
}

/// `pffexport` must be there (CI installs pff-tools); elsewhere say what to install.
fn require_pffexport() {
    let ok = Command::new("pffexport").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(ok, "pffexport is missing: install it with `apt-get install pff-tools`");
}

fn samples(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.retain(|p| p.extension().is_some_and(|e| e == "pst" || e == "ost"));
    v.sort();
    v
}

/// What pffinfo says about a file: password-protected, or an OST.
fn pffinfo(path: &Path) -> String {
    let out = Command::new("pffinfo").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has_password(path: &Path) -> bool {
    pffinfo(path).lines().any(|l| l.contains("Password checksum") && !l.contains("N/A"))
}

/// One item as pffexport shows it.
#[derive(Debug, Default, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ItemFacts {
    subject: String,
    sender: String,
    /// (file name, size) of each file attachment.
    attachments: Vec<(String, u64)>,
    /// Embedded messages among its attachments.
    embedded: usize,
    /// Marked read (pffexport: "Flags: ... (Read ...)"; ours: the store's S flag).
    read: bool,
}

/// folder path (below the top) -> items.
type Facts = BTreeMap<String, Vec<ItemFacts>>;

fn header_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string())
}

/// Export `pst` with pffexport and read the top of its folder tree (`top` is the name of
/// the IPM subtree, which pffexport writes as a directory beside the search folders).
fn pffexport_facts(pst: &Path, top: &str, work: &Path) -> Facts {
    let target = work.join("pff");
    let out = Command::new("pffexport").arg("-q").arg("-t").arg(&target).arg(pst).output().unwrap();
    assert!(out.status.success(), "pffexport {}: {}", pst.display(), String::from_utf8_lossy(&out.stderr));
    let root = work.join("pff.export").join(top);
    assert!(root.is_dir(), "pffexport made no folder {top:?} for {}", pst.display());
    let mut facts = Facts::new();
    let mut stack = vec![(root, String::new())];
    while let Some((dir, place)) = stack.pop() {
        let items = facts.entry(place.clone()).or_default();
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            // Items are directories named like Message00001, Contact00001, Appointment00001.
            let digits = name.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            let is_item = digits.len() == 5 && digits.chars().all(|c| c.is_ascii_digit()) && name.len() > 5;
            if is_item {
                items.push(item_facts(&p));
            } else if p.is_dir() {
                let sub = if place.is_empty() { name } else { format!("{place}/{name}") };
                stack.push((p, sub));
            }
        }
    }
    facts
}

fn item_facts(dir: &Path) -> ItemFacts {
    // Messages have OutlookHeaders.txt; other items Appointment.txt, Contact.txt, ...
    let kind = dir.file_name().unwrap().to_string_lossy().trim_end_matches(|c: char| c.is_ascii_digit()).to_string();
    let headers = fs::read_to_string(dir.join("OutlookHeaders.txt"))
        .or_else(|_| fs::read_to_string(dir.join(format!("{kind}.txt"))))
        .unwrap_or_default();
    let subject = header_value(&headers, "Subject:").unwrap_or_default();
    let sender = header_value(&headers, "Sent representing name:")
        .or_else(|| header_value(&headers, "Sender name:"))
        .unwrap_or_default();
    let mut attachments = Vec::new();
    let mut embedded = 0;
    if let Ok(rd) = fs::read_dir(dir.join("Attachments")) {
        for e in rd {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                embedded += 1;
            } else {
                // pffexport names files "N_name".
                let plain = name.split_once('_').map(|(_, n)| n.to_string()).unwrap_or(name);
                attachments.push((file_name_key(&plain), fs::metadata(&p).unwrap().len()));
            }
        }
    }
    attachments.sort();
    let read = header_value(&headers, "Flags:").is_some_and(|f| f.contains("Read"));
    ItemFacts { subject, sender, attachments, embedded, read }
}

/// The same facts from the store `msgfs import` made.
fn store_facts(store: &Path) -> Facts {
    let st = Store::open(store, Options { read_only: true, ..Default::default() }).unwrap();
    let mut facts = Facts::new();
    let mut stack: Vec<(Id, String)> = vec![(ROOT, String::new())];
    while let Some((folder, place)) = stack.pop() {
        let children: Vec<(String, Entry)> = {
            let idx = st.index();
            idx.children(folder).unwrap().map(|(n, c)| (n.to_string(), c.entry())).collect()
        };
        let items = facts.entry(place.clone()).or_default();
        for (name, entry) in children {
            match entry {
                Entry::Folder(id) => {
                    let sub = if place.is_empty() { name } else { format!("{place}/{name}") };
                    stack.push((id, sub));
                }
                Entry::Message(id) => {
                    let mut facts = message_facts(&st.read_message(id).unwrap());
                    facts.read = st.index().message(id).unwrap().flags() & msgfs::store::flags::SEEN != 0;
                    items.push(facts);
                }
            }
        }
    }
    facts
}

fn message_facts(content: &[u8]) -> ItemFacts {
    let parsed = mailparse::parse_mail(content).unwrap();
    let subject = parsed.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case("subject")).map(|h| h.get_value());
    let from = parsed.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case("from")).map(|h| h.get_value());
    let raw_from = from.clone().unwrap_or_default();
    let sender = from
        .and_then(|f| mailparse::addrparse(&f).ok())
        .and_then(|l| {
            l.iter().next().map(|a| match a {
                mailparse::MailAddr::Single(s) => s.display_name.clone().unwrap_or_else(|| s.addr.clone()),
                mailparse::MailAddr::Group(g) => g.group_name.clone(),
            })
        })
        // Transport headers may hold a bare quoted name ("Michelle Lokay"), no address.
        .unwrap_or_else(|| raw_from.trim().trim_matches('"').to_string());
    // Items with transport headers carry the From line as received, which may spell the
    // sender differently from the PST's sender property that pffexport shows; keep the
    // whole line to compare by words.
    let sender = format!("{sender}\u{0}{raw_from}");
    let mut attachments = Vec::new();
    let mut embedded = 0;
    for part in parsed.subparts.iter().flat_map(all_parts) {
        if part.ctype.mimetype.eq_ignore_ascii_case("message/rfc822") {
            embedded += 1;
            continue;
        }
        // Parts msgfs adds: the calendar and vCard renderings of an item's properties, and
        // the note standing for an attachment the reader could not open.
        let generated = ["text/calendar", "text/vcard"].iter().any(|t| part.ctype.mimetype.eq_ignore_ascii_case(t));
        let disp = part.get_content_disposition();
        if generated || disp.params.get("filename").is_some_and(|n| n.ends_with(" (not readable).txt")) {
            continue;
        }
        if let Some(name) = disp.params.get("filename").or_else(|| part.ctype.params.get("name")) {
            attachments.push((file_name_key(name), part.get_body_raw().unwrap().len() as u64));
        }
    }
    attachments.sort();
    ItemFacts { subject: subject.unwrap_or_default(), sender, attachments, embedded, read: false }
}

/// A part and its descendants, not entering message/rfc822 parts.
fn all_parts<'a>(p: &'a mailparse::ParsedMail<'a>) -> Vec<&'a mailparse::ParsedMail<'a>> {
    let mut v = vec![p];
    for s in &p.subparts {
        v.extend(all_parts(s));
    }
    v
}

/// pffexport writes file names with some characters (`!`, `?`, `*`, `:`...) as `_`:
/// compare names with every such character so written.
fn file_name_key(name: &str) -> String {
    name.chars().map(|c| if c.is_alphanumeric() || " .-()[],'+=@#$%".contains(c) { c } else { '_' }).collect()
}

#[test]
fn every_sample_pst_matches_pffexport() {
    let Some(dir) = testdata() else { return };
    require_pffexport();
    let (mut compared, mut items_compared) = (0, 0);
    for pst in samples(&dir) {
        let work = tempfile::tempdir().unwrap();
        let store = work.path().join("store");
        let out = msgfs().arg("import").arg("--store").arg(&store).arg(&pst).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let is_ost = pst.extension().is_some_and(|e| e == "ost");
        if is_ost || has_password(&pst) {
            // Refused as a whole, with the reason and what to do.
            assert_eq!(out.status.code(), Some(1), "{}: {stdout}", pst.display());
            let want = if is_ost { "OST" } else { "password" };
            assert!(stdout.contains(want), "{}: no clear error: {stdout}", pst.display());
            continue;
        }
        let top = msgfs::pst::reader::Pst::open(&pst)
            .and_then(|p| p.root().and_then(|r| p.folder(r)).map_err(msgfs::pst::reader::OpenError::Io))
            .unwrap_or_else(|e| panic!("{}: {e}", pst.display()))
            .name;
        let theirs = pffexport_facts(&pst, &top, work.path());
        let ours = store_facts(&store);
        // Every item is imported: nothing is listed as left out.
        assert!(out.status.success() && !stdout.contains("not imported"), "{}: {stdout}", pst.display());
        // The store has the default folders besides the PST's; compare the PST's.
        for (place, items) in &theirs {
            let mut left: Vec<ItemFacts> = items.clone();
            let label = format!("{} folder {place:?}", pst.display());
            for m in ours.get(place).cloned().unwrap_or_default() {
                // pffexport writes "Unknown" where a name is missing.
                let same = |t: &ItemFacts| {
                    // Embedded messages become message/rfc822 parts, one per pffexport item.
                    let (name, raw) = m.sender.split_once('\u{0}').unwrap_or((&m.sender, ""));
                    let words = |s: &str| -> Vec<String> {
                        s.split(|c: char| !c.is_alphanumeric())
                            .filter(|w| !w.is_empty())
                            .map(str::to_lowercase)
                            .collect()
                    };
                    let raw_words = words(raw);
                    (t.sender == name
                        || (t.sender == "Unknown" && name.is_empty())
                        || words(&t.sender).iter().all(|w| raw_words.contains(w)))
                        && *t == ItemFacts { sender: t.sender.clone(), ..m.clone() }
                };
                let Some(i) = left.iter().position(same) else {
                    panic!("{label}: {m:?} is not among pffexport's items {left:?}\n{stdout}");
                };
                left.remove(i);
            }
            assert!(left.is_empty(), "{label}: items not imported: {left:?}\n{stdout}");
            items_compared += items.len();
        }
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} sample PSTs compared");
    println!("{compared} PSTs compared, {items_compared} items");
}

#[test]
fn damaged_files_get_a_clear_error_and_no_panic() {
    let Some(dir) = testdata() else { return };
    let enron = dir.join("pstextractor-enron.pst");
    let bytes = fs::read(&enron).unwrap();
    let work = tempfile::tempdir().unwrap();
    // Cut in the middle, cut inside the header, and noise over the middle third.
    let mut noisy = bytes.clone();
    let third = noisy.len() / 3;
    let mut x = 0x1234_5678u32;
    for b in &mut noisy[third..2 * third] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half.pst", bytes[..bytes.len() / 2].to_vec()),
        ("header.pst", bytes[..300].to_vec()),
        ("noisy.pst", noisy),
    ];
    for (name, content) in cases {
        let path = work.path().join(name);
        fs::write(&path, content).unwrap();
        let store = work.path().join(format!("store-{name}"));
        let out = msgfs().arg("import").arg("--store").arg(&store).arg(&path).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(out.status.code(), Some(1), "{name}: a damaged file must be reported\n{stdout}{stderr}");
        assert!(stdout.contains(name), "{name}: the report names the file\n{stdout}");
        // What was imported is sound.
        let check = msgfs().arg("check").arg(&store).output().unwrap();
        assert!(check.status.success(), "{name}: {}", String::from_utf8_lossy(&check.stdout));
    }
}

/// The stored message of `store` whose subject is `subject`.
fn message_with_subject(store: &Path, subject: &str) -> Vec<u8> {
    let st = Store::open(store, Options { read_only: true, ..Default::default() }).unwrap();
    let ids: Vec<Id> = st.index().messages().map(|(id, _)| id).collect();
    for id in ids {
        let content = st.read_message(id).unwrap();
        if msgfs::mime::parse_props(&content).subject.as_deref() == Some(subject) {
            return content;
        }
    }
    panic!("no message {subject:?} in {}", store.display());
}

#[test]
fn an_embedded_message_is_a_message_rfc822_part_and_its_non_ascii_subject_survives() {
    let Some(dir) = testdata() else { return };
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let out = msgfs().arg("import").arg("--store").arg(&store).arg(dir.join("rubymsg-msgInMsg.pst")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let outer = message_with_subject(&store, "I have attachments!");
    let parsed = mailparse::parse_mail(&outer).unwrap();
    let inner = parsed
        .subparts
        .iter()
        .flat_map(all_parts)
        .find(|p| p.ctype.mimetype == "message/rfc822")
        .expect("a message/rfc822 part");
    let body = inner.get_body_raw().unwrap();
    let embedded = mailparse::parse_mail(&body).unwrap();
    let subject = embedded.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case("subject")).unwrap().get_value();
    // pffexport shows it as "Microsoft Outlook テスト メッセージ".
    assert_eq!(subject, "Microsoft Outlook テスト メッセージ");
    // Non-ASCII folder names survive too (libyal-outlook.pst has 收件箱, rubymsg files a
    // Japanese top folder).
    let store2 = work.path().join("store2");
    let out = msgfs().arg("import").arg("--store").arg(&store2).arg(dir.join("libyal-outlook.pst")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let st = Store::open(&store2, Options { read_only: true, ..Default::default() }).unwrap();
    assert!(st.folder_by_path("收件箱").is_ok(), "no folder 收件箱");
}

#[test]
fn contacts_and_appointments_become_vcard_and_icalendar_parts() {
    let Some(dir) = testdata() else { return };
    require_pffexport();
    let pst = dir.join("javalibpst-dist-list.pst");
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let out = msgfs().arg("import").arg("--store").arg(&store).arg(&pst).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // What pffexport reads from the contact's named properties.
    let top = "Top of Personal Folders";
    let _ = pffexport_facts(&pst, top, work.path());
    let contact =
        fs::read_to_string(work.path().join("pff.export").join(top).join("Contacts/Contact00002/Contact.txt")).unwrap();
    let email = header_value(&contact, "Email address 1:").expect("pffexport shows an email");
    let appointment =
        fs::read_to_string(work.path().join("pff.export").join(top).join("Calendar/Appointment00001/Appointment.txt"))
            .unwrap();
    assert!(appointment.contains("Test appointment"));

    let part_of = |subject: &str, mimetype: &str| -> String {
        let content = message_with_subject(&store, subject);
        let parsed = mailparse::parse_mail(&content).unwrap();
        let parts = all_parts(&parsed);
        let part = parts.into_iter().find(|p| p.ctype.mimetype == mimetype);
        part.unwrap_or_else(|| panic!("{subject:?} has no {mimetype} part")).get_body().unwrap()
    };
    let vcard = part_of("contact name 1", "text/vcard");
    assert!(vcard.contains("BEGIN:VCARD") && vcard.contains(&format!("EMAIL:{email}")), "{vcard}");
    let ics = part_of("Test appointment", "text/calendar");
    assert!(ics.contains("BEGIN:VEVENT") && ics.contains("SUMMARY:Test appointment"), "{ics}");
    assert!(ics.contains("DTSTART:") && ics.contains("DTEND:"), "{ics}");
}

#[test]
fn an_inline_image_keeps_its_content_id_beside_the_html_that_refers_to_it() {
    let Some(dir) = testdata() else { return };
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let pst = dir.join("rubymsg-attachAndInline.pst");
    let out = msgfs().arg("import").arg("--store").arg(&store).arg(&pst).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let content = message_with_subject(&store, "Attach and inline");
    let parsed = mailparse::parse_mail(&content).unwrap();
    let parts = all_parts(&parsed);
    let related = parts.iter().find(|p| p.ctype.mimetype == "multipart/related").expect("multipart/related");
    let inner = all_parts(related);
    // The HTML (kept by Outlook only inside the compressed RTF) refers to the image by cid.
    let html = inner.iter().find(|p| p.ctype.mimetype == "text/html").expect("text/html").get_body().unwrap();
    let image = inner.iter().find(|p| p.ctype.mimetype == "image/png").expect("the inline image");
    let cid = image.headers.iter().find(|h| h.get_key().eq_ignore_ascii_case("content-id")).unwrap().get_value();
    let cid = cid.trim_matches(|c| c == '<' || c == '>');
    assert!(html.contains(&format!("cid:{cid}")), "the HTML does not refer to {cid}");
    assert_eq!(image.get_content_disposition().disposition, mailparse::DispositionType::Inline);
    // The other attachment stays an attachment, outside the related part.
    let attached = parts
        .iter()
        .find(|p| p.get_content_disposition().params.get("filename").map(String::as_str) == Some("attach.png"));
    assert_eq!(attached.unwrap().get_content_disposition().disposition, mailparse::DispositionType::Attachment);
}
