//! The `msgfs` command: parses arguments and calls the library, nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use msgfs::cli::{Cli, Command, CompletionShell, ExportFormat, LsSort};
use msgfs::cmd;

fn main() -> ExitCode {
    // Output into a closed pipe (`msgfs status MP | head -1`) ends the program quietly, as
    // for any Unix tool, instead of a panic in println!.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse_from(msgfs::cli::with_mount_helper_form(std::env::args_os().collect()));
    let store_or_default = |s: Option<PathBuf>| s.unwrap_or_else(msgfs::store::default_store_path);
    let res = match cli.command {
        Command::Init { store } => cmd::init::run(&store_or_default(store)),
        Command::Mount { first, second, foreground, options, verbose, debug, log_file } => {
            let (store, mountpoint) = match second {
                Some(mp) => (first, mp),
                None => (msgfs::store::default_store_path(), first),
            };
            cmd::mount::run(cmd::mount::Args { store, mountpoint, foreground, options, verbose, debug, log_file })
        }
        Command::Umount { mountpoint } => cmd::mount::umount(&mountpoint),
        Command::Import { sources, store, into, allow_duplicates } => {
            cmd::import::run(&store_or_default(store), &sources, into.as_deref(), allow_duplicates)
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
        Command::Ls { paths, long, sort, json } => cmd::ls::run(cmd::ls::Args {
            paths,
            long,
            sort: match sort {
                LsSort::Date => cmd::ls::SortKey::Date,
                LsSort::From => cmd::ls::SortKey::From,
                LsSort::Subject => cmd::ls::SortKey::Subject,
                LsSort::Size => cmd::ls::SortKey::Size,
            },
            json,
        }),
        Command::Restore { files } => cmd::restore::run(&files),
        Command::Check { store } => cmd::check::run(&store_or_default(store)),
        Command::Completions { shell } => cmd::completions::run(match shell {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }),
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
