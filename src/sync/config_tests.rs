//! Unit tests of accounts.toml parsing, password lookup and folder patterns.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/cfg/accounts.toml"), text, Some("/home/al"))
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().0
}

const WORK: &str = r#"
[account.work]
host = "imap.example.org"
user = "alice@example.org"
pass_cmd = "pass show mail/work"
store = "~/.local/share/msgfs/default"
folders = ["*", "!Junk"]
max_deletes = "10%"
"#;

#[test]
fn a_full_account_parses_with_implicit_tls_on_993_and_home_expanded() {
    let c = parse(WORK).unwrap();
    let a = c.account(Some("work")).unwrap();
    assert_eq!((a.host.as_str(), a.port, a.tls), ("imap.example.org", 993, Tls::Implicit));
    assert_eq!(a.store, PathBuf::from("/home/al/.local/share/msgfs/default"));
    assert_eq!(a.folders, ["*", "!Junk"]);
    assert_eq!(a.max_deletes, MaxDeletes::Percent(10));
    assert_eq!(a.pass_cmd.as_deref(), Some("pass show mail/work"));
    assert_eq!(c.account(None).unwrap().name, "work");
}

#[test]
fn starttls_and_none_default_to_port_143_and_an_explicit_port_wins() {
    let t = |extra: &str| {
        let c = parse(&format!("[account.a]\nhost = \"127.0.0.1\"\nuser = \"u\"\nstore = \"/s\"\n{extra}")).unwrap();
        let a = &c.accounts["a"];
        (a.tls, a.port)
    };
    assert_eq!(t("tls = \"starttls\""), (Tls::Starttls, 143));
    assert_eq!(t("tls = \"none\""), (Tls::None, 143));
    assert_eq!(t("tls = \"implicit\"\nport = 1993"), (Tls::Implicit, 1993));
}

#[test]
fn tls_none_is_refused_to_a_remote_host_in_one_line_naming_file_account_and_key() {
    let e = err("[account.w]\nhost = \"imap.example.org\"\ntls = \"none\"\nuser = \"u\"\nstore = \"/s\"\n");
    assert!(e.starts_with("/cfg/accounts.toml: account w: key tls: none is only allowed to a loopback host"), "{e}");
    assert!(!e.contains('\n'));
    for host in ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"] {
        assert!(is_loopback(host), "{host}");
    }
    for host in ["10.0.0.1", "localhost.example.org", "imap"] {
        assert!(!is_loopback(host), "{host}");
    }
}

#[test]
fn errors_name_the_file_the_account_and_the_key() {
    let base = "[account.w]\nhost = \"h\"\nuser = \"u\"\nstore = \"/s\"\n";
    let cases = [
        ("port = 70000", "key port: must be a number from 1 to 65535"),
        ("port = \"993\"", "key port:"),
        ("tls = \"ssl\"", "key tls: \"ssl\" is not implicit, starttls or none"),
        ("max_deletes = \"ten\"", "key max_deletes:"),
        ("max_deletes = \"150%\"", "key max_deletes:"),
        ("folders = \"*\"", "key folders: must be a list"),
        ("passcmd = \"x\"", "key passcmd: unknown key"),
    ];
    for (extra, want) in cases {
        let e = err(&format!("{base}{extra}\n"));
        assert!(e.starts_with("/cfg/accounts.toml: account w: "), "{e}");
        assert!(e.contains(want), "{extra}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let e = err("[account.w]\nhost = \"h\"\nstore = \"/s\"\n");
    assert_eq!(e, "/cfg/accounts.toml: account w: key user: is missing");
    let e = err("[account.w\nhost=1");
    assert!(e.starts_with("/cfg/accounts.toml: ") && !e.contains('\n'), "{e}");
}

#[test]
fn max_deletes_takes_a_count_or_a_percentage() {
    assert_eq!(parse_max_deletes("25"), Some(MaxDeletes::Count(25)));
    assert_eq!(parse_max_deletes("10%"), Some(MaxDeletes::Percent(10)));
    assert_eq!(MaxDeletes::Percent(10).limit(1234), 123);
    assert_eq!(MaxDeletes::Count(5).limit(1234), 5);
    let c = parse("[account.w]\nhost = \"h\"\nuser = \"u\"\nstore = \"/s\"\nmax_deletes = 7\n").unwrap();
    assert_eq!(c.accounts["w"].max_deletes, MaxDeletes::Count(7));
}

#[test]
fn xdg_config_home_wins_over_home_when_absolute() {
    let p = |x: Option<&str>, h: Option<&str>| default_path(x, h);
    assert_eq!(p(Some("/x"), Some("/h")), Some(PathBuf::from("/x/msgfs/accounts.toml")));
    assert_eq!(p(Some("rel"), Some("/h")), Some(PathBuf::from("/h/.config/msgfs/accounts.toml")));
    assert_eq!(p(None, Some("/h")), Some(PathBuf::from("/h/.config/msgfs/accounts.toml")));
    assert_eq!(p(None, None), None);
}

#[test]
fn several_accounts_need_a_name() {
    let two = format!("{WORK}\n[account.home]\nhost = \"h\"\nuser = \"u\"\nstore = \"/s\"\n");
    let c = parse(&two).unwrap();
    assert_eq!(c.account(None).unwrap_err().0, "/cfg/accounts.toml: several accounts (home, work); name one");
    assert_eq!(c.account(Some("x")).unwrap_err().0, "/cfg/accounts.toml: no account x");
}

// One test touches MSGFS_IMAP_PASSWORD, so no other test can see it half-set.
#[test]
fn the_password_is_the_first_line_of_pass_cmd_unless_the_environment_overrides_it() {
    let mut a = parse(WORK).unwrap().accounts["work"].clone();
    std::env::remove_var("MSGFS_IMAP_PASSWORD");
    a.pass_cmd = Some("printf 'hunter2\\nsecond line\\n'".into());
    let p = a.password().unwrap();
    assert_eq!(p.expose(), "hunter2");
    assert_eq!(format!("{p:?}"), "Password(***)");
    a.pass_cmd = Some("echo hunter2; exit 3".into());
    let e = a.password().unwrap_err().0;
    assert!(e.starts_with("account work: key pass_cmd: ") && !e.contains("hunter2\n"), "{e}");
    a.pass_cmd = None;
    assert!(a.password().unwrap_err().0.contains("MSGFS_IMAP_PASSWORD is not set"));
    std::env::set_var("MSGFS_IMAP_PASSWORD", "from env");
    assert_eq!(a.password().unwrap().expose(), "from env");
    std::env::remove_var("MSGFS_IMAP_PASSWORD");
}

#[test]
fn folder_patterns_include_exclude_and_percent_stops_at_the_delimiter() {
    let pats = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let p = pats(&["*", "!Junk"]);
    assert!(folder_selected(&p, "INBOX", Some('.')));
    assert!(folder_selected(&p, "Junk.Old", Some('.')));
    assert!(!folder_selected(&p, "Junk", Some('.')));
    let p = pats(&["Work.%", "!Work.Tmp*"]);
    assert!(folder_selected(&p, "Work.A", Some('.')));
    assert!(!folder_selected(&p, "Work.A.B", Some('.')));
    assert!(!folder_selected(&p, "Work.Tmp2", Some('.')));
    assert!(!folder_selected(&p, "Home", Some('.')));
    assert!(folder_selected(&pats(&["!Spam"]), "Été", Some('/')));
    assert!(folder_selected(&pats(&["É*"]), "Été/x", Some('/')));
}
