//! Reading a PST file with the `outlook-pst` crate: the folder tree one folder at a time
//! (nothing is read before it is asked for, so opening a large file costs a header and a
//! root folder), and one message at a time as an [`Item`].
//!
//! The crate's objects are `Rc` based, so a [`Pst`] stays on the thread that opened it.
//! Corrupt input shows up as `io::Error`s from the crate; the few places where the crate
//! may panic on bad bytes are fenced by [`guard`] so a damaged item is reported, not fatal.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use outlook_pst::ltp::prop_context::PropertyValue;
use outlook_pst::ltp::table_context::TableContext;
use outlook_pst::messaging::attachment::{
    AnsiAttachment, Attachment as PstAttachment, AttachmentData as PstData, UnicodeAttachment,
};
use outlook_pst::messaging::folder::Folder as PstFolder;
use outlook_pst::messaging::message::{AnsiMessage, Message as PstMessage, UnicodeMessage};
use outlook_pst::messaging::named_prop::{NamedPropertyGuid, NamedPropertyId};
use outlook_pst::messaging::store::{AnsiStore, Store as PstStore, UnicodeStore};
use outlook_pst::ndb::node_id::NodeId;
use outlook_pst::{AnsiPstFile, UnicodePstFile};

use super::fixup::FixupReader;
use super::item::{Address, Appointment, Attachment, AttachmentData, Contact, Html, Item, Recipient, RecipientKind};
use super::raw::{choose_codepage, decode_8bit, RawAttachment, RawMessage, RawPst, RawValue};

/// Why a file cannot be opened as a PST. Each says what the file is and what to do.
#[derive(Debug)]
pub enum OpenError {
    Io(io::Error),
    /// Not a PST at all (no `!BDN` magic).
    NotPst,
    /// An OST (offline store of an Exchange/Outlook.com account).
    Ost,
    /// A PST with 4 KiB pages (wVer 36), written by recent Outlook versions for large stores.
    FourKPages,
    /// An unknown format version.
    Version(u16),
    /// The store has a password (PidTagPstPassword).
    Password,
    /// The header or the root structures do not read.
    Corrupt(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io(e) => write!(f, "cannot read: {e}"),
            OpenError::NotPst => write!(f, "not an Outlook PST file (no !BDN signature)"),
            OpenError::Ost => write!(
                f,
                "an Outlook OST (offline cache of a server mailbox) is not supported: export the mailbox to a PST from Outlook (File > Open & Export > Import/Export) and import that"
            ),
            OpenError::FourKPages => write!(
                f,
                "a PST with 4 KiB pages (format version 36) is not supported by the PST reader: export it again from Outlook as an ordinary Unicode PST"
            ),
            OpenError::Version(v) => write!(f, "unknown PST format version {v}"),
            OpenError::Password => write!(
                f,
                "the PST is password-protected: remove the password in Outlook (Data File Settings > Change Password) and try again"
            ),
            OpenError::Corrupt(why) => {
                write!(f, "the PST is damaged ({why}): try Outlook's Inbox Repair Tool (scanpst.exe) on it")
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// The header fields that decide whether we can read a file at all (MS-PST 2.2.2.6).
/// Returns whether the file is Unicode and its encoding (bCryptMethod).
fn check_header(path: &Path) -> Result<(bool, u8), OpenError> {
    let mut head = [0u8; 0x202];
    let f = std::fs::File::open(path).map_err(OpenError::Io)?;
    let n = f.take(head.len() as u64).read(&mut head).map_err(OpenError::Io)?;
    if n < 4 || &head[0..4] != b"!BDN" {
        return Err(OpenError::NotPst);
    }
    if n < head.len() {
        return Err(OpenError::Corrupt("the file ends inside the PST header: it was cut short".into()));
    }
    let client = u16::from_le_bytes([head[8], head[9]]);
    let version = u16::from_le_bytes([head[10], head[11]]);
    if client == 0x4F53 {
        return Err(OpenError::Ost);
    }
    // bCryptMethod: offset 0x201 in a Unicode header, 0x1CD in an ANSI one.
    match version {
        14 | 15 => Ok((false, head[0x1CD])),
        23 => Ok((true, head[0x201])),
        36 => Err(OpenError::FourKPages),
        v => Err(OpenError::Version(v)),
    }
}

/// Run crate code that may panic on corrupt bytes; a panic becomes an `InvalidData` error.
pub fn guard<T>(what: &str, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(io::Error::new(io::ErrorKind::InvalidData, format!("{what}: the PST reader failed ({msg})")))
        }
    }
}

enum Kind {
    Unicode(Rc<UnicodeStore>),
    Ansi(Rc<AnsiStore>),
}

/// An open PST file.
pub struct Pst {
    kind: Kind,
    path: PathBuf,
    /// Named property ids of this file for the (property set, LID) pairs we use.
    named: HashMap<(u32, u32), u16>,
    /// The code page of 8-bit strings of an ANSI file when an item does not say.
    default_codepage: u16,
    /// Advanced before each operation; see [`FixupReader`]'s loop guard.
    epoch: Arc<AtomicU64>,
    /// Our own reader ([`RawPst`]), opened the first time the crate cannot read an item:
    /// attachments holding embedded messages and messages without a subnode tree.
    raw: std::cell::OnceCell<Option<RawPst>>,
}

/// One folder: its name, subfolders and messages (node ids), as listed by its tables.
#[derive(Clone, Debug, Default)]
pub struct FolderListing {
    pub node: u32,
    pub name: String,
    pub subfolders: Vec<u32>,
    pub messages: Vec<u32>,
}

// Property sets of the named properties we read (MS-OXPROPS), by their Data1.
const PSETID_ADDRESS: u32 = 0x0006_2004;
const PSETID_APPOINTMENT: u32 = 0x0006_2002;

// PidLid ids (MS-OXPROPS).
const LID_EMAIL1: u32 = 0x8083;
const LID_EMAIL2: u32 = 0x8093;
const LID_EMAIL3: u32 = 0x80A3;
const LID_APPT_START: u32 = 0x820D;
const LID_APPT_END: u32 = 0x820E;
const LID_LOCATION: u32 = 0x8208;
const LID_ALL_DAY: u32 = 0x8215;

impl Pst {
    /// Open `path`: the header, the store's properties and its named property map.
    pub fn open(path: &Path) -> Result<Pst, OpenError> {
        let (unicode, crypt) = check_header(path)?;
        let corrupt = |e: io::Error| OpenError::Corrupt(e.to_string());
        let file = std::fs::File::open(path).map_err(OpenError::Io)?;
        let reader = FixupReader::new(file, unicode, crypt);
        let epoch = reader.epoch.clone();
        let kind = guard("open", || {
            Ok(if unicode {
                Kind::Unicode(UnicodeStore::read(Rc::new(UnicodePstFile::read_from(Box::new(reader))?))?)
            } else {
                Kind::Ansi(AnsiStore::read(Rc::new(AnsiPstFile::read_from(Box::new(reader))?))?)
            })
        })
        .map_err(corrupt)?;
        let mut pst = Pst {
            kind,
            path: path.to_path_buf(),
            named: HashMap::new(),
            default_codepage: 1252,
            epoch,
            raw: std::cell::OnceCell::new(),
        };
        if let Some(v) = pst.store().properties().get(0x67FF) {
            if matches!(v, PropertyValue::Integer32(n) if *n != 0) {
                return Err(OpenError::Password);
            }
        }
        pst.load_named();
        Ok(pst)
    }

    /// Run one operation of the crate: a new epoch for the loop guard, panics as errors.
    fn op<T>(&self, what: &str, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        guard(what, f)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn store(&self) -> Rc<dyn PstStore> {
        match &self.kind {
            Kind::Unicode(s) => s.clone(),
            Kind::Ansi(s) => s.clone(),
        }
    }

    /// The store's display name ("Personal Folders").
    pub fn display_name(&self) -> String {
        self.store().properties().display_name().unwrap_or_default()
    }

    /// Map the named properties we use to this file's property ids. A file without a
    /// usable map just lacks contact emails and appointment times.
    fn load_named(&mut self) {
        let Ok(map) = self.op("named property map", || self.store().named_property_map()) else { return };
        let props = map.properties();
        let guids = props.stream_guid().unwrap_or_default();
        let Ok(entries) = props.stream_entry() else { return };
        for e in entries {
            let NamedPropertyId::Number(lid) = e.id() else { continue };
            let set = match e.guid() {
                NamedPropertyGuid::GuidIndex(i) => match guids.get(i as usize) {
                    Some(g) => g.data1(),
                    None => continue,
                },
                _ => continue,
            };
            // The crate gives the property id itself (0x8000 + the entry's index).
            let id = e.prop_id();
            if id < 0x8000 {
                continue;
            }
            self.named.insert((set, lid), id);
        }
    }

    fn named_id(&self, set: u32, lid: u32) -> Option<u16> {
        self.named.get(&(set, lid)).copied()
    }

    /// The top of the folder tree people see (the IPM subtree: Inbox, Sent Items...).
    pub fn root(&self) -> io::Result<u32> {
        self.op("root folder", || {
            let eid = self.store().properties().ipm_sub_tree_entry_id()?;
            Ok(u32::from(eid.node_id()))
        })
    }

    /// List folder `node`: name, subfolders, messages.
    pub fn folder(&self, node: u32) -> io::Result<FolderListing> {
        self.op("folder", || {
            let store = self.store();
            let eid = store.properties().make_entry_id(NodeId::from(node))?;
            let folder: Rc<dyn PstFolder> = store.open_folder(&eid)?;
            let name = folder.properties().display_name()?;
            let ids = |t: Option<&Rc<dyn TableContext>>| -> Vec<u32> {
                t.map(|t| t.rows_matrix().map(|r| u32::from(r.id())).collect()).unwrap_or_default()
            };
            Ok(FolderListing {
                node,
                name: clean_name(&name),
                subfolders: ids(folder.hierarchy_table()),
                messages: ids(folder.contents_table()),
            })
        })
    }

    /// Read message `node` and everything in it: with the crate, else (an item the crate
    /// refuses, such as one without a subnode tree) with our own reader.
    pub fn message(&self, node: u32) -> io::Result<Item> {
        let from_crate = self.op("message", || {
            let store = self.store();
            let eid = store.properties().make_entry_id(NodeId::from(node))?;
            match &self.kind {
                Kind::Unicode(s) => {
                    let m = UnicodeMessage::read(s.clone(), &eid, None)?;
                    let open = |sub: NodeId| -> io::Result<Rc<dyn PstAttachment>> {
                        Ok(UnicodeAttachment::read(m.clone(), sub, None)?)
                    };
                    Ok(self.item(node, m.as_ref(), &open))
                }
                Kind::Ansi(s) => {
                    let m = AnsiMessage::read(s.clone(), &eid, None)?;
                    let open = |sub: NodeId| -> io::Result<Rc<dyn PstAttachment>> {
                        Ok(AnsiAttachment::read(m.clone(), sub, None)?)
                    };
                    Ok(self.item(node, m.as_ref(), &open))
                }
            }
        });
        match from_crate {
            Ok(item) => Ok(item),
            Err(crate_err) => match self.raw() {
                Some(raw) => match guard("fallback reader", || raw.message(node)) {
                    Ok(m) => Ok(self.item_from_raw(&m, 0)),
                    Err(e) => Err(io::Error::new(e.kind(), format!("{crate_err}; {e}"))),
                },
                None => Err(crate_err),
            },
        }
    }

    /// Message `node`'s envelope: what its header block is made from (class, transport
    /// headers, subject, addresses, times, ids, flags), without its bodies and attachments.
    /// Cheap next to [`Pst::message`]: the crate reads only these properties.
    pub fn envelope(&self, node: u32) -> io::Result<Item> {
        const ENVELOPE: &[u16] = &[
            0x001A, 0x007D, 0x0037, 0x0039, 0x0E06, 0x1035, 0x1042, 0x1039, 0x0C1A, 0x0C1E, 0x0C1F, 0x5D01, 0x0042,
            0x0064, 0x0065, 0x5D02, 0x3FFD, 0x3FDE, 0x0E07, 0x1090,
        ];
        let from_crate = self.op("message", || {
            let store = self.store();
            let eid = store.properties().make_entry_id(NodeId::from(node))?;
            let m: Rc<dyn PstMessage> = match &self.kind {
                Kind::Unicode(s) => UnicodeMessage::read(s.clone(), &eid, Some(ENVELOPE))?,
                Kind::Ansi(s) => AnsiMessage::read(s.clone(), &eid, Some(ENVELOPE))?,
            };
            Ok(self.item_of(m.as_ref()))
        });
        let mut item = match from_crate {
            Ok(item) => item,
            Err(crate_err) => match self.raw().map(|r| guard("fallback reader", || r.message(node))) {
                Some(Ok(m)) => self.item_from_raw(&m, 0),
                Some(Err(e)) => return Err(io::Error::new(e.kind(), format!("{crate_err}; {e}"))),
                None => return Err(crate_err),
            },
        };
        item.body_text = None;
        item.body_html = None;
        item.body_rtf = None;
        item.attachments.clear();
        item.contact = None;
        item.appointment = None;
        Ok(item)
    }

    /// Our own reader, opened on first use (None if it cannot open the file).
    fn raw(&self) -> Option<&RawPst> {
        self.raw
            .get_or_init(|| match RawPst::open(&self.path) {
                Ok(r) => Some(r),
                Err(e) => {
                    log::warn!("{}: the fallback reader cannot open it: {e}", self.path.display());
                    None
                }
            })
            .as_ref()
    }

    /// An item read by our own reader, attachments and embedded messages included.
    fn item_from_raw(&self, m: &RawMessage, depth: u32) -> Item {
        let props = raw_props(&m.props);
        let recipients: Vec<Props> = m.recipients.iter().map(raw_props).collect();
        let mut item = self.item_from(&props, &recipients);
        item.attachments = m.attachments.iter().map(|a| self.attachment_from_raw(a, depth)).collect();
        item
    }

    fn attachment_from_raw(&self, a: &RawAttachment, depth: u32) -> Attachment {
        let props = raw_props(&a.props);
        let data = match (&a.data, &a.embedded) {
            (Some(bytes), _) => AttachmentData::Bytes(bytes.clone()),
            (None, Some(m)) if depth < 8 => AttachmentData::Message(Box::new(self.item_from_raw(m, depth + 1))),
            (None, Some(_)) => AttachmentData::Missing("embedded messages nested too deep".into()),
            (None, None) => self.no_data(&props),
        };
        self.attachment_from(&props, data)
    }

    /// Build an [`Item`] from a message's properties, recipients and attachments.
    /// `open` opens an attachment of message `node` by its subnode; an attachment the crate
    /// cannot read (every one holding an embedded message: the crate does not parse
    /// PtypObject properties) is read by our own reader.
    fn item(&self, node: u32, m: &dyn PstMessage, open: &dyn Fn(NodeId) -> io::Result<Rc<dyn PstAttachment>>) -> Item {
        let mut item = self.item_of(m);
        if let Some(table) = m.attachment_table() {
            for row in table.rows_matrix() {
                let sub = u32::from(row.id());
                let from_crate = guard("attachment", || open(NodeId::from(sub)));
                item.attachments.push(match from_crate {
                    Ok(a) if !matches!(a.data(), Some(PstData::Message(_))) => self.attachment(a.as_ref()),
                    other => match self.raw().map(|r| guard("fallback reader", || r.attachment(node, sub))) {
                        Some(Ok(a)) => self.attachment_from_raw(&a, 1),
                        Some(Err(e)) => missing(format!("attachment cannot be read: {e}")),
                        None => match other {
                            Ok(a) => self.attachment(a.as_ref()),
                            Err(e) => missing(format!("attachment cannot be read: {e}")),
                        },
                    },
                });
            }
        }
        item
    }

    /// A message's properties and recipients as an [`Item`] (no attachments yet).
    fn item_of(&self, m: &dyn PstMessage) -> Item {
        let props = self.props(m.properties().iter());
        let cp = self.codepage(&props);
        let recipients = m.recipient_table().map(|t| recipient_props(t.as_ref(), cp)).unwrap_or_default();
        self.item_from(&props, &recipients)
    }

    /// An attachment read by the crate (embedded messages come from [`RawPst`]).
    fn attachment(&self, a: &dyn PstAttachment) -> Attachment {
        let props = self.props(a.properties().iter());
        let data = match a.data() {
            Some(PstData::Binary(b)) => AttachmentData::Bytes(b.buffer().to_vec()),
            Some(PstData::Message(_)) => {
                AttachmentData::Missing("an embedded message the fallback reader could not open".into())
            }
            None => self.no_data(&props),
        };
        self.attachment_from(&props, data)
    }

    /// Why an attachment has no data, from its method.
    fn no_data(&self, props: &Props) -> AttachmentData {
        let method = int(props, 0x3705).unwrap_or(0);
        let text = |id| text(props, id);
        AttachmentData::Missing(match method {
            2 | 4 | 7 => format!(
                "the attachment is a link to {}, not stored in the PST",
                text(0x370D).or_else(|| text(0x3708)).unwrap_or_else(|| "a file".into())
            ),
            _ => format!("attachment method {method} holds no data"),
        })
    }

    /// An attachment's name, type and place from its properties, holding `data`.
    fn attachment_from(&self, props: &Props, data: AttachmentData) -> Attachment {
        let text = |id| text(props, id);
        let flags = int(props, 0x3714).unwrap_or(0);
        Attachment {
            filename: text(0x3707).or_else(|| text(0x3704)).or_else(|| text(0x3001)),
            mime_type: text(0x370E),
            content_id: text(0x3712).map(|s| s.trim_matches(|c| c == '<' || c == '>').to_string()),
            content_location: text(0x3713),
            // ATT_MHTML_REF (4): referenced from the HTML body.
            inline: flags & 4 != 0,
            data,
        }
    }

    /// The code page of an object's 8-bit strings: PidTagMessageCodepage, else
    /// PidTagInternetCodepage, else the file's default.
    fn codepage(&self, props: &Props) -> u16 {
        let cp = |id| int(props, id).and_then(|n| u32::try_from(n).ok());
        choose_codepage(cp(0x3FFD), cp(0x3FDE), self.default_codepage)
    }

    /// The crate's property values as [`Props`], 8-bit strings decoded in the object's
    /// code page.
    fn props<'a>(&self, iter: impl Iterator<Item = (&'a u16, &'a PropertyValue)>) -> Props {
        let all: Vec<(&u16, &PropertyValue)> = iter.collect();
        let cp_of = |id: u16| {
            all.iter().find(|(k, _)| **k == id).and_then(|(_, v)| match v {
                PropertyValue::Integer32(n) => u32::try_from(*n).ok(),
                _ => None,
            })
        };
        let cp = choose_codepage(cp_of(0x3FFD), cp_of(0x3FDE), self.default_codepage);
        all.iter().filter_map(|&(&id, v)| Some((id, value(v, cp)?))).collect()
    }

    /// An [`Item`] from a message's properties and its recipients' properties.
    pub(crate) fn item_from(&self, props: &Props, recipients: &[Props]) -> Item {
        let text = |id| text(props, id);
        let time = |id| match props.get(&id) {
            Some(Val::Time(t)) => crate::mime::date::from_filetime(*t),
            _ => None,
        };
        let mut item = Item {
            class: text(0x001A).unwrap_or_else(|| "IPM.Note".into()),
            transport_headers: text(0x007D),
            subject: text(0x0037).map(|s| strip_subject_prefix(&s)),
            submit_time: time(0x0039),
            delivery_time: time(0x0E06),
            message_id: text(0x1035),
            in_reply_to: text(0x1042),
            references: text(0x1039),
            body_text: text(0x1000),
            ..Item::default()
        };
        let sender = address(text(0x0C1A), text(0x0C1E), text(0x0C1F), text(0x5D01));
        let author = address(text(0x0042), text(0x0064), text(0x0065), text(0x5D02));
        match (author, sender) {
            (Some(a), Some(s)) if a != s => {
                item.from = Some(a);
                item.sender = Some(s);
            }
            (Some(a), _) => item.from = Some(a),
            (None, s) => item.from = s,
        }
        item.body_html = match props.get(&0x1013) {
            Some(Val::Bin(b)) if !b.is_empty() => {
                let charset = int(props, 0x3FDE)
                    .and_then(|n| u16::try_from(n).ok())
                    .and_then(codepage::to_encoding)
                    .map(|e| e.name().to_ascii_lowercase())
                    .unwrap_or_else(|| "utf-8".into());
                Some(Html { bytes: b.clone(), charset })
            }
            Some(Val::Str(s)) if !s.is_empty() => Some(Html { bytes: s.clone().into_bytes(), charset: "utf-8".into() }),
            _ => None,
        };
        // Outlook often keeps an HTML body only inside the compressed RTF (\fromhtml1):
        // without PidTagHtml, such an RTF gives the HTML part; an RTF that wraps no HTML is
        // used only when there is no other body (see the doc of rfc5322::mime).
        if item.body_html.is_none() {
            if let Some(Val::Bin(b)) = props.get(&0x1009).filter(|v| matches!(v, Val::Bin(b) if rtf_size_is_sane(b))) {
                let rtf = guard("rtf", || {
                    compressed_rtf::decompress_rtf(b)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
                })
                .ok()
                .map(String::into_bytes);
                match rtf.as_deref().and_then(super::rtf::html_from_rtf) {
                    Some(html) => item.body_html = Some(Html { bytes: html, charset: "utf-8".into() }),
                    None if item.body_text.is_none() => item.body_rtf = rtf,
                    None => {}
                }
            }
        }
        let flags = int(props, 0x0E07).unwrap_or(0);
        item.read = flags & 1 != 0;
        item.flagged = int(props, 0x1090) == Some(2);
        item.recipients = recipients.iter().filter_map(recipient_from).collect();
        let named_text = |lid: u32, set: u32| self.named_id(set, lid).and_then(text);
        if item.class.starts_with("IPM.Contact") {
            let mut phones = Vec::new();
            for (id, kind) in [(0x3A08, "work"), (0x3A09, "home"), (0x3A1C, "cell"), (0x3A24, "fax")] {
                if let Some(n) = text(id) {
                    phones.push((kind.to_string(), n));
                }
            }
            item.contact = Some(Contact {
                display_name: text(0x3001),
                given_name: text(0x3A06),
                surname: text(0x3A11),
                company: text(0x3A16),
                title: text(0x3A17),
                emails: [LID_EMAIL1, LID_EMAIL2, LID_EMAIL3]
                    .iter()
                    .filter_map(|&lid| named_text(lid, PSETID_ADDRESS))
                    .collect(),
                phones,
                notes: None,
            });
        }
        if item.class.starts_with("IPM.Appointment") {
            let named_time = |lid: u32| self.named_id(PSETID_APPOINTMENT, lid).and_then(time);
            item.appointment = Some(Appointment {
                // PidTagStartDate/PidTagEndDate mirror the appointment's times.
                start: named_time(LID_APPT_START).or_else(|| time(0x0060)),
                end: named_time(LID_APPT_END).or_else(|| time(0x0061)),
                location: named_text(LID_LOCATION, PSETID_APPOINTMENT),
                all_day: self
                    .named_id(PSETID_APPOINTMENT, LID_ALL_DAY)
                    .is_some_and(|id| matches!(props.get(&id), Some(Val::Bool(true)))),
                uid: None,
            });
        }
        item
    }
}

/// Is a compressed RTF's declared size (MS-OXRTFCP 2.1.3.1: cbSize, rawSize, ...) one the
/// data can produce? The decompressor allocates rawSize up front, and a failed allocation
/// aborts the process, which no guard catches. LZFu expands at most about 8.5 times.
fn rtf_size_is_sane(b: &[u8]) -> bool {
    let Some(raw) = b.get(4..8).map(|r| u32::from_le_bytes([r[0], r[1], r[2], r[3]])) else { return false };
    b.len() >= 16 && u64::from(raw) <= 16 * b.len() as u64 + 4096
}

/// A property value as the item builder needs it, whichever reader it came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Int(i64),
    Bool(bool),
    /// FILETIME: 100 ns since 1601.
    Time(i64),
    Str(String),
    Bin(Vec<u8>),
}

/// An object's properties by id.
pub type Props = std::collections::BTreeMap<u16, Val>;

/// Our reader's values as [`Props`] (objects and unread types left out).
fn raw_props(p: &std::collections::BTreeMap<u16, RawValue>) -> Props {
    p.iter()
        .filter_map(|(&id, v)| {
            let v = match v {
                RawValue::Int(n) => Val::Int(*n),
                RawValue::Bool(b) => Val::Bool(*b),
                RawValue::Time(t) => Val::Time(*t),
                RawValue::Str(s) => Val::Str(s.clone()),
                RawValue::Bin(b) => Val::Bin(b.clone()),
                RawValue::Object { .. } | RawValue::Other(_) => return None,
            };
            Some((id, v))
        })
        .collect()
}

fn value(v: &PropertyValue, cp: u16) -> Option<Val> {
    Some(match v {
        PropertyValue::Integer16(n) => Val::Int(i64::from(*n)),
        PropertyValue::Integer32(n) => Val::Int(i64::from(*n)),
        PropertyValue::Integer64(n) => Val::Int(*n),
        PropertyValue::Boolean(b) => Val::Bool(*b),
        PropertyValue::Time(t) => Val::Time(*t),
        PropertyValue::Binary(b) => Val::Bin(b.buffer().to_vec()),
        PropertyValue::String8(_) | PropertyValue::Unicode(_) => Val::Str(string_value(v, cp)?),
        _ => return None,
    })
}

fn int(props: &Props, id: u16) -> Option<i32> {
    match props.get(&id)? {
        Val::Int(n) => i32::try_from(*n).ok(),
        _ => None,
    }
}

fn text(props: &Props, id: u16) -> Option<String> {
    match props.get(&id)? {
        Val::Str(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A recipient from its row of the recipient table.
fn recipient_from(props: &Props) -> Option<Recipient> {
    let text = |id| text(props, id);
    let kind = match int(props, 0x0C15) {
        Some(2) => RecipientKind::Cc,
        Some(3) => RecipientKind::Bcc,
        _ => RecipientKind::To,
    };
    let address = address(text(0x3001), text(0x3002), text(0x3003), text(0x39FE))?;
    Some(Recipient { kind, address })
}

fn missing(reason: String) -> Attachment {
    Attachment {
        filename: None,
        mime_type: None,
        content_id: None,
        content_location: None,
        inline: false,
        data: AttachmentData::Missing(reason),
    }
}

/// The rows of a message's recipient table as [`Props`].
fn recipient_props(table: &dyn TableContext, cp: u16) -> Vec<Props> {
    let ctx = table.context();
    let mut out = Vec::new();
    for row in table.rows_matrix() {
        let Ok(values) = row.columns(ctx) else { continue };
        let mut props = Props::new();
        for (col, value_ref) in ctx.columns().iter().zip(values) {
            if let Some(value_ref) = value_ref {
                if let Some(v) = table.read_column(&value_ref, col.prop_type()).ok().and_then(|v| value(&v, cp)) {
                    props.insert(col.prop_id(), v);
                }
            }
        }
        out.push(props);
    }
    out
}

/// A display name and the SMTP address among (address type, address, SMTP address).
fn address(
    name: Option<String>,
    addr_type: Option<String>,
    addr: Option<String>,
    smtp: Option<String>,
) -> Option<Address> {
    let email = smtp.filter(|s| s.contains('@')).or_else(|| {
        let is_smtp = addr_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("SMTP"));
        addr.filter(|a| is_smtp && a.contains('@'))
    });
    if name.is_none() && email.is_none() {
        return None;
    }
    Some(Address { name, email })
}

/// A string property as text: UTF-16 as is, 8-bit in code page `cp`.
fn string_value(v: &PropertyValue, cp: u16) -> Option<String> {
    let s = match v {
        PropertyValue::Unicode(u) => String::from_utf16_lossy(u.buffer()),
        PropertyValue::String8(s) => decode_8bit(s.buffer(), cp),
        _ => return None,
    };
    Some(s.trim_end_matches('\0').to_string())
}

/// A subject may start with \x01 and a character giving the length of its prefix ("RE: ").
fn strip_subject_prefix(s: &str) -> String {
    let mut chars = s.chars();
    if chars.next() == Some('\u{1}') {
        chars.next();
        return chars.as_str().to_string();
    }
    s.to_string()
}

/// Folder names are file names: no `/` or NUL.
fn clean_name(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c == '/' || c == '\0' { '_' } else { c }).collect();
    // A file name has at most 255 bytes; cut on a character boundary.
    if s.len() > 255 {
        let mut end = 255;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    if s.is_empty() || s == "." || s == ".." {
        format!("_{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file holding `head` and zeros after it, up to a PST header's length.
    fn header_file(head: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = head.to_vec();
        bytes.resize(0x400, 0);
        std::io::Write::write_all(&mut f, &bytes).unwrap();
        f
    }

    #[test]
    fn a_compressed_rtf_claiming_more_than_it_can_hold_is_not_decompressed() {
        let mut b = vec![0u8; 32];
        b[4..8].copy_from_slice(&600u32.to_le_bytes());
        assert!(rtf_size_is_sane(&b));
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!rtf_size_is_sane(&b));
        assert!(!rtf_size_is_sane(&[0u8; 8]));
    }

    #[test]
    fn folder_names_become_file_names() {
        assert_eq!(clean_name("A/B"), "A_B");
        assert_eq!(clean_name(".."), "_..");
        let long = "é".repeat(200);
        let cut = clean_name(&long);
        assert!(cut.len() <= 255 && cut.chars().all(|c| c == 'é'), "{}", cut.len());
    }

    #[test]
    fn files_we_cannot_read_are_named_with_what_to_do() {
        let err = |head: &[u8]| Pst::open(header_file(head).path()).err().map(|e| e.to_string()).unwrap();
        // wMagicClient "SO": an OST.
        assert!(err(b"!BDN\0\0\0\0SO\x24\0").contains("OST"));
        // wVer 36 with "SM": a PST with 4 KiB pages.
        assert!(err(b"!BDN\0\0\0\0SM\x24\0").contains("4 KiB pages"));
        assert!(err(b"!BDN\0\0\0\0SM\x63\0").contains("version 99"));
        assert!(err(b"From someone").contains("not an Outlook PST"));
        // Cut inside the header.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, b"!BDN\0\0\0\0SM\x17\0").unwrap();
        assert!(Pst::open(f.path()).err().unwrap().to_string().contains("cut short"));
    }
}
