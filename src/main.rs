//! The `msgfs` command: parses arguments and calls the library, nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use msgfs::cmd;

#[derive(Parser)]
#[command(name = "msgfs", version, about = "Mount a message store as a filesystem: folders are directories, messages are RFC 5322 files", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Maildir,
    Mbox,
}

#[derive(Subcommand)]
enum Command {
    /// Create a store (default: ~/.local/share/msgfs/default); an existing store is opened and left
    /// as it is
    Init {
        /// Store directory (default: $XDG_DATA_HOME/msgfs/default or ~/.local/share/msgfs/default)
        store: Option<PathBuf>,
    },
    /// Mount a store (or an Outlook PST file, read-only) at MOUNTPOINT and serve it from a daemon in
    /// the background
    Mount {
        /// Store directory (created on first use), or an Outlook PST file to mount read-only; given
        /// alone, it is the MOUNTPOINT and the store is the default one, ~/.local/share/msgfs/default
        #[arg(value_name = "STORE")]
        first: PathBuf,
        /// Mount point (an existing empty directory)
        #[arg(value_name = "MOUNTPOINT")]
        second: Option<PathBuf>,
        /// Stay in the foreground and log to stderr (RUST_LOG=debug for more); without it the daemon
        /// logs to ~/.local/state/msgfs/msgfs.log
        #[arg(short = 'f', long)]
        foreground: bool,
        /// Mount options, comma-separated, repeatable: ro, rw, allow_other, threads=N (FUSE threads,
        /// default: the CPUs, at most 4), snapshot_timeout_ms=N (freeze timeout of snapshot sessions, default 70000)
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Vec<String>,
        /// (internal) descriptor on which the background daemon reports readiness
        #[arg(long, hide = true)]
        ready_fd: Option<i32>,
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
    /// Print the part tree of message files (a .eml file, or a message in a mount): size, type and
    /// the name each part has in the message's NAME.eml.parts folder
    Parts {
        /// Message files
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Verify every log record, object checksum and reference; exit 1 on damage, 2 if STORE is
    /// not a store
    Check {
        /// Store directory (default: ~/.local/share/msgfs/default)
        store: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Output into a closed pipe (`msgfs status MP | head -1`) ends the program quietly, as
    // for any Unix tool, instead of a panic in println!.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let store_or_default = |s: Option<PathBuf>| s.unwrap_or_else(msgfs::store::default_store_path);
    let res = match cli.command {
        Command::Init { store } => cmd::init::run(&store_or_default(store)),
        Command::Mount { first, second, foreground, options, ready_fd } => {
            let (store, mp) = match second {
                Some(mp) => (first, mp),
                None => (msgfs::store::default_store_path(), first),
            };
            cmd::mount::run(&store, &mp, foreground, &options, ready_fd)
        }
        Command::Umount { mountpoint } => cmd::mount::umount(&mountpoint),
        Command::Import { sources, store, into } => {
            cmd::import::run(&store_or_default(store), &sources, into.as_deref())
        }
        Command::Export { store, format, folder, dest } => {
            let fmt = match format {
                ExportFormat::Maildir => cmd::export::Format::Maildir,
                ExportFormat::Mbox => cmd::export::Format::Mbox,
            };
            cmd::export::run(&store_or_default(store), fmt, folder.as_deref(), &dest)
        }
        Command::Sync {
            account,
            config,
            store,
            folders,
            upload_only,
            download_only,
            dry_run,
            allow_mass_delete,
            status,
        } => cmd::sync::run(cmd::sync::Args {
            account,
            config,
            store,
            folders,
            upload_only,
            download_only,
            dry_run,
            allow_mass_delete,
            status,
        }),
        Command::Check { store } => cmd::check::run(&store_or_default(store)),
        Command::Parts { files } => cmd::parts::run(&files),
        Command::Lock { mountpoint, shutdown } => cmd::control::lock(&mountpoint, shutdown),
        Command::Unlock { mountpoint } => cmd::control::unlock(&mountpoint),
        Command::Freeze { mountpoint } => cmd::control::freeze(&mountpoint),
        Command::Thaw { mountpoint } => cmd::control::thaw(&mountpoint),
        Command::Abort { mountpoint } => cmd::control::abort(&mountpoint),
        Command::Status { mountpoint } => cmd::control::status(&mountpoint),
        Command::Backup { mountpoint, dest } => cmd::control::backup(&mountpoint, &dest),
    };
    match res {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("msgfs: {e}");
            ExitCode::from(2)
        }
    }
}
