//! A blocking IMAP connection for `msgfs sync`: imap-next's sans-I/O client state machine
//! driven over a plain or rustls socket on the calling thread (no async runtime).
//!
//! Invariants: STARTTLS never falls back to plain text (a server that does not offer it is
//! an error before anything else is sent); the password only leaves this process inside the
//! TLS stream (or to a loopback host, which config.rs enforces) and never enters an error
//! or the log; every error from the server carries the server's own words.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use imap_codec::encode::Encoder;
use imap_codec::ResponseCodec;
use imap_next::client::{Client, CommandHandle, Error as ClientError, Event, Options};
use imap_next::imap_types::command::{Command, CommandBody, FetchModifier};
use imap_next::imap_types::core::Tag;
use imap_next::imap_types::extensions::enable::CapabilityEnable;
use imap_next::imap_types::fetch::{MessageDataItem, MessageDataItemName, Section};
use imap_next::imap_types::flag::FlagFetch;
use imap_next::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_next::imap_types::response::{Code, Data, GreetingKind, Response, Status, StatusBody, StatusKind};
use imap_next::imap_types::sequence::SequenceSet;
use imap_next::imap_types::status::{StatusDataItem, StatusDataItemName};
use imap_next::{Interrupt, Io, State};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::config::{Account, Password, Tls};
use super::names::{self, SpecialUse, Utf7Error};

/// A dead server must not hang a sync forever.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub enum ImapError {
    Connect {
        server: String,
        error: io::Error,
    },
    /// TLS setup or handshake failed (certificate, protocol).
    Tls {
        server: String,
        what: String,
    },
    CaFile {
        path: PathBuf,
        what: String,
    },
    /// `tls = "starttls"` but the server does not offer STARTTLS: we do not go on in clear.
    NoStartTls {
        server: String,
    },
    Io(io::Error),
    /// The server closed the connection.
    Closed,
    /// The server sent something we could not parse.
    Protocol(String),
    /// The server said BYE (greeting or mid-session), with its text.
    Bye(String),
    /// LOGIN refused: the server's text (e.g. "[AUTHENTICATIONFAILED] Authentication failed.").
    LoginFailed {
        user: String,
        text: String,
    },
    /// LOGIN is disabled on this connection (LOGINDISABLED).
    LoginDisabled,
    /// A command got NO or BAD.
    Rejected {
        command: &'static str,
        status: &'static str,
        text: String,
    },
    BadName(Utf7Error),
}

impl fmt::Display for ImapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImapError::Connect { server, error } => write!(f, "cannot connect to {server}: {error}"),
            ImapError::Tls { server, what } => write!(f, "TLS with {server} failed: {what}"),
            ImapError::CaFile { path, what } => write!(f, "ca_file {}: {what}", path.display()),
            ImapError::NoStartTls { server } => write!(
                f,
                "{server} does not offer STARTTLS; refusing to log in in plain text (use tls = \"implicit\" if it has port 993)"
            ),
            ImapError::Io(e) => write!(f, "IMAP connection: {e}"),
            ImapError::Closed => f.write_str("the IMAP server closed the connection"),
            ImapError::Protocol(what) => write!(f, "IMAP protocol error: {what}"),
            ImapError::Bye(text) => write!(f, "the IMAP server said BYE: {text}"),
            ImapError::LoginFailed { user, text } => write!(f, "login as {user} refused: {text}"),
            ImapError::LoginDisabled => f.write_str("the server disables LOGIN on this connection"),
            ImapError::Rejected { command, status, text } => write!(f, "{command} failed: {status} {text}"),
            ImapError::BadName(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ImapError {}

impl From<io::Error> for ImapError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                ImapError::Closed
            }
            _ => ImapError::Io(e),
        }
    }
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// The system's roots, read once per process (reading /etc/ssl/certs takes a while).
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, ImapError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(native_roots().iter().cloned());
    if let Some(path) = ca_file {
        let ca_err = |what: String| ImapError::CaFile { path: path.to_path_buf(), what };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_err("no PEM certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| ca_err(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Tls { server: String::new(), what: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Wraps `tcp` in TLS for `host` and completes the handshake now, so that a certificate
/// problem is reported as one, not as a later read error.
fn start_tls(tcp: TcpStream, host: &str, server: &str, ca_file: Option<&Path>) -> Result<Transport, ImapError> {
    let tls_err = |what: String| ImapError::Tls { server: server.to_string(), what };
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|e| tls_err(e.to_string()))?;
    let mut conn = rustls::ClientConnection::new(tls_config(ca_file)?, name).map_err(|e| tls_err(e.to_string()))?;
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| tls_err(e.to_string()))?;
    }
    Ok(Transport::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
}

/// One folder as LIST gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    /// The name exactly as on the wire (modified UTF-7); commands send it back unchanged.
    pub wire: Vec<u8>,
    /// The name in UTF-8.
    pub name: String,
    pub delimiter: Option<char>,
    /// LIST attributes as sent, e.g. `\HasNoChildren`, `\Sent`.
    pub attributes: Vec<String>,
    pub special: Option<SpecialUse>,
}

impl Folder {
    /// `\Noselect` / `\NonExistent` folders only hold the hierarchy together.
    pub fn selectable(&self) -> bool {
        !self.attributes.iter().any(|a| a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent"))
    }

    /// Where this folder lives in the store (see names.rs for the rule); `None` for a name
    /// that cannot be a store folder (an empty, `.` or `..` level).
    pub fn store_path(&self) -> Option<Vec<String>> {
        names::store_path(&self.name, self.delimiter, self.special)
    }
}

/// STATUS of one folder. `highest_modseq` is `None` without CONDSTORE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolderStatus {
    pub messages: u32,
    pub uid_next: Option<u32>,
    pub uid_validity: Option<u32>,
    pub highest_modseq: Option<u64>,
}

/// What SELECT/EXAMINE reported about a folder. UIDVALIDITY and UIDNEXT are `None` only
/// for a server that breaks RFC 3501 by leaving them out; `highest_modseq` is `None`
/// without CONDSTORE (or with NOMODSEQ).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selected {
    pub exists: u32,
    pub uid_validity: Option<u32>,
    pub uid_next: Option<u32>,
    pub highest_modseq: Option<u64>,
    /// SELECT with QRESYNC: UIDs expunged since the modseq given.
    pub vanished: Vec<u32>,
    /// SELECT with QRESYNC: messages whose flags changed since the modseq given.
    pub changed: Vec<Fetched>,
}

impl Selected {
    pub(super) fn from_codes(codes: &[Code<'static>]) -> Selected {
        let mut sel = Selected::default();
        for code in codes {
            match code {
                Code::UidValidity(n) => sel.uid_validity = Some(n.get()),
                Code::UidNext(n) => sel.uid_next = Some(n.get()),
                Code::HighestModSeq(n) => sel.highest_modseq = Some(n.get()),
                Code::NoModSeq => sel.highest_modseq = None,
                _ => {}
            }
        }
        sel
    }
}

/// What to ask for in [`Connection::uid_fetch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchWhat {
    /// UID and RFC822.SIZE: enough to plan batches.
    Sizes,
    /// UID FLAGS (and MODSEQ with CONDSTORE): the flag sync.
    Flags,
    /// UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER] (and MODSEQ): a header-only
    /// message.
    Header,
    /// UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[] (and MODSEQ with CONDSTORE): the
    /// whole message, without setting \Seen.
    Full,
}

/// One message of a UID FETCH answer; the fields not asked for are `None`/empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub uid: u32,
    pub size: Option<u32>,
    /// Flags as IMAP spells them (`\Seen`, `$Forwarded`); `\Recent` is left out, being
    /// session state, not the message's.
    pub flags: Vec<String>,
    /// INTERNALDATE in nanoseconds since the epoch.
    pub internal_date: Option<i64>,
    pub modseq: Option<u64>,
    /// BODY[]: the message exactly as the server sent it.
    pub body: Option<Vec<u8>>,
    /// BODY[HEADER]: its header, blank line included.
    pub header: Option<Vec<u8>>,
}

/// A logged-in (or about to be) IMAP connection.
pub struct Connection {
    stream: Transport,
    client: Client,
    server: String,
    /// Upper-cased, refreshed after STARTTLS and after login as RFC 3501 requires.
    capabilities: Vec<String>,
    qresync: bool,
    next_tag: u32,
    read_buf: Box<[u8]>,
    /// Big FETCH literals, read around imap-next (see literals.rs).
    literals: super::literals::Literals,
    /// MULTIAPPEND commands the server took.
    pub(super) multiappends: u64,
}

impl Connection {
    /// Connects as `account` says (host, port, tls, ca_file) and reads the greeting; for
    /// STARTTLS also upgrades, or fails if the server does not offer it.
    pub fn connect(account: &Account) -> Result<Connection, ImapError> {
        let server = format!("{}:{}", account.host, account.port);
        let tcp = TcpStream::connect((account.host.trim_start_matches('[').trim_end_matches(']'), account.port))
            .map_err(|error| ImapError::Connect { server: server.clone(), error })?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let ca = account.ca_file.as_deref();
        let stream = match account.tls {
            Tls::Implicit => start_tls(tcp, &account.host, &server, ca)?,
            Tls::Starttls | Tls::None => Transport::Plain(tcp),
        };
        let mut conn = Connection {
            stream,
            client: Client::new(Options::default()),
            server,
            capabilities: Vec::new(),
            qresync: false,
            next_tag: 0,
            read_buf: vec![0; 64 * 1024].into_boxed_slice(),
            literals: super::literals::Literals::new(),
            multiappends: 0,
        };
        conn.read_greeting()?;
        if account.tls == Tls::Starttls {
            conn.refresh_capabilities()?;
            if !conn.has("STARTTLS") {
                return Err(ImapError::NoStartTls { server: conn.server });
            }
            conn.run("STARTTLS", CommandBody::StartTLS)?;
            let Transport::Plain(tcp) = conn.stream else {
                unreachable!("STARTTLS is only sent on a plain connection")
            };
            conn.stream = start_tls(tcp, &account.host, &conn.server, ca)?;
            // Nothing said before TLS may be trusted after it (RFC 3501 §6.2.1): a fresh
            // client state, and the capabilities asked again.
            let mut options = Options::default();
            options.discard_greeting = true;
            conn.client = Client::new(options);
            conn.capabilities.clear();
        }
        if conn.capabilities.is_empty() {
            conn.refresh_capabilities()?;
        }
        Ok(conn)
    }

    /// Whether the server announced `capability` (case-insensitive).
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c.eq_ignore_ascii_case(capability))
    }

    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    /// Whether ENABLE QRESYNC succeeded after login.
    pub fn qresync_enabled(&self) -> bool {
        self.qresync
    }

    /// LOGIN, then CAPABILITY again (it may grow after login), then ENABLE QRESYNC where
    /// offered.
    pub fn login(&mut self, user: &str, password: &Password) -> Result<(), ImapError> {
        if self.has("LOGINDISABLED") {
            return Err(ImapError::LoginDisabled);
        }
        let body = CommandBody::login(user.to_string(), password.expose().to_string())
            .map_err(|_| ImapError::Protocol("the user name or password cannot be sent in IMAP".into()))?;
        match self.run("LOGIN", body) {
            Ok(_) => {}
            Err(ImapError::Rejected { text, .. }) => return Err(ImapError::LoginFailed { user: user.into(), text }),
            Err(e) => return Err(e),
        }
        self.refresh_capabilities()?;
        if self.has("QRESYNC") {
            let caps = vec![CapabilityEnable::try_from("QRESYNC").expect("QRESYNC is an atom")];
            let body = CommandBody::enable(caps).expect("one capability");
            for data in self.run("ENABLE", body)? {
                if let Data::Enabled { capabilities } = data {
                    self.qresync |= capabilities.iter().any(|c| c.to_string().eq_ignore_ascii_case("QRESYNC"));
                }
            }
        }
        Ok(())
    }

    /// Every folder (`LIST "" "*"`), names decoded. SPECIAL-USE attributes come with plain
    /// LIST on Dovecot and most servers that offer SPECIAL-USE.
    pub fn list(&mut self) -> Result<Vec<Folder>, ImapError> {
        let body = CommandBody::List {
            reference: Mailbox::try_from("").expect("empty reference"),
            mailbox_wildcard: ListMailbox::try_from("*").expect("* is a list wildcard"),
        };
        let mut folders = Vec::new();
        for data in self.run("LIST", body)? {
            if let Data::List { items, delimiter, mailbox } = data {
                let wire = mailbox_bytes(&mailbox);
                let attributes: Vec<String> = items.iter().map(|a| a.to_string()).collect();
                folders.push(Folder {
                    name: names::decode(&wire).map_err(ImapError::BadName)?,
                    wire,
                    delimiter: delimiter.map(|d| d.inner()),
                    special: attributes.iter().find_map(|a| SpecialUse::from_attribute(a)),
                    attributes,
                });
            }
        }
        Ok(folders)
    }

    /// STATUS (MESSAGES UIDNEXT UIDVALIDITY, and HIGHESTMODSEQ with CONDSTORE).
    pub fn status(&mut self, folder: &Folder) -> Result<FolderStatus, ImapError> {
        let mut items =
            vec![StatusDataItemName::Messages, StatusDataItemName::UidNext, StatusDataItemName::UidValidity];
        if self.has("CONDSTORE") || self.has("QRESYNC") {
            items.push(StatusDataItemName::HighestModSeq);
        }
        let mailbox = Mailbox::try_from(folder.wire.clone())
            .map_err(|_| ImapError::Protocol(format!("cannot send the mailbox name {:?}", folder.name)))?;
        let body = CommandBody::Status { mailbox, item_names: items.into() };
        let mut st = FolderStatus::default();
        for data in self.run("STATUS", body)? {
            if let Data::Status { mailbox, items } = data {
                if mailbox_bytes(&mailbox) != folder.wire {
                    continue;
                }
                for item in items.iter() {
                    match *item {
                        StatusDataItem::Messages(n) => st.messages = n,
                        StatusDataItem::UidNext(n) => st.uid_next = Some(n.get()),
                        StatusDataItem::UidValidity(n) => st.uid_validity = Some(n.get()),
                        StatusDataItem::HighestModSeq(n) => st.highest_modseq = Some(n),
                        _ => {}
                    }
                }
            }
        }
        Ok(st)
    }

    /// EXAMINE `folder` (read-only: nothing we do there changes a flag) and collect what
    /// the server says about it.
    pub fn examine(&mut self, folder: &Folder) -> Result<Selected, ImapError> {
        let mailbox = Mailbox::try_from(folder.wire.clone())
            .map_err(|_| ImapError::Protocol(format!("cannot send the mailbox name {:?}", folder.name)))?;
        let body = CommandBody::Examine { mailbox, parameters: Vec::new() };
        let (data, codes) = self.run_with_codes("EXAMINE", body)?;
        let mut sel = Selected::from_codes(&codes);
        for d in data {
            if let Data::Exists(n) = d {
                sel.exists = n;
            }
        }
        Ok(sel)
    }

    /// UID FETCH `set` (IMAP syntax, e.g. `5:*` or `3,7,9`) in the selected folder.
    /// Answers without a UID (unsolicited flag updates) are left out. Beware that `n:*`
    /// also answers with the highest UID when it is below `n` (RFC 3501 §9: `*` is the
    /// highest UID, and `n:m` is the same as `m:n`): the caller filters.
    pub fn uid_fetch(&mut self, set: &str, what: FetchWhat) -> Result<Vec<Fetched>, ImapError> {
        self.uid_fetch_since(set, what, None).map(|(f, _)| f)
    }

    /// [`Connection::uid_fetch`] of the messages whose MODSEQ is above `changed_since`
    /// (CONDSTORE), with the UIDs of `set` expunged since then when QRESYNC is enabled
    /// (`VANISHED (EARLIER)`, the second value).
    pub fn uid_fetch_since(
        &mut self,
        set: &str,
        what: FetchWhat,
        changed_since: Option<u64>,
    ) -> Result<(Vec<Fetched>, Vec<u32>), ImapError> {
        let sequence_set =
            SequenceSet::try_from(set).map_err(|_| ImapError::Protocol(format!("bad UID set {set:?}")))?;
        let condstore = self.has("CONDSTORE") || self.has("QRESYNC");
        let mut items = vec![MessageDataItemName::Uid];
        if what != FetchWhat::Flags {
            items.push(MessageDataItemName::Rfc822Size);
        }
        if what != FetchWhat::Sizes {
            items.push(MessageDataItemName::Flags);
            if condstore {
                items.push(MessageDataItemName::ModSeq);
            }
        }
        match what {
            FetchWhat::Header | FetchWhat::Full => {
                let section = (what == FetchWhat::Header).then_some(Section::Header(None));
                items.push(MessageDataItemName::InternalDate);
                items.push(MessageDataItemName::BodyExt { section, partial: None, peek: true });
            }
            FetchWhat::Sizes | FetchWhat::Flags => {}
        }
        let mut modifiers = Vec::new();
        if let Some(m) = changed_since.and_then(NonZeroU64::new) {
            modifiers.push(FetchModifier::ChangedSince(m));
            if self.qresync {
                modifiers.push(FetchModifier::Vanished);
            }
        }
        let body = CommandBody::Fetch { sequence_set, macro_or_item_names: items.into(), uid: true, modifiers };
        let mut out = Vec::new();
        let mut vanished = Vec::new();
        for d in self.run("UID FETCH", body)? {
            match d {
                Data::Fetch { items, .. } => {
                    let f = self.fetched(items.into_inner());
                    if f.uid != 0 {
                        out.push(f);
                    }
                }
                Data::Vanished { known_uids, .. } => vanished.extend(uids_of(&known_uids)),
                _ => {}
            }
        }
        Ok((out, vanished))
    }

    /// LOGOUT and close; the server's BYE is expected here.
    pub fn logout(mut self) -> Result<(), ImapError> {
        match self.run("LOGOUT", CommandBody::Logout) {
            Ok(_) | Err(ImapError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn refresh_capabilities(&mut self) -> Result<(), ImapError> {
        let mut caps = Vec::new();
        for data in self.run("CAPABILITY", CommandBody::Capability)? {
            if let Data::Capability(list) = data {
                caps.extend(list.as_ref().iter().map(|c| c.to_string().to_ascii_uppercase()));
            }
        }
        self.capabilities = caps;
        Ok(())
    }

    fn read_greeting(&mut self) -> Result<(), ImapError> {
        loop {
            if let Event::GreetingReceived { greeting } = self.next_event()? {
                if greeting.kind == GreetingKind::Bye {
                    return Err(ImapError::Bye(greeting.text.to_string()));
                }
                if let Some(Code::Capability(list)) = &greeting.code {
                    self.capabilities = list.as_ref().iter().map(|c| c.to_string().to_ascii_uppercase()).collect();
                }
                return Ok(());
            }
        }
    }

    /// Runs one command to its tagged completion; the untagged data it brought, or the
    /// server's NO/BAD text.
    pub(super) fn run(
        &mut self,
        name: &'static str,
        body: CommandBody<'static>,
    ) -> Result<Vec<Data<'static>>, ImapError> {
        self.run_with_codes(name, body).map(|(data, _)| data)
    }

    /// [`Connection::run`], also returning the response codes of the untagged and tagged
    /// status lines it brought (SELECT's `[UIDVALIDITY n]` and the like).
    #[allow(clippy::type_complexity)]
    pub(super) fn run_with_codes(
        &mut self,
        name: &'static str,
        body: CommandBody<'static>,
    ) -> Result<(Vec<Data<'static>>, Vec<Code<'static>>), ImapError> {
        // The answers of the previous command were all handled: a captured literal left
        // belongs to none of this one's.
        self.literals.forget();
        let (tag, handle) = self.enqueue(body);
        let mut data = Vec::new();
        let mut codes = Vec::new();
        loop {
            match self.next_event()? {
                Event::DataReceived { data: d } => data.push(d),
                Event::StatusReceived { status: Status::Untagged(StatusBody { code: Some(code), .. }) } => {
                    codes.push(code)
                }
                Event::StatusReceived { status: Status::Tagged(t) } if t.tag == tag => {
                    let status = match t.body.kind {
                        StatusKind::Ok => {
                            codes.extend(t.body.code);
                            return Ok((data, codes));
                        }
                        StatusKind::No => "NO",
                        StatusKind::Bad => "BAD",
                    };
                    let text = server_words(&Status::Tagged(t));
                    return Err(ImapError::Rejected { command: name, status, text });
                }
                Event::StatusReceived { status: bye @ Status::Bye(_) } if name != "LOGOUT" => {
                    return Err(ImapError::Bye(server_words(&bye)));
                }
                Event::CommandRejected { handle: h, status, .. } if h == handle => {
                    let text = server_words(&status);
                    return Err(ImapError::Rejected { command: name, status: "NO", text });
                }
                _ => {}
            }
        }
    }

    /// A tag not used before on this connection.
    pub(super) fn fresh_tag(&mut self) -> Tag<'static> {
        self.next_tag += 1;
        Tag::try_from(format!("m{}", self.next_tag)).expect("m<number> is a valid tag")
    }

    /// MULTIAPPEND commands the server took on this connection.
    pub fn multiappends(&self) -> u64 {
        self.multiappends
    }

    /// Writes a whole command imap-next cannot express; only while no other command is in
    /// flight (every `run` is complete before the next starts), so nothing interleaves.
    pub(super) fn send_raw(&mut self, command: &[u8]) -> Result<(), ImapError> {
        self.literals.forget();
        self.stream.write_all(command)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Queue a command under a fresh tag (sent by the next I/O); its tag and handle.
    pub(super) fn enqueue(&mut self, body: CommandBody<'static>) -> (Tag<'static>, CommandHandle) {
        let tag = self.fresh_tag();
        let handle = self.client.enqueue_command(Command { tag: tag.clone(), body });
        (tag, handle)
    }

    /// The client state machine's next event, doing whatever socket I/O it asks for first.
    pub(super) fn next_event(&mut self) -> Result<Event, ImapError> {
        loop {
            match self.client.next() {
                Ok(event) => return Ok(event),
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    let n = self.stream.read(&mut self.read_buf)?;
                    if n == 0 {
                        return Err(ImapError::Closed);
                    }
                    let client = &mut self.client;
                    self.literals.feed(&self.read_buf[..n], &mut |b| client.enqueue_input(b));
                }
                Err(Interrupt::Io(Io::Output(bytes))) => {
                    self.stream.write_all(&bytes)?;
                    self.stream.flush()?;
                }
                Err(Interrupt::Error(e)) => return Err(ImapError::Protocol(describe(&e))),
            }
        }
    }
}

impl Connection {
    /// One FETCH answer's items as a [`Fetched`] (uid 0 if it had no UID), with the
    /// literals read around imap-next put back.
    pub(super) fn fetched(&mut self, items: Vec<MessageDataItem<'static>>) -> Fetched {
        fetched(items, &mut |d| self.literals.take(d))
    }
}

/// One FETCH answer's items as a [`Fetched`] (uid 0 if it had no UID); `bytes` gives the
/// bytes of a literal's data.
fn fetched(
    items: Vec<MessageDataItem<'static>>,
    bytes: &mut dyn FnMut(std::borrow::Cow<'_, [u8]>) -> Vec<u8>,
) -> Fetched {
    let mut f = Fetched::default();
    for item in items {
        match item {
            MessageDataItem::Uid(u) => f.uid = u.get(),
            MessageDataItem::Rfc822Size(n) => f.size = Some(n),
            MessageDataItem::Flags(list) => {
                f.flags = list
                    .iter()
                    .filter_map(|fl| match fl {
                        FlagFetch::Flag(flag) => Some(flag.to_string()),
                        FlagFetch::Recent => None,
                    })
                    .collect()
            }
            MessageDataItem::InternalDate(t) => f.internal_date = t.as_ref().timestamp_nanos_opt(),
            MessageDataItem::ModSeq(n) => f.modseq = Some(n.get()),
            // NIL for BODY[] would be a server bug; keep it as "no body" so the caller
            // notices instead of storing an empty message.
            MessageDataItem::BodyExt { section: None, origin: None, data } => {
                f.body = data.0.map(|s| bytes(s.into_inner()));
            }
            MessageDataItem::BodyExt { section: Some(Section::Header(None)), origin: None, data } => {
                f.header = data.0.map(|s| bytes(s.into_inner()));
            }
            _ => {}
        }
    }
    f
}

/// The UIDs a sequence set names (a server's `*` cannot appear in what it sends).
pub(super) fn uids_of(set: &SequenceSet) -> Vec<u32> {
    set.iter(NonZeroU32::MAX).map(|u| u.get()).collect()
}

pub(super) fn mailbox_bytes(m: &Mailbox<'_>) -> Vec<u8> {
    match m {
        Mailbox::Inbox => b"INBOX".to_vec(),
        Mailbox::Other(o) => o.as_ref().to_vec(),
    }
}

/// The server's words exactly as it sent them after the tag and status (response code
/// included, e.g. `[AUTHENTICATIONFAILED] Authentication failed.`): the response is encoded
/// back to its wire form, so nothing is lost to a lossy rendering of each type.
pub(super) fn server_words(status: &Status<'_>) -> String {
    let line = ResponseCodec::default().encode(&Response::Status(status.clone())).dump();
    let line = String::from_utf8_lossy(&line);
    // "TAG NO rest", "* OK rest", "* BYE rest": the words start after the second space.
    let mut parts = line.trim_end().splitn(3, ' ');
    parts.nth(2).unwrap_or("").to_string()
}

fn describe(e: &ClientError) -> String {
    let excerpt = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
    match e {
        ClientError::ExpectedCrlfGotLf { discarded_bytes } => {
            format!("a line ended in LF, not CRLF: {:?}", excerpt(discarded_bytes.declassify()))
        }
        ClientError::MalformedMessage { discarded_bytes } => {
            format!("malformed response: {:?}", excerpt(discarded_bytes.declassify()))
        }
        ClientError::ResponseTooLong { discarded_bytes } => {
            format!("response longer than the limit ({} bytes)", discarded_bytes.declassify().len())
        }
    }
}
