//! IMAP client tests against a real Dovecot on loopback (tests/common/dovecot.rs).

#[path = "common/dovecot.rs"]
mod dovecot;

use dovecot::Dovecot;

#[test]
fn the_fixture_starts_in_well_under_a_second_and_takes_a_thousand_messages_in_one_append() {
    if dovecot::should_skip() {
        return;
    }
    let server = Dovecot::start();
    assert!(server.started_in.as_millis() < 1000, "started in {:?}", server.started_in);
    let mut raw = server.raw();
    let msgs: Vec<_> = (0..1000).map(|n| ("\\Seen", dovecot::message(n))).collect();
    let t = std::time::Instant::now();
    raw.multiappend("INBOX", &msgs);
    eprintln!("1000 messages appended in {:?}", t.elapsed());
    let status = raw.cmd("STATUS INBOX (MESSAGES)").unwrap();
    assert!(status.contains("MESSAGES 1000"), "{status}");
}
