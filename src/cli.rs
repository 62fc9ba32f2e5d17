//! The command line's one definition (clap): `main.rs` parses with it, and the man-page
//! and completion tests and `msgfs completions` walk it through [`clap::CommandFactory`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// `msgfs --version`: the release, the FUSE protocol spoken and the store formats read.
fn version_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let (major, minor) = crate::fs::FUSE_PROTOCOL;
        let store = crate::store::FORMAT_VERSION;
        let oldest = crate::store::FORMAT_OLDEST;
        format!(
            "{}\nFUSE kernel protocol {major}.{minor} (at most; a mount uses the lower of this and the kernel's)\n\
             store format {store} (reads formats {oldest} to {store}; see msgfs(5))",
            env!("CARGO_PKG_VERSION")
        )
    })
}

#[derive(Parser)]
#[command(name = "msgfs", version = version_text(), about = "Mount a message store as a filesystem: folders are directories, messages are RFC 5322 files", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The shells `msgfs completions` writes for.
#[derive(Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The orders `msgfs ls --sort` knows.
#[derive(Clone, Copy, ValueEnum)]
pub enum LsSort {
    Date,
    From,
    Subject,
    Size,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Maildir,
    Mbox,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a store (default: ~/.local/share/msgfs/default); an existing store is opened and left
    /// as it is
    Init {
        /// Store directory (default: $XDG_DATA_HOME/msgfs/default or ~/.local/share/msgfs/default)
        store: Option<PathBuf>,
    },
    /// Mount a store (or an Outlook PST file, read-only) at MOUNTPOINT and serve it from a daemon in
    /// the background
    #[command(
        override_usage = "msgfs mount [OPTIONS] [STORE] MOUNTPOINT",
        after_help = "Examples:\n  msgfs mount ~/mail                         \
                      the default store (~/.local/share/msgfs/default) at ~/mail\n  \
                      msgfs mount -o ro /backup/mail /mnt/bak    a backup store, read-only"
    )]
    Mount {
        /// Store directory (created on first use), or an Outlook PST file to mount read-only; given
        /// alone, it is the MOUNTPOINT and the store is the default one, ~/.local/share/msgfs/default
        #[arg(value_name = "STORE")]
        first: PathBuf,
        /// Mount point (an existing empty directory)
        #[arg(value_name = "MOUNTPOINT")]
        second: Option<PathBuf>,
        /// Stay in the foreground and log to stderr (or --log-file); without it the daemon logs to
        /// ~/.local/state/msgfs/msgfs.log, rotated at 4 MiB
        #[arg(short = 'f', long)]
        foreground: bool,
        /// Mount options, comma-separated, repeatable: ro, rw, allow_other, threads=N (FUSE threads,
        /// default: the CPUs, at most 4), snapshot_timeout_ms=N (freeze timeout of snapshot sessions,
        /// default 70000), commit=durable|lazy[:MS], trash (rm moves messages to Deleted Items), debug; the generic options of fstab(5) are ignored
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Vec<String>,
        /// Log more: -v adds info, -vv debug (RUST_LOG, when set, decides instead)
        #[arg(short = 'v', long, action = clap::ArgAction::Count)]
        verbose: u8,
        /// Log at debug level and stay in the foreground
        #[arg(short = 'd', long)]
        debug: bool,
        /// Log to FILE (rotated at 4 MiB, one older file kept as FILE.1)
        #[arg(long, value_name = "FILE")]
        log_file: Option<PathBuf>,
    },
    /// Unmount a msgfs mount and wait (up to 2 minutes) until its daemon has saved everything and
    /// closed the store
    Umount {
        /// Mount point of a msgfs mount
        mountpoint: PathBuf,
    },
    /// Import Outlook PST files, mbox files, Maildir folders, .eml files and directories of them;
    /// exit 1 if something could not be imported
    Import {
        /// Files or directories to import; an Outlook PST file brings its whole folder tree
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// Store directory (default: ~/.local/share/msgfs/default; created if missing; not while it is
        /// mounted)
        #[arg(long)]
        store: Option<PathBuf>,
        /// Folder path to import into, such as Archive/2024 (created if missing; default: the top of the store)
        #[arg(long, value_name = "FOLDER")]
        into: Option<String>,
        /// Import a message even if its folder holds one with the same Message-ID and content
        /// (by default such duplicates are skipped and counted)
        #[arg(long)]
        allow_duplicates: bool,
    },
    /// Export the store (or one folder) as Maildir or mbox; exit 1 if some message could not be read
    Export {
        /// Store directory (default: ~/.local/share/msgfs/default; opened read-only, so it may be mounted)
        #[arg(long)]
        store: Option<PathBuf>,
        /// Output format
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only this folder path, such as Inbox/Work (and its subfolders)
        #[arg(long, value_name = "FOLDER")]
        folder: Option<String>,
        /// Destination directory, created if missing: a Maildir++ tree (maildir: a new or empty
        /// directory, since exporting again would duplicate every message) or a directory of
        /// FOLDER.mbox files (mbox); existing files are never overwritten
        dest: PathBuf,
    },
    /// List messages one per line: flags, date, sender, size, attachments, subject (the store is
    /// read, never locked: it may be mounted); exit 1 if some PATH or message could not be read
    Ls {
        /// Folders or messages: in a msgfs mount, or in an unmounted store directory as
        /// STORE/FOLDER/NAME (default: the current directory)
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Long lines: the date with seconds and zone, the size in bytes, the whole From, and
        /// the message's path in the store
        #[arg(short = 'l')]
        long: bool,
        /// Order of the lines (oldest, A or smallest first)
        #[arg(long, value_enum, default_value = "date")]
        sort: LsSort,
        /// One JSON object per line, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Put messages that `-o trash` moved to Deleted Items back in the folder each came from;
    /// exit 1 if some could not be
    Restore {
        /// Messages in Deleted Items of a msgfs mount
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Take the crash-recovery lock for the calling shell: reads and writes fail with EACCES
    /// until that shell exits or `msgfs unlock`
    Lock {
        /// Mount point of a msgfs mount
        mountpoint: PathBuf,
        /// SYSTEM_SHUTDOWN: `msgfs unlock` cannot lift it, only the end of the shell
        #[arg(long)]
        shutdown: bool,
    },
    /// Lift the crash-recovery lock (CONTINUE)
    Unlock {
        /// Mount point of a msgfs mount
        mountpoint: PathBuf,
    },
    /// Freeze the store for a backup: changes wait, reads go on, until `msgfs thaw` or the
    /// timeout
    Freeze {
        /// Mount point of a msgfs mount
        mountpoint: PathBuf,
    },
    /// Thaw a frozen store; exit 1 if the freeze timed out (the backup may be inconsistent)
    Thaw {
        /// Mount point of a msgfs mount
        mountpoint: PathBuf,
    },
    /// Abort a snapshot session (thaws if frozen)
    Abort {
        /// Mount point of a msgfs mount
        mountpoint: PathBuf,
    },
    /// Show the state of a mount: crash-recovery lock, snapshot sessions, last open
    Status {
        /// Mount point of a msgfs mount
        mountpoint: PathBuf,
    },
    /// Back up a mounted store safely: freeze, copy the store directory with rsync, thaw
    Backup {
        /// Mount point of a msgfs mount
        mountpoint: PathBuf,
        /// Destination directory (becomes a store that `msgfs mount` serves): new, empty, or an
        /// earlier backup of this store (files the store does not have are deleted); never
        /// inside a msgfs mount
        dest: PathBuf,
    },
    /// Replicate a store with an IMAP account, both ways (see accounts.toml in msgfs(5)); exit 1
    /// if some folder failed, 2 for usage, connection or store errors
    Sync {
        /// Account name in accounts.toml (default: the only one)
        account: Option<String>,
        /// Accounts file (default: $XDG_CONFIG_HOME/msgfs/accounts.toml or ~/.config/msgfs/accounts.toml)
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Store directory (default: the account's `store`); when it is mounted, the mount's
        /// daemon runs the sync
        #[arg(long)]
        store: Option<PathBuf>,
        /// Only this folder (store path such as Work/2026, or the server's name); repeatable
        #[arg(long = "folder", value_name = "F")]
        folders: Vec<String>,
        /// Only send local changes to the server
        #[arg(long, conflicts_with = "download_only")]
        upload_only: bool,
        /// Only bring the server's changes into the store
        #[arg(long)]
        download_only: bool,
        /// Show what would change on each side; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Allow more deletions in one folder than the account's max_deletes
        #[arg(long)]
        allow_mass_delete: bool,
        /// Show the last run's per-folder state and result instead of syncing
        #[arg(long)]
        status: bool,
    },
    /// Print the completion script for SHELL (bash, zsh or fish) on standard output (make install
    /// installs all three)
    Completions {
        /// Shell to complete for
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Verify every log record, object checksum and reference; exit 1 on damage, 2 if STORE is
    /// not a store
    Check {
        /// Store directory (default: ~/.local/share/msgfs/default)
        store: Option<PathBuf>,
    },
    /// Print the part tree of message files (a .eml file, or a message in a mount): size, type and
    /// the name each part has in the message's NAME.eml.parts folder
    Parts {
        /// Message files
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// The arguments to parse: `args` as given, with `mount` put in front when they have the
/// shape mount.fuse3 uses for `mount -t fuse.msgfs STORE MOUNTPOINT -o OPTIONS` and fstab
/// lines: `msgfs STORE MOUNTPOINT [-o OPTIONS]`, no subcommand. That shape is recognized
/// only when the first argument is no subcommand, STORE exists and MOUNTPOINT is a
/// directory, so that a mistyped subcommand is still an error and never creates a store.
pub fn with_mount_helper_form(mut args: Vec<OsString>) -> Vec<OsString> {
    let (Some(first), Some(second)) = (args.get(1), args.get(2)) else { return args };
    let is_subcommand = Cli::command().get_subcommands().any(|c| c.get_name() == first) || first == "help";
    let path = |a: &OsString| !a.as_encoded_bytes().starts_with(b"-") && !a.is_empty();
    if !is_subcommand && path(first) && path(second) && Path::new(first).exists() && Path::new(second).is_dir() {
        args.insert(1, "mount".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_mount_helper_form_becomes_msgfs_mount() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mp) = (dir.path().join("store"), dir.path().join("mnt"));
        std::fs::create_dir(&store).unwrap();
        std::fs::create_dir(&mp).unwrap();
        let (s, m) = (store.to_str().unwrap(), mp.to_str().unwrap());
        let got = with_mount_helper_form(os(&["msgfs", s, m, "-o", "rw,noatime"]));
        assert_eq!(got, os(&["msgfs", "mount", s, m, "-o", "rw,noatime"]));
        let cli = Cli::try_parse_from(got).unwrap();
        assert!(matches!(cli.command, Command::Mount { .. }));
        // Left alone: subcommands, a mistyped one, a store that does not exist, options first.
        for args in [
            vec!["msgfs", "check", s],
            vec!["msgfs", "mount", s, m],
            vec!["msgfs", "moutn", m],
            vec!["msgfs", "/nonexistent/store", m],
            vec!["msgfs", "-V"],
            vec!["msgfs", s],
        ] {
            assert_eq!(with_mount_helper_form(os(&args)), os(&args));
        }
    }
}
