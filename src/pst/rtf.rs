//! RTF bodies (PidTagRtfCompressed, decompressed): the HTML that Outlook encapsulated in
//! RTF (MS-OXRTFEX, `\fromhtml1`) and a plain-text rendering of any RTF.
//!
//! One tokenizer serves both: it walks the bytes once with an explicit group stack (no
//! recursion), so hostile input costs time and memory linear in its size. Groups nested
//! deeper than [`MAX_DEPTH`] are skipped whole; `\bin` payloads are skipped; unknown control
//! words are ignored. Text in the document's code page (`\ansicpgN`, or a font's
//! `\fcharsetN`) is collected as bytes and decoded with encoding_rs when a character from
//! another source (a `\uN`, another code page) follows, so double-byte characters split over
//! two `\'hh` escapes decode as one character.

use encoding_rs::{Encoding, WINDOWS_1252};

/// Deepest group nesting that is tracked; deeper groups are skipped with their content.
/// Real RTF nests a few dozen levels at most.
const MAX_DEPTH: usize = 512;

/// At most this many fonts are remembered from the font table (for `\fcharset`).
const MAX_FONTS: usize = 4096;

/// The HTML encapsulated in an RTF body, as UTF-8; `None` unless the RTF says
/// `\fromhtml1` (MS-OXRTFEX). Text inside `{\*\htmltag ...}` groups and text outside
/// `\htmlrtf` ... `\htmlrtf0` regions is kept; `\par` and `\line` become a newline, `\tab`
/// a tab.
pub fn html_from_rtf(rtf: &[u8]) -> Option<Vec<u8>> {
    let out = Parser::new(rtf, Mode::Html).run();
    out.from_html.then(|| out.text.into_bytes())
}

/// The plain text of an RTF body: destinations (`{\*...}`, font and colour tables, style
/// sheet, info, pictures, headers and footers) are skipped; paragraph and line breaks
/// become `\n`, tabs `\t`.
pub fn text_from_rtf(rtf: &[u8]) -> String {
    Parser::new(rtf, Mode::Text).run().text
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// MS-OXRTFEX de-encapsulation.
    Html,
    /// Plain text.
    Text,
}

/// Per-group state, restored when the group closes.
#[derive(Clone, Copy)]
struct Group {
    /// Content of this group is not output (an ignored destination).
    skip: bool,
    /// Inside the font table: `\fN` and `\fcharsetN` define fonts.
    fonttbl: bool,
    /// Inside `{\*\htmltag}` (HTML mode): the text is HTML source.
    htmltag: bool,
    /// `\htmlrtf` is on: the text is the RTF rendering only (HTML mode suppresses it).
    htmlrtf: bool,
    /// `\ucN`: how many fallback characters follow each `\uN`.
    uc: u32,
    /// The code page of `\'hh` and raw 8-bit text, from the current font or `\ansicpg`.
    encoding: &'static Encoding,
    /// The group began with `\*`: an ignorable destination unless the next word is known.
    star: bool,
    /// No text or control word seen yet in this group (destinations come first).
    fresh: bool,
}

struct Output {
    text: String,
    from_html: bool,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    mode: Mode,
    stack: Vec<Group>,
    cur: Group,
    /// Groups opened beyond MAX_DEPTH that are still open (all skipped).
    overflow: usize,
    /// The document code page (`\ansicpgN`), the encoding for fonts with charset 0/1.
    doc_encoding: &'static Encoding,
    /// (font number, encoding) from the font table.
    fonts: Vec<(i32, Option<&'static Encoding>)>,
    /// Fallback characters still to skip after a `\uN`.
    skip_chars: u32,
    /// A `\uN` high surrogate waiting for its low half.
    high_surrogate: Option<u16>,
    out: String,
    /// Bytes in `pending_enc` not yet decoded into `out`.
    pending: Vec<u8>,
    pending_enc: &'static Encoding,
    from_html: bool,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8], mode: Mode) -> Self {
        let cur = Group {
            skip: false,
            fonttbl: false,
            htmltag: false,
            htmlrtf: false,
            uc: 1,
            encoding: WINDOWS_1252,
            star: false,
            fresh: true,
        };
        Parser {
            input,
            pos: 0,
            mode,
            stack: Vec::new(),
            cur,
            overflow: 0,
            doc_encoding: WINDOWS_1252,
            fonts: Vec::new(),
            skip_chars: 0,
            high_surrogate: None,
            out: String::new(),
            pending: Vec::new(),
            pending_enc: WINDOWS_1252,
            from_html: false,
        }
    }

    fn run(mut self) -> Output {
        // Every iteration consumes at least one byte, so the loop ends.
        while self.pos < self.input.len() {
            let b = self.input[self.pos];
            self.pos += 1;
            match b {
                b'{' => self.open(),
                b'}' => self.close(),
                b'\\' => self.control(),
                // Raw line breaks are formatting of the RTF source, not text.
                b'\r' | b'\n' => {}
                _ => {
                    self.cur.fresh = false;
                    if self.overflow > 0 {
                        continue;
                    }
                    if self.consume_fallback() {
                        continue;
                    }
                    // NUL is no text in any code page RTF uses.
                    if self.visible() && b != 0 {
                        if b < 0x80 {
                            self.push_char(b as char);
                        } else {
                            self.push_byte(b);
                        }
                    }
                }
            }
        }
        self.flush();
        if self.high_surrogate.is_some() {
            self.out.push(char::REPLACEMENT_CHARACTER);
        }
        Output { text: self.out, from_html: self.from_html }
    }

    fn open(&mut self) {
        // A group boundary ends any pending \uN fallback (RTF spec).
        self.skip_chars = 0;
        if self.overflow > 0 || self.stack.len() >= MAX_DEPTH {
            self.overflow += 1;
            return;
        }
        self.stack.push(self.cur);
        self.cur.star = false;
        self.cur.fresh = true;
    }

    fn close(&mut self) {
        self.skip_chars = 0;
        if self.overflow > 0 {
            self.overflow -= 1;
            return;
        }
        // An unbalanced `}` at the top level is ignored.
        if let Some(g) = self.stack.pop() {
            self.cur = g;
        }
    }

    /// Whether text at this point goes to the output.
    fn visible(&self) -> bool {
        // Everything of a document is inside its `{\rtf1 ...}` group: bytes outside it are
        // padding or garbage (decompressed RTF often ends with NULs).
        if self.cur.skip || self.overflow > 0 || self.stack.is_empty() {
            return false;
        }
        match self.mode {
            Mode::Text => true,
            Mode::Html => self.cur.htmltag || !self.cur.htmlrtf,
        }
    }

    /// Counts one character against a `\uN` fallback; true when it is to be dropped.
    fn consume_fallback(&mut self) -> bool {
        if self.skip_chars > 0 {
            self.skip_chars -= 1;
            true
        } else {
            false
        }
    }

    fn control(&mut self) {
        let Some(&c) = self.input.get(self.pos) else {
            return;
        };
        if c.is_ascii_alphabetic() {
            let start = self.pos;
            while self.pos < self.input.len() && self.input[self.pos].is_ascii_alphabetic() {
                self.pos += 1;
            }
            let word = &self.input[start..self.pos];
            let param = self.parameter();
            // A space right after a control word is its delimiter, not text.
            if self.input.get(self.pos) == Some(&b' ') {
                self.pos += 1;
            }
            self.word(word, param);
            return;
        }
        self.pos += 1;
        if self.overflow > 0 {
            return;
        }
        match c {
            b'\'' => {
                let hex = self.input.get(self.pos..self.pos + 2);
                let byte = hex.and_then(|h| Some(hex_value(h[0])? * 16 + hex_value(h[1])?));
                if let Some(byte) = byte {
                    self.pos += 2;
                    self.cur.fresh = false;
                    if !self.consume_fallback() && self.visible() {
                        self.push_byte(byte);
                    }
                }
            }
            b'*' => self.cur.star = true,
            b'\\' | b'{' | b'}' => self.symbol_char(c as char),
            b'~' => self.symbol_char('\u{a0}'),
            b'_' => self.symbol_char('\u{2011}'),
            // An optional hyphen is invisible unless a line breaks there.
            b'-' => {
                self.consume_fallback();
            }
            b'\r' | b'\n' => self.break_line(),
            b'\t' => self.symbol_char('\t'),
            _ => {
                self.consume_fallback();
            }
        }
    }

    fn symbol_char(&mut self, c: char) {
        self.cur.fresh = false;
        if !self.consume_fallback() && self.visible() {
            self.push_char(c);
        }
    }

    fn break_line(&mut self) {
        self.symbol_char('\n');
    }

    /// The optional signed decimal parameter of a control word. Digits beyond the tenth
    /// are consumed but ignored, so huge numbers saturate instead of overflowing.
    fn parameter(&mut self) -> Option<i32> {
        let mut negative = false;
        if self.input.get(self.pos) == Some(&b'-') && self.input.get(self.pos + 1).is_some_and(|d| d.is_ascii_digit()) {
            negative = true;
            self.pos += 1;
        }
        let start = self.pos;
        let mut value: i64 = 0;
        while let Some(&d) = self.input.get(self.pos) {
            if !d.is_ascii_digit() {
                break;
            }
            if self.pos - start < 10 {
                value = value * 10 + i64::from(d - b'0');
            }
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        let value = if negative { -value } else { value };
        Some(value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
    }

    fn word(&mut self, word: &[u8], param: Option<i32>) {
        // `\bin N`: N raw bytes follow; never text, not even RTF in a skipped group.
        if word == b"bin" {
            let n = param.unwrap_or(0).max(0) as usize;
            self.pos = self.pos.saturating_add(n).min(self.input.len());
            return;
        }
        if self.overflow > 0 {
            return;
        }
        let fresh = self.cur.fresh;
        self.cur.fresh = false;
        if self.cur.star && fresh {
            self.cur.star = false;
            if self.mode == Mode::Html && word == b"htmltag" {
                self.cur.htmltag = true;
                // The tag text is HTML even inside a \htmlrtf region of the parent.
                self.cur.htmlrtf = false;
            } else {
                self.cur.skip = true;
            }
            return;
        }
        match word {
            b"fonttbl" => {
                self.cur.skip = true;
                self.cur.fonttbl = true;
            }
            b"colortbl" | b"stylesheet" | b"info" | b"pict" | b"header" | b"headerl" | b"headerr" | b"headerf"
            | b"footer" | b"footerl" | b"footerr" | b"footerf" | b"object" | b"listtable" | b"listoverridetable"
            | b"revtbl" | b"rsidtbl" | b"xmlnstbl" | b"filetbl" | b"private" | b"mhtmltag" => self.cur.skip = true,
            b"ansicpg" => {
                if let Some(enc) = param.and_then(encoding_for_codepage) {
                    self.doc_encoding = enc;
                    self.cur.encoding = enc;
                }
            }
            b"fromhtml" => {
                if param.unwrap_or(1) != 0 {
                    self.from_html = true;
                }
            }
            b"f" => {
                let n = param.unwrap_or(0);
                if self.cur.fonttbl {
                    if self.fonts.len() < MAX_FONTS && !self.fonts.iter().any(|f| f.0 == n) {
                        self.fonts.push((n, None));
                    }
                } else {
                    self.cur.encoding =
                        self.fonts.iter().find(|f| f.0 == n).and_then(|f| f.1).unwrap_or(self.doc_encoding);
                }
            }
            b"fcharset" if self.cur.fonttbl => {
                if let (Some(last), Some(cs)) = (self.fonts.last_mut(), param) {
                    last.1 = encoding_for_charset(cs);
                }
            }
            b"htmlrtf" => self.cur.htmlrtf = param.unwrap_or(1) != 0,
            b"uc" => self.cur.uc = param.unwrap_or(1).clamp(0, 16) as u32,
            b"u" => {
                if let Some(n) = param {
                    self.unicode(n);
                }
            }
            b"par" | b"line" | b"sect" | b"page" | b"row" => {
                // In HTML mode a \par belongs to the HTML only inside an htmltag or outside
                // \htmlrtf; visible() decides both.
                self.emit_word_char('\n');
            }
            b"tab" | b"cell" => self.emit_word_char('\t'),
            b"emdash" => self.emit_word_char('\u{2014}'),
            b"endash" => self.emit_word_char('\u{2013}'),
            b"bullet" => self.emit_word_char('\u{2022}'),
            b"lquote" => self.emit_word_char('\u{2018}'),
            b"rquote" => self.emit_word_char('\u{2019}'),
            b"ldblquote" => self.emit_word_char('\u{201c}'),
            b"rdblquote" => self.emit_word_char('\u{201d}'),
            _ => {
                self.consume_fallback();
            }
        }
    }

    fn emit_word_char(&mut self, c: char) {
        if !self.consume_fallback() && self.visible() {
            self.push_char(c);
        }
    }

    fn unicode(&mut self, n: i32) {
        // \uN is a signed 16-bit value: negative numbers stand for code units above 0x7fff.
        let unit = (n as i64).rem_euclid(0x1_0000) as u16;
        let visible = self.visible();
        // The fallback characters that follow stand for this one.
        self.skip_chars = self.cur.uc;
        if !visible {
            return;
        }
        match unit {
            0xd800..=0xdbff => {
                self.flush();
                if self.high_surrogate.replace(unit).is_some() {
                    self.out.push(char::REPLACEMENT_CHARACTER);
                }
            }
            0xdc00..=0xdfff => {
                self.flush();
                match self.high_surrogate.take() {
                    Some(hi) => {
                        let cp = 0x1_0000 + ((u32::from(hi) - 0xd800) << 10) + (u32::from(unit) - 0xdc00);
                        self.out.push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                    None => self.out.push(char::REPLACEMENT_CHARACTER),
                }
            }
            _ => self.push_char(char::from_u32(u32::from(unit)).unwrap_or('\u{fffd}')),
        }
    }

    fn push_byte(&mut self, b: u8) {
        if self.high_surrogate.take().is_some() {
            self.flush();
            self.out.push(char::REPLACEMENT_CHARACTER);
        }
        if self.pending_enc != self.cur.encoding {
            self.flush();
            self.pending_enc = self.cur.encoding;
        }
        self.pending.push(b);
    }

    fn push_char(&mut self, c: char) {
        self.flush();
        if self.high_surrogate.take().is_some() {
            self.out.push(char::REPLACEMENT_CHARACTER);
        }
        self.out.push(c);
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let (text, _) = self.pending_enc.decode_without_bom_handling(&self.pending);
            self.out.push_str(&text);
            self.pending.clear();
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The encoding of a Windows code page number; None for unknown or unsupported ones.
fn encoding_for_codepage(n: i32) -> Option<&'static Encoding> {
    let n = u16::try_from(n).ok()?;
    codepage::to_encoding_no_replacement(n)
}

/// The encoding of an RTF `\fcharsetN` (a Windows character set number), None for ANSI
/// and default (which follow `\ansicpg`) and for ones without a code page.
fn encoding_for_charset(charset: i32) -> Option<&'static Encoding> {
    let cp = match charset {
        77 => 10000,
        128 => 932,
        129 => 949,
        134 => 936,
        136 => 950,
        161 => 1253,
        162 => 1254,
        163 => 1258,
        177 => 1255,
        178 => 1256,
        186 => 1257,
        204 => 1251,
        222 => 874,
        238 => 1250,
        _ => return None,
    };
    encoding_for_codepage(cp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_basics() {
        let rtf = br"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0\fswiss Arial;}}{\colortbl;\red0\green0\blue0;}{\*\generator Foo;}\f0\fs20 Hello \b world\b0 !\par Caf\'e9\tab x\line y\~z \{braces\} \\ back}";
        assert_eq!(text_from_rtf(rtf), "Hello world!\nCaf\u{e9}\tx\ny\u{a0}z {braces} \\ back");
    }

    #[test]
    fn unicode_escapes_skip_fallback() {
        let rtf = br"{\rtf1\ansi\uc1\u8364?\u-10179?\u-8704?\uc2\u233 xyA}";
        // \u-10179\u-8704 is the surrogate pair of U+1F600; each has one fallback '?'.
        assert_eq!(text_from_rtf(rtf), "\u{20ac}\u{1f600}\u{e9}A");
        // The fallback may be a \'hh escape; a group end cancels the skip.
        let rtf = br"{\rtf1\u8364\'80a{\u8364}b}";
        assert_eq!(text_from_rtf(rtf), "\u{20ac}a\u{20ac}b");
    }

    #[test]
    fn code_pages_and_font_charsets() {
        // Cyrillic document code page.
        let rtf = br"{\rtf1\ansi\ansicpg1251 \'cf\'f0\'e8\'e2\'e5\'f2}";
        assert_eq!(text_from_rtf(rtf), "\u{41f}\u{440}\u{438}\u{432}\u{435}\u{442}");
        // A Shift_JIS font: the two bytes of one character decode together.
        let rtf = br"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}{\f1\fcharset128 MS Gothic;}}\f0 a{\f1 \'82\'a0}\'e9}";
        assert_eq!(text_from_rtf(rtf), "a\u{3042}\u{e9}");
    }

    #[test]
    fn destinations_skipped() {
        let rtf = br"{\rtf1{\info{\title T}{\author A}}{\header H}{\*\unknown U}{\pict\pngblip 89504e47}{\field{\*\fldinst HYPERLINK x}{\fldrslt link}} done\bin3 {}} end}";
        assert_eq!(text_from_rtf(rtf), "link done end");
    }

    #[test]
    fn html_de_encapsulation() {
        let rtf = br"{\rtf1\ansi\ansicpg1252\fromhtml1 \deff0{\fonttbl{\f0\fswiss Arial;}}
{\*\htmltag19 <html>}{\*\htmltag34 <head>}{\*\htmltag41 </head>}
{\*\htmltag50 <body>}\htmlrtf {\htmlrtf0
{\*\htmltag64 <p>}\htmlrtf {\htmlrtf0 Caf\'e9 \u8364? &amp; more\htmlrtf\par\htmlrtf0
{\*\htmltag244 <br>}\htmlrtf }\htmlrtf0
{\*\htmltag72 </p>}\htmlrtf }\htmlrtf0
{\*\htmltag0 \par }{\*\htmltag58 </body>}{\*\htmltag27 </html>}}";
        let html = String::from_utf8(html_from_rtf(rtf).unwrap()).unwrap();
        assert_eq!(html, "<html><head></head><body><p>Caf\u{e9} \u{20ac} &amp; more<br></p>\n</body></html>");
        // The plain rendering of the same RTF keeps the \htmlrtf text, drops the tags.
        assert_eq!(text_from_rtf(rtf), "Caf\u{e9} \u{20ac} &amp; more\n");
    }

    /// Random RTF-like input (a fixed-seed generator, so failures reproduce): no panic, and
    /// output bounded by the input size.
    #[test]
    fn random_input() {
        const PIECES: &[&[u8]] = &[
            b"{",
            b"}",
            b"\\",
            b"\\'",
            b"e9",
            b"8",
            b"\\u",
            b"-",
            b"12",
            b"65535",
            b"\\uc",
            b"\\par ",
            b"\\*",
            b"\\htmltag",
            b"\\htmlrtf",
            b"0",
            b"\\fromhtml1",
            b"\\bin",
            b"\\f",
            b"\\fonttbl",
            b"\\fcharset128",
            b"\\ansicpg",
            b"932",
            b" ",
            b"a",
            b"\\~",
            b"\\-",
            b"\r\n",
            b"\xff",
            b"\0",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 200) as usize;
            let mut input = Vec::new();
            for _ in 0..len {
                input.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let text = text_from_rtf(&input);
            assert!(text.len() <= input.len() * 4 + 4);
            if let Some(html) = html_from_rtf(&input) {
                assert!(html.len() <= input.len() * 4 + 4);
            }
        }
    }

    #[test]
    fn text_outside_the_document_ignored() {
        assert_eq!(text_from_rtf(b"junk{\\rtf1 in}\0\0after"), "in");
    }

    #[test]
    fn html_requires_fromhtml() {
        assert_eq!(html_from_rtf(br"{\rtf1\ansi hello}"), None);
        assert_eq!(html_from_rtf(br"{\rtf1\ansi\fromhtml0 hello}"), None);
        assert_eq!(html_from_rtf(b""), None);
    }

    #[test]
    fn malformed_input_does_not_panic() {
        let deep = "{".repeat(100_000) + "x" + &"}".repeat(100_000);
        assert_eq!(text_from_rtf(deep.as_bytes()), "");
        let cases: &[&[u8]] = &[
            b"\\",
            b"{\\'",
            b"{\\'4",
            b"{\\'zz}",
            b"}}}}{{{",
            b"\\u",
            b"\\u-",
            b"\\u99999999999999999999",
            b"\\uc999999999 \\u65 abc",
            b"\\bin99999999999 abc",
            b"\\bin-5 abc",
            b"{\\*",
            b"{\\*\\htmltag",
            b"\\fromhtml1{\\*\\htmltag \\'ff\\u-1\\u55296",
            b"\\ansicpg99999 \\'e9",
            b"\\ansicpg-1 \\'e9",
            b"{\\fonttbl{\\f1\\fcharset-9}}\\f1\\'e9",
            b"\xff\xfe\x00\x80",
        ];
        for case in cases {
            let _ = text_from_rtf(case);
            let _ = html_from_rtf(case);
        }
        // Bytes after a deep overflow still parse normally once the groups close.
        let mut s = "{".repeat(MAX_DEPTH + 10);
        s.push_str("hidden");
        s.push_str(&"}".repeat(MAX_DEPTH + 9));
        s.push_str("shown}");
        assert_eq!(text_from_rtf(s.as_bytes()), "shown");
    }
}
