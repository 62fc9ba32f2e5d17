//! Large message literals taken out of the server's byte stream before imap-next sees it.
//!
//! Why: imap-codec 2.0.0-alpha.10 moves every received byte from its input queue into the
//! message buffer one at a time (a `VecDeque` drain into a `Vec`), then checks the literal
//! for NUL bytes, then `into_static` copies it again. For a 133 MB initial sync that was a
//! quarter of the client's CPU (perf: `Vec::extend_desugared` 23%, `Literal::try_from` 4.5%),
//! and the client's CPU bounds the bodies pass. So the literals of FETCH responses that are
//! at least [`MIN_CAPTURED`] bytes long are copied once, straight from the read buffer into
//! their own `Vec`, and imap-next gets a short stand-in literal (a marker naming the capture)
//! in their place; [`Literals::take`] gives the bytes back for the marker when the FETCH is
//! turned into a `Fetched`. Everything else — every line, small literals, literals of other
//! responses — passes through unchanged, and all parsing stays imap-codec's.
//!
//! Framing (RFC 3501 §4.3, §7): a server response is a line ending in CRLF; a line that ends
//! with `{N}` announces a literal of exactly N bytes, after which the response goes on with
//! another line. A line cannot end inside a quoted string (quoted strings hold no CR or LF),
//! so "ends with `{digits}`" is exactly the condition imap-codec's own fragmentizer uses.
//!
//! Invariants:
//! - the bytes handed on are the server's bytes with only the announcement `{N}` of a
//!   captured literal rewritten to `{M}` and its N bytes replaced by an M-byte marker;
//! - a marker holds a random per-connection nonce, so a real literal can never be taken
//!   for one (and only literals shorter than [`MIN_CAPTURED`] pass through, which no
//!   marker's length reaches);
//! - a line longer than `MAX_LINE` is handed on as it comes and its literal, if any, is
//!   not captured (but still skipped by length): memory stays bounded whatever the server
//!   sends.

use std::collections::HashMap;

/// Literals shorter than this pass through imap-next (headers, flags, small messages): the
/// cost saved is per byte, and a marker is about 50 bytes.
pub const MIN_CAPTURED: u64 = 1024;
/// A line is held until its end (its announcement may need rewriting) up to this length.
const MAX_LINE: usize = 64 * 1024;
/// How much of a long line's end is kept to read its announcement (`{` 19 digits `}` CRLF).
const TAIL: usize = 32;

/// The stream rewriter of one connection (see the module comment).
pub struct Literals {
    nonce: String,
    next: u64,
    /// The current line so far (while `state` is `Line`), not yet handed on.
    line: Vec<u8>,
    state: State,
    /// Whether the response under way started as `* <n> FETCH`.
    fetch: bool,
    /// Whether the next line starts a new response (the previous one ended without a
    /// literal announcement).
    at_start: bool,
    captured: HashMap<u64, Vec<u8>>,
}

enum State {
    Line,
    /// A line longer than MAX_LINE: handed on as it comes until its LF; `line` keeps its
    /// last TAIL bytes.
    LongLine,
    /// Inside a literal, with this many bytes left; `Some(k)` when it is captured as k.
    Literal {
        left: u64,
        capture: Option<u64>,
    },
}

impl Literals {
    pub fn new() -> Literals {
        let mut raw = [0u8; 12];
        // SAFETY: getrandom writes at most `raw.len()` bytes into the buffer we own.
        let n = unsafe { libc::getrandom(raw.as_mut_ptr().cast(), raw.len(), 0) };
        if n != raw.len() as isize {
            // No randomness (a very old kernel): the clock and the pid still make a marker
            // that no message on the wire holds by chance.
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            raw[..8].copy_from_slice(&(t.as_nanos() as u64).to_le_bytes());
            raw[8..].copy_from_slice(&std::process::id().to_le_bytes());
        }
        let nonce = raw.iter().map(|b| format!("{b:02x}")).collect();
        Literals {
            nonce,
            next: 0,
            line: Vec::new(),
            state: State::Line,
            fetch: false,
            at_start: true,
            captured: HashMap::new(),
        }
    }

    fn marker(&self, k: u64) -> String {
        format!("msgfs-literal:{}:{k}", self.nonce)
    }

    /// Feeds bytes read from the server; `out` receives the (rewritten) bytes for imap-next,
    /// possibly in several pieces.
    pub fn feed(&mut self, mut input: &[u8], out: &mut dyn FnMut(&[u8])) {
        while !input.is_empty() {
            match &mut self.state {
                State::Literal { left, capture } => {
                    let n = (*left).min(input.len() as u64) as usize;
                    match capture {
                        Some(k) => self.captured.entry(*k).or_default().extend_from_slice(&input[..n]),
                        None => out(&input[..n]),
                    }
                    *left -= n as u64;
                    input = &input[n..];
                    if *left == 0 {
                        self.state = State::Line;
                    }
                }
                State::LongLine => {
                    let end = input.iter().position(|&b| b == b'\n');
                    let piece = &input[..end.map_or(input.len(), |i| i + 1)];
                    out(piece);
                    // Only the end of the line matters now: keep enough of it to read an
                    // announcement there.
                    self.line.extend_from_slice(&piece[piece.len().saturating_sub(TAIL)..]);
                    let cut = self.line.len().saturating_sub(TAIL);
                    self.line.drain(..cut);
                    input = &input[piece.len()..];
                    if end.is_some() {
                        let tail = std::mem::take(&mut self.line);
                        // Its literal, if any, passes through uncaptured.
                        self.after_line(announcement(&tail).map(|(_, len)| (len, None)));
                    }
                }
                State::Line => match input.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.line.extend_from_slice(&input[..=i]);
                        input = &input[i + 1..];
                        let line = std::mem::take(&mut self.line);
                        self.end_of_line(line, out);
                    }
                    None => {
                        self.line.extend_from_slice(input);
                        input = &[];
                        if self.line.len() > MAX_LINE {
                            if self.at_start {
                                self.fetch = is_fetch_start(&self.line);
                                self.at_start = false;
                            }
                            out(&self.line);
                            let cut = self.line.len() - TAIL;
                            self.line.drain(..cut);
                            self.state = State::LongLine;
                        }
                    }
                },
            }
        }
    }

    /// A whole line has arrived: hand it on, rewritten if its literal is captured, and set
    /// the state for what follows.
    fn end_of_line(&mut self, line: Vec<u8>, out: &mut dyn FnMut(&[u8])) {
        if self.at_start {
            self.fetch = is_fetch_start(&line);
        }
        match announcement(&line) {
            Some((brace, len)) if self.fetch && len >= MIN_CAPTURED => {
                let k = self.next;
                self.next += 1;
                let marker = self.marker(k);
                out(&line[..brace]);
                out(format!("{{{}}}\r\n", marker.len()).as_bytes());
                out(marker.as_bytes());
                self.captured.insert(k, Vec::with_capacity(len.min(64 << 20) as usize));
                self.after_line(Some((len, Some(k))));
            }
            announced => {
                out(&line);
                self.after_line(announced.map(|(_, len)| (len, None)));
            }
        }
    }

    /// After a line: a literal of `len` bytes (captured as k) follows, or a new response.
    fn after_line(&mut self, literal: Option<(u64, Option<u64>)>) {
        match literal {
            None => {
                self.at_start = true;
                self.state = State::Line;
            }
            Some((len, capture)) => {
                self.at_start = false;
                self.state = if len == 0 { State::Line } else { State::Literal { left: len, capture } };
            }
        }
    }

    /// The bytes a literal's data stands for: the captured literal if `data` is one of our
    /// markers (it is then forgotten), else `data` itself.
    pub fn take(&mut self, data: std::borrow::Cow<'_, [u8]>) -> Vec<u8> {
        if let Some(k) = self.marker_number(&data) {
            if let Some(bytes) = self.captured.remove(&k) {
                return bytes;
            }
        }
        data.into_owned()
    }

    fn marker_number(&self, data: &[u8]) -> Option<u64> {
        let rest = data.strip_prefix(b"msgfs-literal:")?.strip_prefix(self.nonce.as_bytes())?.strip_prefix(b":")?;
        std::str::from_utf8(rest).ok()?.parse().ok()
    }

    /// Forgets captured literals nobody took (the answers of a command are all handled
    /// before the next is sent, so they belong to responses that were dropped).
    pub fn forget(&mut self) {
        self.captured.clear();
    }
}

impl Default for Literals {
    fn default() -> Self {
        Literals::new()
    }
}

/// `* <number> FETCH` at the start of a response line (any case).
fn is_fetch_start(line: &[u8]) -> bool {
    let mut words = line.split(|&b| b == b' ');
    words.next() == Some(b"*")
        && words.next().is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
        && words.next().is_some_and(|w| w.len() >= 5 && w[..5].eq_ignore_ascii_case(b"FETCH"))
}

/// A synchronising literal announced at the end of `line` (`... {N}` before its CRLF or
/// LF): where the `{` is and N. Literal8 (`~{N}`) and non-synchronising ones (`{N+}`, which
/// only clients send) are not taken.
fn announcement(line: &[u8]) -> Option<(usize, u64)> {
    let body = line.strip_suffix(b"\n")?;
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let inner = body.strip_suffix(b"}")?;
    let brace = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[brace + 1..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if brace > 0 && line[brace - 1] == b'~' {
        return None;
    }
    Some((brace, std::str::from_utf8(digits).ok()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lits: &mut Literals, stream: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            lits.feed(piece, &mut |b| out.extend_from_slice(b));
        }
        out
    }

    fn stream(big: &[u8], small: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"* OK [CAPABILITY IMAP4rev1] ready\r\n");
        s.extend_from_slice(format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n", big.len()).as_bytes());
        s.extend_from_slice(big);
        s.extend_from_slice(format!(" BODY[HEADER] {{{}}}\r\n", small.len()).as_bytes());
        s.extend_from_slice(small);
        s.extend_from_slice(b")\r\n");
        // A big literal outside a FETCH passes through.
        s.extend_from_slice(format!("* LIST () \".\" {{{}}}\r\n", big.len()).as_bytes());
        s.extend_from_slice(big);
        s.extend_from_slice(b"\r\n");
        // "{5}" inside a line, not at its end, is no announcement.
        s.extend_from_slice(b"* 2 FETCH (UID 8 FLAGS (x{5}))\r\n");
        s.extend_from_slice(format!("* 3 fetch (BODY[] {{{}}}\r\n", big.len()).as_bytes());
        s.extend_from_slice(big);
        s.extend_from_slice(b")\r\nm1 OK done\r\n");
        s
    }

    #[test]
    fn big_fetch_literals_are_captured_whatever_the_read_sizes_and_the_rest_passes_through() {
        // The big literal itself looks like lines with announcements: it must be skipped
        // by length, not scanned.
        let big: Vec<u8> = b"Subject: x {12}\r\n* 9 FETCH (BODY[] {3}\r\n".iter().copied().cycle().take(5000).collect();
        let small = b"From: a\r\n\r\n".to_vec();
        let input = stream(&big, &small);
        for chunk in [1, 2, 3, 7, 64, 1000, 4096, input.len()] {
            let mut lits = Literals::new();
            let out = run(&mut lits, &input, chunk);
            let m0 = lits.marker(0);
            let m1 = lits.marker(1);
            let mut want = Vec::new();
            want.extend_from_slice(b"* OK [CAPABILITY IMAP4rev1] ready\r\n");
            want.extend_from_slice(format!("* 1 FETCH (UID 7 BODY[] {{{}}}\r\n{m0}", m0.len()).as_bytes());
            want.extend_from_slice(format!(" BODY[HEADER] {{{}}}\r\n", small.len()).as_bytes());
            want.extend_from_slice(&small);
            want.extend_from_slice(b")\r\n");
            want.extend_from_slice(format!("* LIST () \".\" {{{}}}\r\n", big.len()).as_bytes());
            want.extend_from_slice(&big);
            want.extend_from_slice(b"\r\n* 2 FETCH (UID 8 FLAGS (x{5}))\r\n");
            want.extend_from_slice(format!("* 3 fetch (BODY[] {{{}}}\r\n{m1}", m1.len()).as_bytes());
            want.extend_from_slice(b")\r\nm1 OK done\r\n");
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want), "chunk {chunk}");
            assert_eq!(lits.take(m1.as_bytes().into()), big);
            assert_eq!(lits.take(m0.as_bytes().into()), big);
            // Taken once: the marker is now just bytes.
            assert_eq!(lits.take(m0.as_bytes().into()), m0.as_bytes());
        }
    }

    #[test]
    fn literals_below_the_threshold_and_other_data_are_left_as_they_are() {
        let mut lits = Literals::new();
        let body = vec![b'a'; MIN_CAPTURED as usize - 1];
        let mut input = format!("* 1 FETCH (BODY[] {{{}}}\r\n", body.len()).into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(b")\r\n");
        assert_eq!(run(&mut lits, &input, 100), input);
        assert_eq!(lits.take(b"msgfs-literal:0000:0".as_slice().into()), b"msgfs-literal:0000:0");
        // Another connection's marker is not ours.
        let other = Literals::new();
        assert_eq!(lits.take(other.marker(0).as_bytes().into()), other.marker(0).as_bytes());
    }

    #[test]
    fn a_line_past_the_limit_is_handed_on_and_its_literal_is_not_captured() {
        let mut lits = Literals::new();
        // What follows the long line is skipped by length, not scanned for lines.
        let big: Vec<u8> = b"* 3 FETCH (BODY[] {9}\r\n".iter().copied().cycle().take(4000).collect();
        let mut input =
            format!("* 1 FETCH (X-LONG \"{}\" BODY[] {{{}}}\r\n", "y".repeat(2 * MAX_LINE), big.len()).into_bytes();
        input.extend_from_slice(&big);
        input.extend_from_slice(b")\r\n* 2 FETCH (BODY[] {4000}\r\n");
        input.extend_from_slice(&big);
        input.extend_from_slice(b")\r\n");
        let out = run(&mut lits, &input, 1500);
        let m0 = lits.marker(0);
        let first_len = input.len() - (big.len() + 3 + "* 2 FETCH (BODY[] {4000}\r\n".len());
        assert_eq!(out[..first_len], input[..first_len]);
        assert_eq!(&out[first_len..], format!("* 2 FETCH (BODY[] {{{}}}\r\n{m0})\r\n", m0.len()).as_bytes());
        assert_eq!(lits.take(m0.as_bytes().into()), big);
    }

    #[test]
    fn announcements_are_read_only_at_the_end_of_a_line() {
        assert_eq!(announcement(b"* 1 FETCH (BODY[] {12}\r\n"), Some((18, 12)));
        assert_eq!(announcement(b"* 1 FETCH (BODY[] {12}\n"), Some((18, 12)));
        assert_eq!(announcement(b"* 1 FETCH (BINARY[] ~{12}\r\n"), None);
        assert_eq!(announcement(b"a {12+}\r\n"), None);
        assert_eq!(announcement(b"a {}\r\n"), None);
        assert_eq!(announcement(b"a {1x}\r\n"), None);
        assert_eq!(announcement(b"a {12} \r\n"), None);
        assert!(is_fetch_start(b"* 12 FETCH (UID 1)\r\n"));
        assert!(is_fetch_start(b"* 12 fetch (UID 1)\r\n"));
        assert!(!is_fetch_start(b"* OK FETCH\r\n"));
        assert!(!is_fetch_start(b"m1 12 FETCH\r\n"));
    }
}
