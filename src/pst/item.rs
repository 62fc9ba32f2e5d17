//! The PST item model: what the reader ([`super::reader`]) takes out of a PST message and
//! the RFC 5322 writer ([`super::rfc5322`]) turns into text. Plain data, no PST types, so
//! the writer can be tested without a PST file.

/// Which header a recipient goes to (PidTagRecipientType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipientKind {
    To,
    Cc,
    Bcc,
}

/// A display name and an address; either may be missing in a PST.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Address {
    pub name: Option<String>,
    /// An SMTP address when the item has one; an Exchange DN ("/O=...") is not used here.
    pub email: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub kind: RecipientKind,
    pub address: Address,
}

/// The body of an HTML part: bytes in the given charset (PidTagHtml is binary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Html {
    pub bytes: Vec<u8>,
    /// An IANA charset name ("utf-8", "windows-1252", ...).
    pub charset: String,
}

/// What an attachment holds.
#[derive(Clone, Debug)]
pub enum AttachmentData {
    /// File bytes (afByValue).
    Bytes(Vec<u8>),
    /// An embedded message (afEmbeddedMessage): written as a message/rfc822 part.
    Message(Box<Item>),
    /// Nothing usable (by reference, OLE storage, unreadable): the reason, for the summary.
    Missing(String),
}

#[derive(Clone, Debug)]
pub struct Attachment {
    /// PidTagAttachLongFilename, else PidTagAttachFilename, else PidTagDisplayName.
    pub filename: Option<String>,
    /// PidTagAttachMimeTag when set.
    pub mime_type: Option<String>,
    /// PidTagAttachContentId (inline images referenced by `cid:` from the HTML).
    pub content_id: Option<String>,
    /// PidTagAttachContentLocation.
    pub content_location: Option<String>,
    /// Marked inline (PidTagAttachFlags & ATT_MHTML_REF, or a content id referenced by the
    /// HTML body): `Content-Disposition: inline`.
    pub inline: bool,
    pub data: AttachmentData,
}

/// Contact fields (IPM.Contact) for a text/vcard part.
#[derive(Clone, Debug, Default)]
pub struct Contact {
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub company: Option<String>,
    pub title: Option<String>,
    /// Email addresses (PidLidEmail1..3EmailAddress).
    pub emails: Vec<String>,
    /// (type, number): type is "work", "home", "cell", "fax".
    pub phones: Vec<(String, String)>,
    pub notes: Option<String>,
}

/// Appointment fields (IPM.Appointment) for a text/calendar part.
#[derive(Clone, Debug, Default)]
pub struct Appointment {
    /// Unix seconds, UTC.
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub location: Option<String>,
    pub all_day: bool,
    /// The organizer (the item's sender) and attendees come from the item itself.
    pub uid: Option<String>,
}

/// One PST item, all it takes to write it as RFC 5322.
#[derive(Clone, Debug, Default)]
pub struct Item {
    /// PidTagMessageClass ("IPM.Note", "IPM.Contact", "IPM.Appointment", "IPM.DistList"...).
    pub class: String,
    /// PidTagTransportMessageHeaders: the headers as received, when the item has them.
    pub transport_headers: Option<String>,
    pub subject: Option<String>,
    /// The author: PidTagSentRepresenting* (on behalf of) else PidTagSender*.
    pub from: Option<Address>,
    /// The sender when different from the author (PidTagSender* vs SentRepresenting).
    pub sender: Option<Address>,
    pub recipients: Vec<Recipient>,
    /// Unix seconds: PidTagClientSubmitTime, PidTagMessageDeliveryTime.
    pub submit_time: Option<i64>,
    pub delivery_time: Option<i64>,
    /// PidTagInternetMessageId, PidTagInReplyToId, PidTagInternetReferences.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    /// PidTagBody.
    pub body_text: Option<String>,
    /// PidTagHtml.
    pub body_html: Option<Html>,
    /// PidTagRtfCompressed, decompressed: the RTF text, used when the item has neither a
    /// text nor an HTML body.
    pub body_rtf: Option<Vec<u8>>,
    pub attachments: Vec<Attachment>,
    pub contact: Option<Contact>,
    pub appointment: Option<Appointment>,
    /// PidTagMessageFlags & MSGFLAG_READ.
    pub read: bool,
    /// PidTagFlagStatus == followupFlagged (2).
    pub flagged: bool,
}
