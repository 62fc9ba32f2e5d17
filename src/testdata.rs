//! Where tests find the public sample files (`MSGFS_TESTDATA`), and the one policy for when
//! they are missing: skipped, said where the run's summary shows it, or a failure under CI.
//!
//! Test support, not part of msgfs's interface: it lives in the library so that the unit
//! tests, the integration tests and the mount tests share one copy of the policy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// How to get the files; said with every skip and every CI failure.
pub const HOW_TO_GET: &str = "download them with `scripts/fetch-testdata DIR`, then run the tests with \
                              MSGFS_TESTDATA=DIR (CI uses ../shared/testdata)";

static SKIPPED: AtomicUsize = AtomicUsize::new(0);
static AT_EXIT: Once = Once::new();

/// The sample-data directory, or `rel` inside it (`"pst"`, `"pst/outlook.pst"`), when it
/// exists. When it does not, outside CI the calling test should return at once: this says
/// so on the terminal, and once more after the test summary; under `CI=true` it panics,
/// since CI must run every test.
pub fn path(rel: &str) -> Option<PathBuf> {
    let why = match std::env::var_os("MSGFS_TESTDATA").filter(|v| !v.is_empty()) {
        None => "MSGFS_TESTDATA is not set".to_string(),
        Some(dir) => {
            let p = Path::new(&dir).join(rel);
            if p.exists() {
                return Some(p);
            }
            format!("{} does not exist", p.display())
        }
    };
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!ci, "{test} needs the public sample files, and {why}: {HOW_TO_GET}");
    // Straight to the descriptor: the test harness captures print! and eprint! of a test
    // that passes, which would hide the skip.
    say(&format!("skipped: {test} needs the public sample files ({why}): {HOW_TO_GET}\n"));
    SKIPPED.fetch_add(1, Ordering::Relaxed);
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe { libc::atexit(summary) };
    });
    None
}

/// After the harness's `test result:` line: how many tests were skipped, and how to run them.
extern "C" fn summary() {
    let n = SKIPPED.load(Ordering::Relaxed);
    let tests = if n == 1 { "test" } else { "tests" };
    say(&format!(
        "note: {n} {tests} skipped (shown as passed above) for lack of the public sample files: {HOW_TO_GET}\n\n"
    ));
}

/// Write to stderr with write(2): no buffering, no capture, usable at exit.
fn say(text: &str) {
    // SAFETY: writing a valid buffer of its own length to descriptor 2.
    unsafe { libc::write(2, text.as_ptr().cast(), text.len()) };
}
