//! The command line as users meet it: `--version`, `msgfs mount --help`, and the clap
//! definition against msgfs(1), so that the man page and `--help` cannot drift apart.

use std::process::Command;

fn msgfs(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_msgfs")).args(args).output().unwrap();
    assert!(out.status.success(), "msgfs {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_fuse_protocol_and_the_store_formats() {
    let v = msgfs(&["--version"]);
    let (major, minor) = msgfs::fs::FUSE_PROTOCOL;
    assert!(v.starts_with(&format!("msgfs {}\n", env!("CARGO_PKG_VERSION"))), "{v}");
    assert!(v.contains(&format!("FUSE kernel protocol {major}.{minor}")), "{v}");
    let (newest, oldest) = (msgfs::store::FORMAT_VERSION, msgfs::store::FORMAT_OLDEST);
    assert!(v.contains(&format!("store format {newest} (reads formats {oldest} to {newest}")), "{v}");
}

/// FUSE_PROTOCOL copies a private constant of fuser 0.18: another fuser must be looked at.
#[test]
fn the_fuse_protocol_said_is_the_one_of_the_fuser_in_cargo_lock() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    let after = lock.split("name = \"fuser\"\nversion = \"").nth(1).expect("fuser in Cargo.lock");
    let version = after.split('"').next().unwrap();
    assert!(version.starts_with("0.18."), "fuser {version}: check its FUSE_KERNEL_MINOR_VERSION, then FUSE_PROTOCOL");
    assert_eq!(msgfs::fs::FUSE_PROTOCOL, (7, 40));
}

#[test]
fn mount_help_shows_the_optional_store_and_two_examples() {
    let help = msgfs(&["mount", "--help"]);
    assert!(help.contains("Usage: msgfs mount [OPTIONS] [STORE] MOUNTPOINT\n"), "{help}");
    let examples = help.split("Examples:\n").nth(1).expect("an Examples section");
    let lines: Vec<&str> = examples.lines().filter(|l| l.trim_start().starts_with("msgfs mount ")).collect();
    assert_eq!(lines.len(), 2, "{examples}");
}

/// msgfs(1)'s `.SS msgfs NAME ...` sections: name, heading line, and text up to the next
/// section.
fn man_sections() -> Vec<(String, String, String)> {
    let man = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/msgfs.1")).unwrap();
    let mut out: Vec<(String, String, String)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in man.lines() {
        if let Some(rest) = line.strip_prefix(".SS msgfs ") {
            let name = rest.split([' ', '|']).next().unwrap().to_string();
            out.push((name, line.to_string(), String::new()));
            current = Some(out.len() - 1);
        } else if line.starts_with(".SS") || line.starts_with(".SH") {
            current = None;
        } else if let Some(i) = current {
            out[i].2.push_str(line);
            out[i].2.push('\n');
        }
    }
    out
}

/// An option as roff writes it: every `-` escaped.
fn roff(flag: &str) -> String {
    flag.replace('-', "\\-")
}

/// The options a man section documents as its own: those in its heading and those tagging a
/// `.TP` paragraph (`.B \-\-dry\-run`, `.BR \-f ", " \-\-foreground`, `.BI \-o " OPTIONS"`).
fn documented_flags(heading: &str, text: &str) -> Vec<String> {
    let mut tags: Vec<&str> = vec![heading];
    let lines: Vec<&str> = text.lines().collect();
    for w in lines.windows(2) {
        if w[0] == ".TP" && (w[1].starts_with(".B \\-") || w[1].starts_with(".BR \\-") || w[1].starts_with(".BI \\-")) {
            tags.push(w[1]);
        }
    }
    let mut flags = Vec::new();
    for t in tags {
        let t =
            t.replace("\\fB", " ").replace("\\fP", " ").replace("\\fI", " ").replace(['[', ']', '|', '"', ','], " ");
        for word in t.split_whitespace() {
            if let Some(long) = word.strip_prefix("\\-\\-") {
                flags.push(format!("--{}", long.replace("\\-", "-")));
            } else if let Some(short) = word.strip_prefix("\\-") {
                if short.len() == 1 {
                    flags.push(format!("-{short}"));
                }
            }
        }
    }
    flags
}

#[test]
fn every_subcommand_and_option_is_in_the_man_page_and_the_man_page_names_no_other() {
    use clap::CommandFactory;
    let cli = msgfs::cli::Cli::command();
    let sections = man_sections();
    let names: Vec<&str> = cli.get_subcommands().filter(|c| !c.is_hide_set()).map(|c| c.get_name()).collect();
    for (name, _, _) in &sections {
        assert!(names.contains(&name.as_str()), "msgfs(1) documents `msgfs {name}`, which does not exist");
    }
    for sub in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = sub.get_name();
        let Some((_, heading, text)) = sections.iter().find(|(n, _, _)| n == name) else {
            panic!("msgfs(1) has no section `.SS msgfs {name}`");
        };
        let all = format!("{heading}\n{text}");
        let mut flags = vec!["-h".to_string(), "--help".to_string()];
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                flags.push(format!("--{long}"));
                assert!(all.contains(&roff(&format!("--{long}"))), "msgfs(1) `msgfs {name}` lacks --{long}");
            }
            if let Some(short) = arg.get_short() {
                flags.push(format!("-{short}"));
                assert!(all.contains(&roff(&format!("-{short}"))), "msgfs(1) `msgfs {name}` lacks -{short}");
            }
            if arg.is_positional() {
                let value = arg.get_value_names().and_then(|v| v.first()).map(|v| v.to_string());
                let value = value.unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
                assert!(heading.contains(&value), "msgfs(1) heading of `msgfs {name}` lacks {value}: {heading}");
            }
        }
        for f in documented_flags(heading, text) {
            assert!(flags.contains(&f), "msgfs(1) documents {f} for `msgfs {name}`, which has no such option");
        }
    }
}
