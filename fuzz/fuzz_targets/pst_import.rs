//! Fuzz the PST import path: open the input as a PST file, walk its folder tree and
//! convert every message to RFC 5322, as `msgfs import` does (and read each envelope, as
//! the PST mount's listings do).
//!
//! msgfs's reader turns panics of the outlook-pst crate into errors (`guard` in
//! src/pst/reader.rs), so a caught panic is not a finding. The panic hook only records
//! the last panic's message; a panic that escapes to this target is printed and aborts.
//! Aborts, out-of-memory (`-rss_limit_mb`) and timeouts (`-timeout`) are findings too.

#![no_main]

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use msgfs::pst::reader::Pst;

/// Folders plus messages visited per input, at most.
const CAP: usize = 200;

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = format!("{info}");
            LAST_PANIC.with(|p| *p.borrow_mut() = msg);
            // FUZZ_PANIC_VERBOSE=1 shows every panic, caught or not, with a backtrace.
            if std::env::var_os("FUZZ_PANIC_VERBOSE").is_some() {
                eprintln!("{info}\n{}", std::backtrace::Backtrace::force_capture());
            }
        }));
    });
}

fn run(data: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write temp file");
    file.flush().expect("flush temp file");
    let Ok(pst) = Pst::open(file.path()) else { return };
    let _ = pst.display_name();
    let Ok(root) = pst.root() else { return };
    let mut seen = HashSet::new();
    let mut todo = vec![root];
    let mut visited = 0;
    while let Some(node) = todo.pop() {
        if visited >= CAP || !seen.insert(node) {
            continue;
        }
        visited += 1;
        let Ok(listing) = pst.folder(node) else { continue };
        for m in listing.messages {
            if visited >= CAP {
                break;
            }
            if seen.insert(m) {
                visited += 1;
                // What the PST mount reads for a listing, then what it reads at open.
                let _ = msgfs::pst::envelope(&pst, m);
                let _ = msgfs::pst::convert(&pst, m);
            }
        }
        todo.extend(listing.subfolders);
    }
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    // On a thread with msgfs's PST stack size, as `msgfs import` and the PST mount do.
    let escaped = std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(msgfs::pst::STACK_SIZE)
            .spawn_scoped(s, || {
                catch_unwind(AssertUnwindSafe(|| run(data))).err().map(|_| LAST_PANIC.with(|p| p.borrow().clone()))
            })
            .expect("spawn")
            .join()
            .unwrap_or_else(|_| Some("the reading thread died".into()))
    });
    if let Some(msg) = escaped {
        eprintln!("panic escaped msgfs: {msg}");
        std::process::abort();
    }
});
