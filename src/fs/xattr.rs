//! Extended attributes: `user.*` stored with each message, and the computed `user.msgfs.*`
//! properties (never listed, so `rsync -X` and `cp -a` do not copy them), read-only but for
//! the message's flags.

use fuser::Errno;

use std::sync::Arc;

use super::errno::{err, FsError, FsResult};
use super::inodes::InodeRef;
use super::store_fs::StoreFs;
use super::store_fs::{Done, Op};
use crate::control::*;
use crate::store::{flags, AttrChange, Error, XattrChange};

/// How much of a message is read to find its header properties.
const HEADER_PREFIX: usize = 256 << 10;

impl StoreFs {
    fn computed(&self, r: InodeRef, name: &str) -> FsResult<Vec<u8>> {
        let id = match r {
            InodeRef::Version { id, .. } | InodeRef::Message(id) => id,
            InodeRef::Folder(f) if name == XATTR_SYNC => return self.sync_folder_get(f),
            // A new file has no entry id (nor anything else) before its first save.
            InodeRef::Node(_) | InodeRef::Folder(_) => return err(Errno::ENODATA),
        };
        match name {
            XATTR_ENTRYID => return Ok(self.store.entry_id_hex(id).into_bytes()),
            XATTR_ORIGIN => {
                let ix = self.store.index();
                let v = ix.message(id)?.xattr(XATTR_ORIGIN).map(<[u8]>::to_vec);
                return v.ok_or(FsError::Errno(Errno::ENODATA));
            }
            XATTR_VERSION => return Ok(self.store.index().message(id)?.version().to_string().into_bytes()),
            XATTR_FLAGS => {
                let ix = self.store.index();
                let mut v = flags::to_letters(ix.message(id)?.flags());
                for k in ix.message_keywords(id) {
                    v.push(' ');
                    v.push_str(k);
                }
                return Ok(v.into_bytes());
            }
            _ => {}
        }
        let view = self.store.open_message(id)?;
        let mut buf = vec![0u8; (view.size as usize).min(HEADER_PREFIX)];
        view.file.read_exact_at(&mut buf, 0).map_err(|e| FsError::Store(Error::io("read message headers", e)))?;
        let p = crate::mime::parse_props(&buf);
        let v = match name {
            XATTR_SUBJECT => p.subject,
            XATTR_FROM => p.from,
            XATTR_DATE => p.date,
            XATTR_MESSAGE_ID => p.message_id,
            _ => None,
        };
        v.map(String::into_bytes).ok_or(FsError::Errno(Errno::ENODATA))
    }

    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        let r = self.resolve(ino)?;
        if name.starts_with(XATTR_PREFIX) {
            return self.computed(r, name);
        }
        if !name.starts_with("user.") {
            // No labels, ACLs or trusted attributes here. ENOTSUP (not ENODATA) lets
            // `ls -l` and `cp -a` learn that once per listing instead of asking for each file.
            return err(Errno::ENOTSUP);
        }
        let found = match r {
            InodeRef::Version { id, .. } | InodeRef::Message(id) => {
                self.store.index().message(id)?.xattr(name).map(<[u8]>::to_vec)
            }
            InodeRef::Node(n) => {
                let ov = self.overlay();
                let node = ov.nodes.get(&n).ok_or(FsError::Errno(Errno::ENOENT))?;
                node.xattrs.iter().find(|(k, _)| **k == *name).map(|(_, v)| v.to_vec())
            }
            InodeRef::Folder(_) => None,
        };
        found.ok_or(FsError::Errno(Errno::ENODATA))
    }

    /// The names, each NUL-terminated. The computed `user.msgfs.*` ones are not listed.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let names: Vec<String> = match self.resolve(ino)? {
            // Those msgfs keeps with a message (the trash's origin) are hidden as computed.
            InodeRef::Version { id, .. } | InodeRef::Message(id) => self
                .store
                .index()
                .message(id)?
                .xattrs()
                .iter()
                .filter(|(k, _)| !k.starts_with(XATTR_PREFIX))
                .map(|(k, _)| k.to_string())
                .collect(),
            InodeRef::Node(n) => {
                let ov = self.overlay();
                let node = ov.nodes.get(&n).ok_or(FsError::Errno(Errno::ENOENT))?;
                node.xattrs.iter().map(|(k, _)| k.to_string()).collect()
            }
            InodeRef::Folder(_) => vec![],
        };
        let mut out = Vec::new();
        for n in names {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    pub fn setxattr(self: &Arc<Self>, ino: u64, name: &str, value: &[u8], flags: i32, done: Done<()>) {
        let change = XattrChange::Set {
            name: name.to_string(),
            value: value.to_vec(),
            create: flags & libc::XATTR_CREATE != 0,
            replace: flags & libc::XATTR_REPLACE != 0,
        };
        self.change_xattr(ino, name, change, done)
    }

    pub fn removexattr(self: &Arc<Self>, ino: u64, name: &str, done: Done<()>) {
        self.change_xattr(ino, name, XattrChange::Remove { name: name.to_string() }, done)
    }

    fn change_xattr(self: &Arc<Self>, ino: u64, name: &str, change: XattrChange, done: Done<()>) {
        match self.plan_xattr(ino, name, change) {
            Ok(Some(op)) => self.commit(vec![op], |_, _| Ok(()), done),
            Ok(None) => done(Ok(())),
            Err(e) => done(Err(e)),
        }
    }

    /// An xattr change: made in the overlay at once (a new file), or an operation to commit.
    fn plan_xattr(&self, ino: u64, name: &str, change: XattrChange) -> FsResult<Option<Op>> {
        if name == XATTR_FLAGS {
            return self.plan_flags(ino, change).map(Some);
        }
        if name.starts_with(XATTR_PREFIX) {
            return err(Errno::EPERM);
        }
        if !name.starts_with("user.") {
            return err(Errno::ENOTSUP);
        }
        self.writable()?;
        if name.len() > 255 {
            return err(Errno::ERANGE);
        }
        match self.resolve(ino)? {
            InodeRef::Version { id, .. } | InodeRef::Message(id) => {
                Ok(Some(Op::MessageMeta { id, change: AttrChange { xattrs: vec![change], ..Default::default() } }))
            }
            InodeRef::Node(n) => {
                let mut ov = self.overlay();
                let node = ov.nodes.get_mut(&n).ok_or(FsError::Errno(Errno::ENOENT))?;
                let pos = node.xattrs.iter().position(|(k, _)| **k == *name);
                match (change, pos) {
                    (XattrChange::Set { create: true, .. }, Some(_)) => err(Errno::EEXIST),
                    (XattrChange::Set { replace: true, .. }, None) => err(Errno::ENODATA),
                    (XattrChange::Set { value, .. }, Some(i)) => {
                        node.xattrs[i].1 = value.into_boxed_slice();
                        Ok(None)
                    }
                    (XattrChange::Set { value, .. }, None) => {
                        node.xattrs.push((name.into(), value.into_boxed_slice()));
                        Ok(None)
                    }
                    (XattrChange::Remove { .. }, Some(i)) => {
                        node.xattrs.remove(i);
                        Ok(None)
                    }
                    (XattrChange::Remove { .. }, None) => err(Errno::ENODATA),
                }
            }
            InodeRef::Folder(_) => err(Errno::ENOTSUP),
        }
    }

    /// Setting `user.msgfs.flags` to letters (any order), then optionally a space and IMAP
    /// keywords separated by spaces, sets the message's flags and keywords (a trailing
    /// newline, as `echo` leaves, is ignored); removing it clears both. An unknown letter
    /// or a keyword with control characters is EINVAL.
    fn plan_flags(&self, ino: u64, change: XattrChange) -> FsResult<Op> {
        self.writable()?;
        let id = match self.resolve(ino)? {
            InodeRef::Version { id, .. } | InodeRef::Message(id) => id,
            // As for reading: a new file has no flags before its first save.
            InodeRef::Node(_) => return err(Errno::ENODATA),
            InodeRef::Folder(_) => return err(Errno::ENOTSUP),
        };
        let (bits, keywords) = match change {
            XattrChange::Set { create: true, .. } => return err(Errno::EEXIST),
            XattrChange::Set { value, .. } => {
                let text = std::str::from_utf8(&value).map_err(|_| FsError::Errno(Errno::EINVAL))?;
                let text = text.trim_end_matches(['\n', '\r']);
                let (letters, rest) = text.split_once(' ').unwrap_or((text, ""));
                let bits = flags::from_letters(letters).map_err(|_| FsError::Errno(Errno::EINVAL))?;
                (bits, rest.split(' ').filter(|k| !k.is_empty()).map(str::to_string).collect())
            }
            XattrChange::Remove { .. } => (0, Vec::new()),
        };
        // One change: the flags and the keywords land in one frame, or neither does.
        let change = AttrChange { flags: Some(bits), keywords: Some(keywords), ..Default::default() };
        Ok(Op::MessageMeta { id, change })
    }
}
