//! `make install` and `make uninstall` into a temporary PREFIX: every file where the system
//! looks for it, the README's later commands working from it (msgfs on PATH, `man msgfs`),
//! completions that real bash loads and answers with, and an uninstall that leaves nothing.

use std::path::Path;
use std::process::{Command, Output};

#[path = "common/run.rs"]
mod run;
use run::run;

/// A missing program fails the test naming its Debian package.
fn require(program: &str, package: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {program}")).output().unwrap().status.success();
    assert!(found, "program {program} is missing: apt-get install {package}");
}

fn make(target: &str, prefix: &Path) -> Output {
    run(Command::new("make")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg(target)
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("MSGFS_BIN={}", env!("CARGO_BIN_EXE_msgfs"))))
}

const FILES: &[&str] = &[
    "bin/msgfs",
    "share/man/man1/msgfs.1",
    "share/man/man5/msgfs.5",
    "share/bash-completion/completions/msgfs",
    "share/zsh/site-functions/_msgfs",
    "share/fish/vendor_completions.d/msgfs.fish",
    "lib/systemd/user/msgfs@.service",
];

/// Ask bash's completion function what follows `words` (the last one being completed).
fn bash_complete(script: &Path, words: &str) -> Vec<String> {
    let n = words.split(' ').count() - 1;
    let probe = format!(
        "source '{}' && COMP_WORDS=({words}) && COMP_CWORD={n} && COMP_LINE='{words}' && COMP_POINT=${{#COMP_LINE}} \
         && $(complete -p msgfs | sed 's/.*-F \\([^ ]*\\) .*/\\1/') msgfs && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = run(Command::new("bash").arg("--norc").arg("-c").arg(probe));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn make_install_puts_each_file_in_place_and_make_uninstall_removes_them_all() {
    require("make", "make");
    require("man", "man-db");
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("usr");
    make("install", &prefix);
    for f in FILES {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }

    // The README's later commands: msgfs on PATH, its man pages found by man.
    let path = format!("{}:{}", prefix.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let v = run(Command::new("sh").arg("-c").arg("msgfs --version").env("PATH", &path));
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("msgfs "));
    for (section, page) in [("1", "share/man/man1/msgfs.1"), ("5", "share/man/man5/msgfs.5")] {
        let w = run(Command::new("man").args(["-w", section, "msgfs"]).env("MANPATH", prefix.join("share/man")));
        assert_eq!(String::from_utf8_lossy(&w.stdout).trim(), prefix.join(page).display().to_string());
        let text = run(Command::new("man").arg("-l").arg(prefix.join(page)).env("MANWIDTH", "80"));
        assert!(String::from_utf8_lossy(&text.stdout).contains("msgfs"), "man -l {page} shows nothing");
    }

    // Completions: bash loads the script and completes subcommands and options.
    require("bash", "bash");
    let bash = prefix.join("share/bash-completion/completions/msgfs");
    assert!(bash_complete(&bash, "msgfs mo").contains(&"mount".to_string()));
    let opts = bash_complete(&bash, "msgfs mount --");
    for o in ["--foreground", "--log-file", "--verbose", "--debug"] {
        assert!(opts.iter().any(|c| c == o), "{o} not offered: {opts:?}");
    }
    assert!(!opts.iter().any(|c| c == "--ready-fd"), "an internal option is offered: {opts:?}");
    let zsh = std::fs::read_to_string(prefix.join("share/zsh/site-functions/_msgfs")).unwrap();
    assert!(zsh.starts_with("#compdef msgfs") && zsh.contains("'--log-file=["), "{zsh}");
    let fish = std::fs::read_to_string(prefix.join("share/fish/vendor_completions.d/msgfs.fish")).unwrap();
    assert!(fish.contains("complete -c msgfs") && fish.contains("-a \"mount\""), "{fish}");

    // The unit runs the installed program, in the foreground, as a notify service.
    let unit = std::fs::read_to_string(prefix.join("lib/systemd/user/msgfs@.service")).unwrap();
    let exec = format!("ExecStart={}/bin/msgfs mount -f ", prefix.display());
    assert!(unit.contains(&exec) && unit.contains("Type=notify"), "{unit}");

    make("uninstall", &prefix);
    let left: Vec<_> = FILES.iter().filter(|f| prefix.join(f).exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
