//! IMAP client tests against a real Dovecot on loopback (tests/common/dovecot.rs).

#[path = "common/dovecot.rs"]
mod dovecot;

use dovecot::Dovecot;

#[test]
fn the_fixture_starts_and_takes_ten_thousand_messages_in_one_append() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    // A figure, not a check: timing belongs to benchmarks (it is well under a second on
    // a quiet machine, and more under load).
    eprintln!("Dovecot started in {:?}", server.started_in);
    let mut raw = server.raw();
    let msgs: Vec<_> = (0..10_000).map(|n| ("\\Seen", dovecot::message(n))).collect();
    let t = std::time::Instant::now();
    raw.multiappend("INBOX", &msgs);
    eprintln!("10,000 messages appended in {:?}", t.elapsed());
    let status = raw.cmd("STATUS INBOX (MESSAGES)").unwrap();
    assert!(status.contains("MESSAGES 10000"), "{status}");
}

use msgfs::sync::config::{Account, MaxDeletes, Password, Tls};
use msgfs::sync::imap::{Connection, FolderStatus, ImapError};
use msgfs::sync::names::SpecialUse;

#[test]
fn login_works_with_implicit_tls_starttls_and_plain_text_to_loopback() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    for tls in [Tls::Implicit, Tls::Starttls, Tls::None] {
        let mut conn = server.login(tls);
        let inbox = conn.list().unwrap().into_iter().find(|f| f.name == "INBOX").unwrap();
        assert_eq!(conn.status(&inbox).unwrap().messages, 0, "{tls:?}");
        conn.logout().unwrap();
    }
}

#[test]
fn starttls_to_a_server_that_does_not_offer_it_is_an_error_not_plain_text() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start_with(dovecot::Options { no_ssl: true, ..Default::default() });
    let err = Connection::connect(&server.account(Tls::Starttls)).err().expect("must refuse");
    assert!(matches!(err, ImapError::NoStartTls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("does not offer STARTTLS") && text.contains("plain text"), "{text}");
    // Nothing was sent in clear: the server's log names no login attempt by our user.
    assert!(!server.log().contains("user=<tester>"), "{}", server.log());
}

#[test]
fn a_certificate_from_an_unknown_ca_fails_the_handshake_with_a_tls_error() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    for tls in [Tls::Implicit, Tls::Starttls] {
        let mut acc = server.account(tls);
        acc.ca_file = None;
        let err = Connection::connect(&acc).err().expect("must refuse an unknown issuer");
        assert!(matches!(err, ImapError::Tls { .. }), "{tls:?}: {err:?}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}

#[test]
fn a_wrong_password_is_refused_with_the_servers_words() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    let mut conn = Connection::connect(&server.account(Tls::Implicit)).unwrap();
    let err = conn.login(dovecot::USER, &Password::new("wrong".into())).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImapError::LoginFailed { .. }), "{err:?}");
    assert!(text.starts_with("login as tester refused: "), "{text}");
    assert!(text.contains("AUTHENTICATIONFAILED") && text.contains("Authentication failed"), "{text}");
    assert!(!text.contains("wrong"), "the password leaked into the error: {text}");
}

#[test]
fn capabilities_are_detected_and_qresync_enabled_where_offered() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    let conn = server.login(Tls::Implicit);
    for cap in ["IMAP4REV1", "QRESYNC", "CONDSTORE", "MULTIAPPEND", "UIDPLUS", "MOVE", "SPECIAL-USE", "LITERAL+"] {
        assert!(conn.has(cap), "{cap} missing from {:?}", conn.capabilities());
    }
    assert!(!conn.has("STARTTLS"), "capabilities after login are the new ones");
    assert!(conn.qresync_enabled());
    conn.logout().unwrap();

    let plain = Dovecot::start_with(dovecot::Options {
        capability: Some("IMAP4rev1 LITERAL+ UIDPLUS".into()),
        ..Default::default()
    });
    let mut conn = plain.login(Tls::Starttls);
    assert!(!conn.has("QRESYNC") && !conn.has("CONDSTORE"), "{:?}", conn.capabilities());
    assert!(!conn.qresync_enabled());
    let inbox = conn.list().unwrap().into_iter().find(|f| f.name == "INBOX").unwrap();
    let st = conn.status(&inbox).unwrap();
    assert_eq!(st.highest_modseq, None, "no HIGHESTMODSEQ asked of a server without CONDSTORE");
    assert!(st.uid_validity.is_some());
}

#[test]
fn list_and_status_give_seeded_folders_with_non_ascii_names_and_the_store_mapping() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    let mut raw = server.raw();
    // Sent, Trash, Drafts and Junk exist by the fixture's special_use config once created.
    for b in ["Sent", "Trash", "Drafts", "Junk", "Work.Projects", "&AMk-t&AOk-", "\"A/B\"", "\"R&-D\""] {
        raw.cmd(&format!("CREATE {b}")).unwrap();
    }
    let seed = |raw: &mut dovecot::RawSession, mailbox: &str, n: usize| {
        let msgs: Vec<_> = (0..n).map(|i| ("\\Seen", dovecot::message(i))).collect();
        raw.multiappend(mailbox, &msgs);
    };
    seed(&mut raw, "INBOX", 250);
    seed(&mut raw, "&AMk-t&AOk-", 7);
    seed(&mut raw, "Sent", 3);
    seed(&mut raw, "\"A/B\"", 2);

    let mut conn = server.login(Tls::Implicit);
    let folders = conn.list().unwrap();
    let by_name = |n: &str| folders.iter().find(|f| f.name == n).unwrap_or_else(|| panic!("{n} not in {folders:?}"));
    let path = |n: &str| by_name(n).store_path().unwrap().join("/");
    assert_eq!(path("INBOX"), "Inbox");
    assert_eq!(path("Sent"), "Sent Items");
    assert_eq!(path("Trash"), "Deleted Items");
    assert_eq!(path("Drafts"), "Drafts");
    assert_eq!(path("Junk"), "Junk");
    assert_eq!(path("Work.Projects"), "Work/Projects");
    assert_eq!(path("Été"), "Été");
    assert_eq!(path("R&D"), "R&D");
    assert_eq!(path("A/B"), "A\u{FF0F}B", "a / inside a name is not a level");
    assert_eq!(by_name("Sent").special, Some(SpecialUse::Sent));
    assert_eq!(by_name("Été").wire, b"&AMk-t&AOk-");
    assert_eq!(by_name("Été").delimiter, Some('.'));
    assert!(!by_name("Work").selectable() && by_name("Work.Projects").selectable());

    let count = |conn: &mut Connection, n: &str| -> FolderStatus { conn.status(by_name(n)).unwrap() };
    let inbox = count(&mut conn, "INBOX");
    assert_eq!((inbox.messages, inbox.uid_next), (250, Some(251)));
    assert!(inbox.uid_validity.is_some() && inbox.highest_modseq.unwrap() > 0, "{inbox:?}");
    assert_eq!(count(&mut conn, "Été").messages, 7);
    assert_eq!(count(&mut conn, "Sent").messages, 3);
    assert_eq!(count(&mut conn, "A/B").messages, 2);
    assert_eq!(count(&mut conn, "R&D").messages, 0);
    // The server's words when a folder does not exist.
    let gone = msgfs::sync::imap::Folder { wire: b"Nope".to_vec(), name: "Nope".into(), ..by_name("Junk").clone() };
    let err = conn.status(&gone).unwrap_err().to_string();
    assert!(err.starts_with("STATUS failed: NO ") && err.contains("Mailbox doesn't exist"), "{err}");
    conn.logout().unwrap();
}

#[test]
fn a_server_killed_mid_session_or_not_listening_is_a_clear_connection_error() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    let mut conn = server.login(Tls::Implicit);
    let inbox = conn.list().unwrap().into_iter().find(|f| f.name == "INBOX").unwrap();
    drop(server);
    let err = conn.status(&inbox).unwrap_err();
    assert!(matches!(err, ImapError::Closed | ImapError::Io(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("closed the connection") || text.starts_with("IMAP connection: "), "{text}");
    let err = Connection::connect(&account_without_server()).err().unwrap();
    assert!(err.to_string().starts_with("cannot connect to 127.0.0.1:1: "), "{err}");
}

fn account_without_server() -> Account {
    Account {
        name: "test".into(),
        host: "127.0.0.1".into(),
        port: 1,
        tls: Tls::None,
        user: "u".into(),
        pass_cmd: None,
        ca_file: None,
        store: "/nonexistent".into(),
        folders: vec![],
        max_deletes: MaxDeletes::Count(0),
    }
}

#[test]
fn the_survey_keeps_selected_selectable_folders_and_holds_back_two_that_map_to_one_name() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    let mut raw = server.raw();
    for b in ["Sent", "\"Sent Items\"", "Trash", "Junk", "Work.Projects", "Work.Old", "&AMk-t&AOk-"] {
        raw.cmd(&format!("CREATE {b}")).unwrap();
    }
    raw.multiappend("Trash", &[("", dovecot::message(1)), ("\\Deleted", dovecot::message(2))]);
    let mut acc = server.account(Tls::Implicit);
    acc.folders = vec!["*".into(), "!Junk".into(), "!Work.O*".into()];
    let mut conn = server.login(Tls::Implicit);
    let s = msgfs::sync::survey::survey(&mut conn, &acc).unwrap();
    let got: Vec<(String, String, u32)> =
        s.folders.iter().map(|f| (f.folder.name.clone(), f.store_path.join("/"), f.status.messages)).collect();
    let want = [
        ("Trash", "Deleted Items", 2),
        ("INBOX", "Inbox", 0),
        ("Work.Projects", "Work/Projects", 0),
        ("Été", "Été", 0),
    ];
    let want: Vec<(String, String, u32)> = want.iter().map(|(a, b, n)| (a.to_string(), b.to_string(), *n)).collect();
    assert_eq!(got, want);
    assert!(s.folders.iter().all(|f| f.status.uid_validity.is_some() && f.status.highest_modseq.is_some()));
    assert_eq!(s.collisions.len(), 1, "{:?}", s.collisions);
    assert!(s.unmappable.is_empty(), "{:?}", s.unmappable);
    assert_eq!(s.collisions[0].store_path, ["Sent Items"]);
    let mut names = s.collisions[0].server_names.clone();
    names.sort();
    assert_eq!(names, ["Sent", "Sent Items"]);
}

#[test]
fn a_user_name_and_password_with_quotes_backslashes_and_non_ascii_log_in() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    for tls in [Tls::Implicit, Tls::None] {
        let mut conn = Connection::connect(&server.account(tls)).unwrap();
        conn.login(dovecot::USER2, &Password::new(dovecot::PASS2.into()))
            .unwrap_or_else(|e| panic!("{tls:?}: {e}\n{}", server.log()));
        assert!(conn.list().unwrap().iter().any(|f| f.name == "INBOX"));
        conn.logout().unwrap();
    }
    let mut conn = Connection::connect(&server.account(Tls::None)).unwrap();
    let err = conn.login(dovecot::USER2, &Password::new("q\"uo\\te".into())).unwrap_err();
    assert!(matches!(err, ImapError::LoginFailed { .. }), "{err:?}");
}

#[test]
fn an_account_from_accounts_toml_logs_in_with_the_password_its_pass_cmd_prints() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let pass_file = dir.path().join("pass");
    std::fs::write(&pass_file, format!("{}\nnot the password\n", dovecot::PASS)).unwrap();
    let path = dir.path().join("accounts.toml");
    let text = format!(
        "[account.local]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nuser = \"{}\"\n\
         pass_cmd = \"cat '{}'\"\nca_file = \"{}\"\nstore = \"~/mail\"\n",
        server.port,
        dovecot::USER,
        pass_file.display(),
        server.ca_file.display()
    );
    std::fs::write(&path, text).unwrap();
    let config = msgfs::sync::config::Config::load(Some(&path)).unwrap();
    let acc = config.account(None).unwrap();
    let mut conn = Connection::connect(acc).unwrap();
    conn.login(&acc.user, &acc.password().unwrap()).unwrap();
    conn.logout().unwrap();

    let missing = dir.path().join("nope.toml");
    let err = msgfs::sync::config::Config::load(Some(&missing)).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: ", missing.display())), "{err}");
}

#[test]
fn a_batch_goes_up_in_one_multiappend_with_its_uids_in_order_and_comes_back_byte_for_byte() {
    use msgfs::sync::commands::{Append, Appended};
    use msgfs::sync::imap::FetchWhat;
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    let mut raw = server.raw();
    raw.cmd("CREATE \"Entw&APw-rfe\"").unwrap();
    let mut conn = server.login(Tls::Implicit);
    let folder = conn.list().unwrap().into_iter().find(|f| f.name == "Entwürfe").expect("the folder is listed");
    // Small, and past the size whose FETCH literal is read around imap-next.
    let big = {
        let mut m = dovecot::message(2);
        m.extend(std::iter::repeat_n(b"line of text\r\n".as_slice(), 500).flatten());
        m
    };
    let contents = [dovecot::message(1), big, dovecot::message(3)];
    let keywords = vec!["$Work".to_string()];
    let msgs: Vec<Append<'_>> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| Append {
            flags: if i == 0 { msgfs::store::flags::SEEN } else { 0 },
            keywords: if i == 1 { &keywords } else { &[] },
            date: Some(1_700_000_000_000_000_000 + i as i64),
            content: c,
        })
        .collect();
    let answers = conn.append(&folder, &msgs).unwrap();
    assert_eq!(conn.multiappends(), 1, "one MULTIAPPEND for the batch");
    let uids: Vec<u32> = answers
        .iter()
        .map(|a| match a {
            Appended::Ok(Some(u)) => *u,
            other => panic!("not stored with a UID: {other:?}"),
        })
        .collect();
    assert_eq!(uids, vec![uids[0], uids[0] + 1, uids[0] + 2], "APPENDUID's set, in order");
    conn.examine(&folder).unwrap();
    let mut fetched = conn.uid_fetch(&format!("{}:{}", uids[0], uids[2]), FetchWhat::Full).unwrap();
    fetched.sort_by_key(|f| f.uid);
    assert_eq!(fetched.len(), 3);
    for ((f, c), uid) in fetched.iter().zip(&contents).zip(&uids) {
        assert_eq!(f.uid, *uid);
        assert_eq!(f.body.as_deref(), Some(c.as_slice()), "UID {uid} comes back as sent");
    }
    assert!(fetched[0].flags.iter().any(|f| f == "\\Seen"), "{:?}", fetched[0].flags);
    assert!(fetched[1].flags.iter().any(|f| f == "$Work"), "{:?}", fetched[1].flags);
    assert_eq!(fetched[2].internal_date, Some(1_700_000_000_000_000_000), "INTERNALDATE to the second");

    // Refused as a whole (no such folder): by RFC 3502 nothing was stored, so each message
    // goes again on its own and each answer carries the server's words.
    let mut gone = folder.clone();
    gone.name = "Nowhere".into();
    gone.wire = b"Nowhere".to_vec();
    let answers = conn.append(&gone, &msgs).unwrap();
    assert_eq!(conn.multiappends(), 1);
    assert!(answers.iter().all(|a| matches!(a, Appended::Refused(t) if t.contains("TRYCREATE"))), "{answers:?}");
    let st = raw.cmd("STATUS \"Entw&APw-rfe\" (MESSAGES)").unwrap();
    assert!(st.contains("MESSAGES 3"), "{st}");
}
