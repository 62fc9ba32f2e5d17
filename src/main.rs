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
    /// Create a store (default: ~/.local/share/msgfs/default)
    Init {
        /// Store directory
        store: Option<PathBuf>,
    },
    /// Mount a store (or a .pst file, read-only) at MOUNTPOINT and serve it in the background
    Mount {
        /// Store directory (default: ~/.local/share/msgfs/default, created on first use)
        #[arg(value_name = "STORE")]
        first: PathBuf,
        /// Mount point (an empty directory)
        #[arg(value_name = "MOUNTPOINT")]
        second: Option<PathBuf>,
        /// Stay in the foreground and log to stderr (RUST_LOG=debug for more)
        #[arg(short = 'f', long)]
        foreground: bool,
        /// Mount options, comma-separated: ro, allow_other, snapshot_timeout_ms=N
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Vec<String>,
        /// (internal) descriptor on which the background daemon reports readiness
        #[arg(long, hide = true)]
        ready_fd: Option<i32>,
    },
    /// Unmount a msgfs mount, waiting until everything is saved
    Umount { mountpoint: PathBuf },
    /// Import mbox files, Maildir folders, directories of .eml files
    Import {
        /// Files or directories to import
        #[arg(required = true)]
        sources: Vec<PathBuf>,
        /// Store directory
        #[arg(long)]
        store: Option<PathBuf>,
        /// Folder to import into (created if missing; default: the top of the store)
        #[arg(long, value_name = "FOLDER")]
        into: Option<String>,
    },
    /// Export the store (or one folder) as Maildir or mbox
    Export {
        /// Store directory
        #[arg(long)]
        store: Option<PathBuf>,
        /// Output format
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only this folder (and its subfolders)
        #[arg(long, value_name = "FOLDER")]
        folder: Option<String>,
        /// Destination directory (Maildir) or file (mbox)
        dest: PathBuf,
    },
    /// Verify every log record, object checksum and reference; exit 1 on damage
    Check {
        /// Store directory
        store: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
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
        Command::Check { store } => cmd::check::run(&store_or_default(store)),
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
