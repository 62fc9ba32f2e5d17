//! The IMAP commands that change a server or select a folder for a two-way pass: SELECT
//! (with QRESYNC), CREATE, UID SEARCH, APPEND (MULTIAPPEND, or pipelined), UID STORE (with UNCHANGEDSINCE),
//! UID EXPUNGE, UID MOVE and UID COPY. imap.rs holds the connection and the read-only ones.
//!
//! Invariants: a plain EXPUNGE is never sent (it would remove messages other clients marked
//! \Deleted); every answer a caller acts on (APPENDUID, COPYUID, MODIFIED) is taken from
//! the server's response codes, never guessed.

use std::num::{NonZeroU32, NonZeroU64};

use imap_codec::encode::Encoder;
use imap_codec::CommandCodec;
use imap_next::client::Event;
use imap_next::imap_types::command::{Command, CommandBody, SelectParameter, StoreModifier};
use imap_next::imap_types::core::{AString, Literal, LiteralMode, Tag, Vec1};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::extensions::binary::{Literal8, LiteralOrLiteral8};
use imap_next::imap_types::extensions::uidplus::UidElement;
use imap_next::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data, Status, StatusKind};
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::SequenceSet;
use imap_next::imap_types::IntoStatic;

use super::imap::{server_words, uids_of, Connection, Fetched, Folder, ImapError, Selected};
use crate::store::flags;

/// One message to APPEND.
pub struct Append<'a> {
    pub flags: u8,
    pub keywords: &'a [String],
    /// INTERNALDATE, nanoseconds since the epoch.
    pub date: Option<i64>,
    pub content: &'a [u8],
}

/// What the server said to one APPEND of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Stored; the UID when the server sent APPENDUID (UIDPLUS).
    Ok(Option<u32>),
    /// Refused, with the server's words (the others of the batch still went).
    Refused(String),
}

/// The APPEND of one message to `mb`, or why it cannot be sent.
fn append_body(
    mb: &Mailbox<'static>,
    m: &Append<'_>,
    mode: LiteralMode,
    binary: bool,
) -> Result<CommandBody<'static>, String> {
    let message = match Literal::try_from(m.content.to_vec()) {
        Ok(mut lit) => {
            lit.set_mode(mode);
            LiteralOrLiteral8::Literal(lit)
        }
        // A NUL byte: only BINARY's literal8 (RFC 3516) carries it.
        Err(_) if binary => LiteralOrLiteral8::Literal8(Literal8 { data: m.content.to_vec().into(), mode }),
        Err(_) => return Err("it holds a NUL byte, which APPEND cannot send to a server without BINARY".into()),
    };
    let flags = imap_flags(m.flags, m.keywords).into_iter().map(|f| f.into_static()).collect();
    Ok(CommandBody::Append { mailbox: mb.clone(), flags, date: m.date.and_then(date_of), message })
}

/// The UIDs of an APPENDUID response code, in order: one (imap-types parses that) or a
/// set (which it leaves as an unknown code: `APPENDUID <uidvalidity> <uid-set>`).
fn append_uids(code: &Code<'_>) -> Vec<u32> {
    match code {
        Code::AppendUid { uid, .. } => vec![uid.get()],
        Code::Other(other) => {
            let text = String::from_utf8_lossy(other.inner());
            let mut words = text.split(' ');
            let (Some(w), Some(_), Some(set), None) = (words.next(), words.next(), words.next(), words.next()) else {
                return Vec::new();
            };
            if !w.eq_ignore_ascii_case("APPENDUID") {
                return Vec::new();
            }
            // In the order written: a server lists them as assigned (ascending), but a
            // SequenceSet's own iteration would sort and merge.
            let mut out = Vec::new();
            for part in set.split(',') {
                let (a, b) = part.split_once(':').unwrap_or((part, part));
                let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) else { return Vec::new() };
                if a == 0 || b == 0 || a.abs_diff(b) > 1_000_000 {
                    return Vec::new();
                }
                if a <= b {
                    out.extend(a..=b);
                } else {
                    out.extend((b..=a).rev());
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// A UID set in IMAP syntax, ranges folded: `1:3,7`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            out.push_str(&format!("{}:{}", v[i], v[j]));
        } else {
            out.push_str(&v[i].to_string());
        }
        i = j + 1;
    }
    out
}

/// IMAP flags for store flag bits and keywords (PASSED has no IMAP flag; a keyword that
/// is not an atom is left out).
pub fn imap_flags<'a>(bits: u8, keywords: &'a [String]) -> Vec<Flag<'a>> {
    let mut out = Vec::new();
    for (bit, flag) in [
        (flags::SEEN, Flag::Seen),
        (flags::ANSWERED, Flag::Answered),
        (flags::FLAGGED, Flag::Flagged),
        (flags::DRAFT, Flag::Draft),
        (flags::TRASHED, Flag::Deleted),
    ] {
        if bits & bit != 0 {
            out.push(flag);
        }
    }
    out.extend(keywords.iter().filter_map(|k| Flag::try_from(k.as_str()).ok()));
    out
}

fn mailbox(folder: &Folder) -> Result<Mailbox<'static>, ImapError> {
    Mailbox::try_from(folder.wire.clone())
        .map_err(|_| ImapError::Protocol(format!("cannot send the mailbox name {:?}", folder.name)))
}

fn sequence(set: &str) -> Result<SequenceSet, ImapError> {
    SequenceSet::try_from(set).map_err(|_| ImapError::Protocol(format!("bad UID set {set:?}")))
}

fn date_of(ns: i64) -> Option<DateTime> {
    let utc = chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)?;
    DateTime::try_from(utc.fixed_offset()).ok()
}

impl Connection {
    /// SELECT `folder` read-write (EXAMINE when `read_only`). With QRESYNC enabled and `known` = (UIDVALIDITY,
    /// HIGHESTMODSEQ) of the last pass, the server also reports what changed since
    /// (RFC 7162 §3.2.5): expunged UIDs in `vanished` and changed flags in `changed`; those
    /// apply only if the UIDVALIDITY is still the same.
    pub fn select(
        &mut self,
        folder: &Folder,
        known: Option<(u64, u64)>,
        read_only: bool,
    ) -> Result<Selected, ImapError> {
        let mut parameters = Vec::new();
        if self.qresync_enabled() {
            if let Some((v, m)) = known {
                if let (Some(v), Some(m)) = (u32::try_from(v).ok().and_then(NonZeroU32::new), NonZeroU64::new(m)) {
                    parameters.push(SelectParameter::QResync {
                        uid_validity: v,
                        mod_sequence_value: m,
                        known_uids: None,
                        seq_match_data: None,
                    });
                }
            }
        } else if self.has("CONDSTORE") {
            parameters.push(SelectParameter::CondStore);
        }
        let (name, body) = if read_only {
            ("EXAMINE", CommandBody::Examine { mailbox: mailbox(folder)?, parameters })
        } else {
            ("SELECT", CommandBody::Select { mailbox: mailbox(folder)?, parameters })
        };
        let (data, codes) = self.run_with_codes(name, body)?;
        let mut sel = Selected::from_codes(&codes);
        for d in data {
            match d {
                Data::Exists(n) => sel.exists = n,
                Data::Vanished { known_uids, .. } => sel.vanished.extend(uids_of(&known_uids)),
                Data::Fetch { items, .. } => {
                    let f = self.fetched(items.into_inner());
                    if f.uid != 0 {
                        sel.changed.push(f);
                    }
                }
                _ => {}
            }
        }
        Ok(sel)
    }

    /// CREATE `name` (already in wire form); a folder that exists already is not an error.
    pub fn create(&mut self, wire: &[u8]) -> Result<(), ImapError> {
        let mb = Mailbox::try_from(wire.to_vec()).map_err(|_| {
            ImapError::Protocol(format!("cannot send the mailbox name {:?}", String::from_utf8_lossy(wire)))
        })?;
        match self.run("CREATE", CommandBody::Create { mailbox: mb }) {
            Ok(_) => Ok(()),
            Err(ImapError::Rejected { text, .. }) if text.contains("[ALREADYEXISTS]") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// RENAME `from` (as LIST gave it) to `to` (wire form); its subfolders go with it.
    pub fn rename(&mut self, from: &Folder, to: &[u8]) -> Result<(), ImapError> {
        let to = Mailbox::try_from(to.to_vec()).map_err(|_| {
            ImapError::Protocol(format!("cannot send the mailbox name {:?}", String::from_utf8_lossy(to)))
        })?;
        self.run("RENAME", CommandBody::Rename { from: mailbox(from)?, to })?;
        Ok(())
    }

    /// UID SEARCH UID `set`: which of those UIDs exist in the selected folder.
    pub fn uid_search(&mut self, set: &str) -> Result<Vec<u32>, ImapError> {
        self.search(SearchKey::Uid(sequence(set)?))
    }

    /// UID SEARCH UID `set` HEADER Message-ID `id`.
    pub fn uid_search_message_id(&mut self, set: &str, message_id: &str) -> Result<Vec<u32>, ImapError> {
        let key = SearchKey::And(
            Vec1::try_from(vec![
                SearchKey::Uid(sequence(set)?),
                SearchKey::Header(
                    AString::try_from("Message-ID").expect("an atom"),
                    AString::try_from(message_id.to_string())
                        .map_err(|_| ImapError::Protocol(format!("cannot search for {message_id:?}")))?,
                ),
            ])
            .expect("two keys"),
        );
        self.search(key)
    }

    fn search(&mut self, key: SearchKey<'static>) -> Result<Vec<u32>, ImapError> {
        let body = CommandBody::search(None, Vec1::from(key), true);
        let mut out = Vec::new();
        for d in self.run("UID SEARCH", body)? {
            if let Data::Search(list, ..) = d {
                out.extend(list.iter().map(|u| u.get()));
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// APPEND each message to `folder`. One answer per message, in order.
    ///
    /// Where the server offers MULTIAPPEND (RFC 3502) and LITERAL+, the batch goes as one
    /// command: the server stores all of it or none, and says so once. Otherwise (or when
    /// the server refuses the MULTIAPPEND, to learn which message it minds) each message
    /// gets its own APPEND, all sent before the answers are read: with LITERAL+ nothing
    /// waits for a continuation, so a batch still costs about one round trip.
    pub fn append(&mut self, folder: &Folder, msgs: &[Append<'_>]) -> Result<Vec<Appended>, ImapError> {
        let mb = mailbox(folder)?;
        if msgs.len() > 1 && self.has("MULTIAPPEND") && self.has("LITERAL+") {
            if let Some(answers) = self.multiappend(&mb, msgs)? {
                return Ok(answers);
            }
        }
        let mode = if self.has("LITERAL+") { LiteralMode::NonSync } else { LiteralMode::Sync };
        let binary = self.has("BINARY");
        // One tag per message sent; a message that cannot be sent is answered at once.
        let mut tags: Vec<Option<Tag<'static>>> = Vec::with_capacity(msgs.len());
        let mut answers: Vec<Option<Appended>> = vec![None; msgs.len()];
        for (i, m) in msgs.iter().enumerate() {
            match append_body(&mb, m, mode, binary) {
                Ok(body) => tags.push(Some(self.enqueue(body).0)),
                Err(why) => {
                    answers[i] = Some(Appended::Refused(why));
                    tags.push(None);
                }
            }
        }
        let mut left = tags.iter().filter(|t| t.is_some()).count();
        while left > 0 {
            match self.next_event()? {
                Event::StatusReceived { status: Status::Tagged(t) } => {
                    let Some(i) = tags.iter().position(|x| x.as_ref() == Some(&t.tag)) else { continue };
                    let uid = match &t.body.code {
                        Some(Code::AppendUid { uid, .. }) => Some(uid.get()),
                        _ => None,
                    };
                    answers[i] = Some(match t.body.kind {
                        StatusKind::Ok => Appended::Ok(uid),
                        _ => Appended::Refused(server_words(&Status::Tagged(t))),
                    });
                    left -= 1;
                }
                Event::StatusReceived { status: bye @ Status::Bye(_) } => {
                    return Err(ImapError::Bye(server_words(&bye)))
                }
                Event::CommandRejected { status, .. } => {
                    if let Status::Tagged(t) = &status {
                        if let Some(i) = tags.iter().position(|x| x.as_ref() == Some(&t.tag)) {
                            answers[i] = Some(Appended::Refused(server_words(&status)));
                            left -= 1;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(answers.into_iter().map(|a| a.expect("every tag answered")).collect())
    }

    /// One MULTIAPPEND of all `msgs` (see [`Connection::append`]); `None` when it cannot be
    /// used here (a mailbox name or a message that needs a synchronising literal) or the
    /// server refused it, which by RFC 3502 means none of them was stored.
    ///
    /// imap-types has no command for it, so the command is put together from imap-codec's
    /// encoding of one APPEND per message: each is `x APPEND <mailbox> <rest>` CRLF, and
    /// MULTIAPPEND is `<tag> APPEND <mailbox>` followed by every `<rest>`. It is written to
    /// the socket while imap-next has nothing in flight; the answer comes back through it
    /// like any tagged status (its APPENDUID with a UID set arrives as an unknown code).
    fn multiappend(&mut self, mb: &Mailbox<'static>, msgs: &[Append<'_>]) -> Result<Option<Vec<Appended>>, ImapError> {
        let codec = CommandCodec::default();
        let x = Tag::try_from("x").expect("a valid tag");
        let encode = |body: CommandBody<'static>| codec.encode(&Command { tag: x.clone(), body }).dump();
        let select = encode(CommandBody::Select { mailbox: mb.clone(), parameters: Vec::new() });
        let Some(name) = select.strip_prefix(b"x SELECT ").and_then(|r| r.strip_suffix(b"\r\n")) else {
            return Ok(None);
        };
        if name.contains(&b'{') {
            return Ok(None); // the name goes as a literal
        }
        let prefix = [b"x APPEND ".as_slice(), name, b" "].concat();
        let tag = self.fresh_tag();
        let mut command = [tag.inner().as_bytes(), b" APPEND ", name].concat();
        for m in msgs {
            let Ok(body) = append_body(mb, m, LiteralMode::NonSync, self.has("BINARY")) else { return Ok(None) };
            let one = encode(body);
            let Some(rest) = one.strip_prefix(prefix.as_slice()).and_then(|r| r.strip_suffix(b"\r\n")) else {
                return Ok(None);
            };
            command.push(b' ');
            command.extend_from_slice(rest);
        }
        command.extend_from_slice(b"\r\n");
        self.send_raw(&command)?;
        loop {
            match self.next_event()? {
                Event::StatusReceived { status: Status::Tagged(t) } if t.tag == tag => {
                    if t.body.kind != StatusKind::Ok {
                        log::info!(
                            "MULTIAPPEND refused ({}): the messages go one by one",
                            server_words(&Status::Tagged(t))
                        );
                        return Ok(None);
                    }
                    self.multiappends += 1;
                    let uids = t.body.code.as_ref().map(append_uids).unwrap_or_default();
                    // APPENDUID names the new UIDs in the order the messages were given
                    // (RFC 4315); a set of another size is no answer.
                    let uids = if uids.len() == msgs.len() {
                        uids.into_iter().map(Some).collect()
                    } else {
                        vec![None; msgs.len()]
                    };
                    return Ok(Some(uids.into_iter().map(Appended::Ok).collect()));
                }
                Event::StatusReceived { status: bye @ Status::Bye(_) } => {
                    return Err(ImapError::Bye(server_words(&bye)))
                }
                _ => {}
            }
        }
    }

    /// UID STORE `set` +FLAGS/-FLAGS (`add`) `bits` and `keywords` (silent), only where the message's
    /// MODSEQ is still at most `unchanged_since` when given (CONDSTORE). Returns the UIDs the
    /// server did not change because they had changed (MODIFIED), and the new MODSEQ of
    /// those it did change (where it says).
    pub fn uid_store(
        &mut self,
        set: &str,
        add: bool,
        bits: u8,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<u32>, Vec<Fetched>), ImapError> {
        let flags = imap_flags(bits, keywords);
        if flags.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let condstore = self.has("CONDSTORE") || self.has("QRESYNC");
        let modifiers = match unchanged_since {
            Some(m) if condstore => vec![StoreModifier::UnchangedSince(m)],
            _ => Vec::new(),
        };
        let body = CommandBody::Store {
            sequence_set: sequence(set)?,
            kind: if add { StoreType::Add } else { StoreType::Remove },
            response: StoreResponse::Silent,
            flags: flags.into_iter().map(|f| f.into_static()).collect(),
            uid: true,
            modifiers,
        };
        let (data, codes) = self.run_with_codes("UID STORE", body)?;
        let modified = codes
            .iter()
            .filter_map(|c| match c {
                Code::Modified(s) => Some(uids_of(s)),
                _ => None,
            })
            .flatten()
            .collect();
        let changed = data
            .into_iter()
            .filter_map(|d| match d {
                Data::Fetch { items, .. } => Some(self.fetched(items.into_inner())),
                _ => None,
            })
            .filter(|f| f.uid != 0)
            .collect();
        Ok((modified, changed))
    }

    /// Remove the messages `set` from the selected folder: UID STORE +FLAGS.SILENT (\Deleted)
    /// then UID EXPUNGE `set` (UIDPLUS). Without UIDPLUS the messages stay marked \Deleted
    /// (a plain EXPUNGE would also remove what other clients marked): `Ok(false)`.
    pub fn uid_remove(&mut self, set: &str) -> Result<bool, ImapError> {
        self.uid_store(set, true, flags::TRASHED, &[], None)?;
        if !self.has("UIDPLUS") {
            return Ok(false);
        }
        self.run("UID EXPUNGE", CommandBody::ExpungeUid { sequence_set: sequence(set)? })?;
        Ok(true)
    }

    /// UID MOVE `set` to `to` (MOVE), else UID COPY and remove. The pairs (old UID, new UID)
    /// from COPYUID, when the server sends it (UIDPLUS).
    pub fn uid_move(&mut self, set: &str, to: &Folder) -> Result<Vec<(u32, u32)>, ImapError> {
        let moved = self.has("MOVE");
        let body = if moved {
            CommandBody::Move { sequence_set: sequence(set)?, mailbox: mailbox(to)?, uid: true }
        } else {
            CommandBody::Copy { sequence_set: sequence(set)?, mailbox: mailbox(to)?, uid: true }
        };
        let (_, codes) = self.run_with_codes(if moved { "UID MOVE" } else { "UID COPY" }, body)?;
        let mut pairs = Vec::new();
        for c in codes {
            if let Code::CopyUid { source, destination, .. } = c {
                let expand = |s: &imap_next::imap_types::extensions::uidplus::UidSet| -> Vec<u32> {
                    s.0.as_ref()
                        .iter()
                        .flat_map(|e| match *e {
                            UidElement::Single(u) => u.get()..=u.get(),
                            UidElement::Range(a, b) => a.get().min(b.get())..=a.get().max(b.get()),
                        })
                        .collect()
                };
                pairs.extend(expand(&source).into_iter().zip(expand(&destination)));
            }
        }
        if !moved {
            self.uid_remove(set)?;
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_next::imap_types::response::CodeOther;

    #[test]
    fn appenduid_gives_its_uids_in_the_order_written_or_nothing() {
        let other = |s: &'static str| Code::Other(CodeOther::unvalidated(s.as_bytes()));
        assert_eq!(append_uids(&other("APPENDUID 38505 3955:3957")), vec![3955, 3956, 3957]);
        assert_eq!(append_uids(&other("appenduid 1 7,9:10,4")), vec![7, 9, 10, 4]);
        assert_eq!(append_uids(&other("APPENDUID 1 5:3")), vec![5, 4, 3]);
        assert_eq!(
            append_uids(&Code::AppendUid { uid_validity: NonZeroU32::MIN, uid: NonZeroU32::new(8).unwrap() }),
            vec![8]
        );
        for bad in ["APPENDUID 1 0:3", "APPENDUID 1 x", "COPYUID 1 2 3", "APPENDUID 1", "APPENDUID 1 1:2000000"] {
            assert_eq!(append_uids(&other(bad)), Vec::<u32>::new(), "{bad}");
        }
        assert_eq!(append_uids(&Code::Alert), Vec::<u32>::new());
    }
}
