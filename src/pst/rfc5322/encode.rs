//! The encoders of the writer: line endings, base64 and quoted-printable (RFC 2045),
//! the TEXT escaping and line folding of vCard and iCalendar content lines, and the hash
//! behind generated ids. Pure functions of their input, as determinism needs.

/// TEXT value escaping shared by vCard (RFC 6350 3.4) and iCalendar (RFC 5545 3.3.11).
pub(super) fn escape_text(s: &str) -> String {
    let s = to_lf(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends a content line folded at 75 octets (RFC 6350 3.2, RFC 5545 3.1), never inside
/// a UTF-8 sequence; continuation lines start with a space that counts toward the 75.
pub(super) fn content_line(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push('\n');
}

/// CRLF and lone CR become LF.
pub(super) fn to_lf(s: &str) -> String {
    if !s.contains('\r') {
        return s.to_string();
    }
    s.replace("\r\n", "\n").replace('\r', "\n")
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RFC 4648 base64 with padding, on one line.
pub(super) fn base64(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    base64_into(bytes, &mut out);
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Append the base64 of `bytes` to `out`.
fn base64_into(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() { BASE64[(n >> (18 - 6 * i) & 63) as usize] } else { b'=' });
        }
    }
}

/// Base64 in lines of 76 characters (RFC 2045 6.8), each ending with LF.
pub(super) fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 57 * 77 + 80);
    // 57 input bytes make exactly 76 output characters.
    for chunk in bytes.chunks(57) {
        base64_into(chunk, &mut out);
        out.push(b'\n');
    }
    out
}

/// Quoted-printable (RFC 2045 6.7) of LF-separated text: line breaks stay hard breaks,
/// encoded lines are at most 76 characters, trailing white space is encoded.
pub(super) fn quoted_printable(text: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len() * 11 / 10 + 16);
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        if n > 0 {
            out.push(b'\n');
        }
        let mut col = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal = match b {
                b' ' | b'\t' => !last,
                b'=' => false,
                33..=126 => true,
                _ => false,
            };
            let width = if literal { 1 } else { 3 };
            // Room for the "=" of a soft break, except after the line's last character.
            let limit = if last { 76 } else { 75 };
            if col + width > limit {
                out.extend_from_slice(b"=\n");
                col = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            col += width;
        }
    }
    out
}

/// The hash of generated ids (Message-ID, iCalendar UID): CRC32C and 64-bit FNV-1a over
/// the same bytes, 96 bits together, since CRC32C alone is only 32. Fed in pieces, it
/// gives what it gives for the concatenation.
pub(super) struct IdHash {
    crc: u32,
    fnv: u64,
}

impl IdHash {
    pub(super) fn new() -> Self {
        IdHash { crc: 0, fnv: 0xcbf2_9ce4_8422_2325 }
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        for &b in bytes {
            self.fnv ^= u64::from(b);
            self.fnv = self.fnv.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// (CRC32C, FNV-1a).
    pub(super) fn finish(&self) -> (u32, u64) {
        (self.crc, self.fnv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(String::from_utf8(quoted_printable(b"a=b \nc\t\n\xc3\xa9")).unwrap(), "a=3Db=20\nc=09\n=C3=A9");
        // Pieces hash as their concatenation, and CRC32C is the crate's.
        let mut h = IdHash::new();
        h.write(b"ab");
        h.write(b"c");
        let mut whole = IdHash::new();
        whole.write(b"abc");
        assert_eq!(h.finish(), whole.finish());
        assert_eq!(h.finish().0, crc32c::crc32c(b"abc"));
        assert_eq!(IdHash::new().finish().1, 0xcbf2_9ce4_8422_2325);
    }
}
