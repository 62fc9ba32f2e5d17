//! The namespace: mkdir, unlink, rmdir and rename, over stored folders and messages and this
//! mount's overlay of scratch files, new files and shadows.

use fuser::Errno;

use super::errno::{err, FsError, FsResult};
use std::sync::Arc;

use super::store_fs::*;

impl StoreFs {
    pub fn mkdir(self: &Arc<Self>, parent: u64, name: &str, mode: u32, uid: u32, gid: u32, done: Done<Attr>) {
        or_answer!(done, self.writable());
        let folder = or_answer!(done, self.folder_of(parent));
        if self.name_taken(&self.overlay(), folder, name) {
            return done(err(Errno::EEXIST));
        }
        or_answer!(done, crate::store::index::check_name(name));
        let id = self.store.alloc_id();
        let attrs = Self::new_attrs(mode, libc::S_IFDIR, uid, gid);
        let op = Op::FolderCreate { id, parent: folder, name: name.to_string(), attrs };
        self.commit(
            vec![op],
            move |fs, _| {
                fs.inodes.remember(id, InodeRef::Folder(id));
                fs.folder_attr(id)
            },
            done,
        );
    }

    pub fn unlink(self: &Arc<Self>, parent: u64, name: &str, done: Done<()>) {
        or_answer!(done, self.writable());
        let folder = or_answer!(done, self.folder_of(parent));
        let mut ov = self.overlay();
        let Some(found) = self.find(&ov, folder, name) else { return done(err(Errno::ENOENT)) };
        match found {
            Found::Folder(_) => done(err(Errno::EISDIR)),
            Found::Node(n) => {
                ov.names.remove(&(folder, name.to_string()));
                if let Some(node) = ov.nodes.get_mut(&n) {
                    node.unlinked = true;
                }
                Self::node_closed_if_idle(&mut ov, n);
                drop(ov);
                done(Ok(()))
            }
            Found::Shadow(s) => {
                ov.names.remove(&(folder, name.to_string()));
                if !s.attached {
                    return done(Ok(()));
                }
                // The message was only renamed away in this mount: deleting it under its
                // scratch name deletes it (unless it is gone already).
                let ops = or_answer!(done, self.removal_ops(&ov, s.msg));
                ov.hidden.retain(|_, m| *m != s.msg);
                drop(ov);
                if ops.len() > 1 {
                    return self.commit(ops, |_, _| Ok(()), done);
                }
                self.store.submit(
                    Op::MessageDelete { id: s.msg },
                    Box::new(move |r| match r {
                        Ok(_) | Err(Error::NotFound) => done(Ok(())),
                        Err(e) => done(Err(e.into())),
                    }),
                );
            }
            Found::Message(m) => {
                let ops = or_answer!(done, self.removal_ops(&ov, m));
                drop(ov);
                self.commit(ops, |_, _| Ok(()), done);
            }
        }
    }

    fn node_closed_if_idle(ov: &mut Overlay, n: u64) {
        if ov.nodes.get(&n).map(|x| x.open == 0).unwrap_or(false) {
            if let Some(x) = ov.nodes.get_mut(&n) {
                x.open = 1;
            }
            Self::node_closed(ov, n);
        }
    }

    pub fn rmdir(self: &Arc<Self>, parent: u64, name: &str, done: Done<()>) {
        or_answer!(done, self.writable());
        let folder = or_answer!(done, self.folder_of(parent));
        let ov = self.overlay();
        match self.find(&ov, folder, name) {
            Some(Found::Folder(f)) => {
                if ov.in_folder(f).next().is_some() {
                    return done(err(Errno::ENOTEMPTY));
                }
                drop(ov);
                self.commit(vec![Op::FolderDelete { id: f }], |_, _| Ok(()), done);
            }
            Some(_) => done(err(Errno::ENOTDIR)),
            None => done(err(Errno::ENOENT)),
        }
    }

    pub fn rename(
        self: &Arc<Self>,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        flags: u32,
        done: Done<()>,
    ) {
        match self.plan_rename(parent, name, newparent, newname, flags) {
            Err(e) => done(Err(e)),
            Ok(Renamed::Done) => done(Ok(())),
            Ok(Renamed::Commit(ops, then)) => self.commit(ops, move |fs, out| then(fs, out), done),
        }
    }

    /// What a rename does: the overlay's part is done here and now; what the store must do
    /// comes back as operations, with the step that follows their commit.
    fn plan_rename(&self, parent: u64, name: &str, newparent: u64, newname: &str, flags: u32) -> FsResult<Renamed> {
        self.writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return err(Errno::EINVAL);
        }
        let sf = self.folder_of(parent)?;
        let df = self.folder_of(newparent)?;
        if sf == df && name == newname {
            return Ok(Renamed::Done);
        }
        crate::store::index::check_name(newname)?;
        let mut ov = self.overlay();
        let src = self.find(&ov, sf, name).ok_or(FsError::Errno(Errno::ENOENT))?;
        let dst = self.find(&ov, df, newname);
        if flags & libc::RENAME_NOREPLACE != 0 && dst.is_some() {
            return err(Errno::EEXIST);
        }
        let skey = (sf, name.to_string());
        let dkey = (df, newname.to_string());
        let newname = newname.to_string();
        match src {
            Found::Folder(id) => {
                let mv = Op::FolderMove { id, parent: df, name: newname };
                match dst {
                    None => Ok(Renamed::Commit(vec![mv], nothing_after())),
                    Some(Found::Folder(t)) => {
                        let empty = self.store.index().is_empty_folder(t);
                        if !empty || ov.in_folder(t).next().is_some() {
                            return err(Errno::ENOTEMPTY);
                        }
                        Ok(Renamed::Commit(vec![Op::FolderDelete { id: t }, mv], nothing_after()))
                    }
                    Some(_) => err(Errno::ENOTDIR),
                }
            }
            Found::Message(id) => {
                if is_scratch(&newname) {
                    // An editor's backup step: show the message under the scratch name, hide
                    // its own name; the store does not change (but for a stored message of
                    // that scratch name, which must go first).
                    let first = self.drop_overlaid(&mut ov, &dkey, dst, Some(id))?;
                    ov.names.insert(dkey, Overlaid::Shadow(Shadow { msg: id, attached: true }));
                    ov.hidden.insert(skey, id);
                    return Ok(Renamed::Done.after(first));
                }
                self.message_to(&mut ov, id, dkey, dst)
            }
            Found::Shadow(s) => {
                if is_scratch(&newname) {
                    // Over another shadow of the same message (a backup over an older one):
                    // one is left, hiding the message's name if either did.
                    let s = match dst {
                        Some(Found::Shadow(d)) if d.msg == s.msg => Shadow { attached: s.attached || d.attached, ..s },
                        _ => s,
                    };
                    let first = self.drop_overlaid(&mut ov, &dkey, dst, Some(s.msg))?;
                    ov.names.remove(&skey);
                    ov.names.insert(dkey, Overlaid::Shadow(s));
                    return Ok(Renamed::Done.after(first));
                }
                if !s.attached {
                    // A backup whose message has a new version since: the name shows that
                    // message, which a user still sees under its own name and must keep
                    // there. Let mv copy it instead.
                    return err(Errno::EXDEV);
                }
                if let Some(Found::Folder(_)) = dst {
                    return err(Errno::EISDIR);
                }
                let home = ov.hidden.iter().find(|(_, m)| **m == s.msg).map(|(k, _)| k.clone());
                if home.as_ref() == Some(&dkey) {
                    // Moved back where it came from, over a new file written there meanwhile
                    // if any.
                    let first = self.drop_overlaid(&mut ov, &dkey, dst, Some(s.msg))?;
                    ov.names.remove(&skey);
                    ov.hidden.remove(&dkey);
                    return Ok(Renamed::Done.after(first));
                }
                ov.names.remove(&skey);
                if let Some(h) = home {
                    ov.hidden.remove(&h);
                }
                self.message_to(&mut ov, s.msg, dkey, dst)
            }
            Found::Node(n) => {
                let is_new_message = matches!(ov.nodes.get(&n).map(|x| &x.kind), Some(NodeKind::NewMessage));
                if is_scratch(&newname) || is_new_message {
                    if is_new_message && (is_scratch(&newname) || dst.is_some()) {
                        return err(Errno::EXDEV);
                    }
                    let first = self.drop_overlaid(&mut ov, &dkey, dst, None)?;
                    ov.names.remove(&skey);
                    ov.names.insert(dkey, Overlaid::Node(n));
                    if let Some(node) = ov.nodes.get_mut(&n) {
                        node.folder = df;
                        node.name = newname;
                    }
                    return Ok(Renamed::Done.after(first));
                }
                self.commit_scratch(ov, n, skey, dkey, dst)
            }
        }
    }

    /// Message `id` renamed to the ordinary (not scratch) name `dkey`, where this mount shows
    /// `dst`. Over a message, it becomes that message's new version. A new file not saved yet
    /// there is replaced. A name hidden by a shadow (`mv m m~`) is free in this mount but the
    /// store still holds its message there: as a new file saved under that name does, the
    /// message renamed there becomes the hidden message's new version, so an edit that
    /// renames its result into place keeps the entry id. A free name: the message moves.
    fn message_to(&self, ov: &mut Overlay, id: Id, dkey: (Id, String), dst: Option<Found>) -> FsResult<Renamed> {
        let first = match dst {
            Some(Found::Folder(_)) => return err(Errno::EISDIR),
            Some(Found::Message(t)) => return self.rename_over(id, t, dkey, false),
            d => self.drop_overlaid(ov, &dkey, d, Some(id))?,
        };
        let renamed = match ov.hidden.get(&dkey).copied() {
            Some(hidden) => self.rename_over(id, hidden, dkey, true)?,
            None => Renamed::Commit(self.move_ops(id, dkey.0, dkey.1), nothing_after()),
        };
        Ok(renamed.after(first))
    }

    /// Message `src` renamed over message `dst` at `dkey`: `dst` gets `src`'s content as a
    /// new version and keeps its entry id. `unhide`: `dkey` was hidden by a shadow of `dst`,
    /// and shows `dst` again once this is durable.
    fn rename_over(&self, src: Id, dst: Id, dkey: (Id, String), unhide: bool) -> FsResult<Renamed> {
        let (op, moved) = self.store.rename_over_op(src, dst)?;
        Ok(Renamed::Commit(
            vec![op],
            Box::new(move |fs, out| {
                if unhide {
                    fs.overlay().unhide(&dkey, dst);
                }
                // Descriptors open for writing follow the file to its new name, as on a local
                // disk: their next save is `dst`'s next version.
                if let Some(out) = out {
                    fs.hand_over_writers(src, moved, dst, &dkey, out.version);
                }
                // The kernel moved the source's inode to the target's name: not necessarily
                // its current version's (a save's expiry of the source's name may not have
                // reached the kernel, or missed it after a rename), so every inode of the
                // source now leads to the target.
                fs.inodes.retarget_message(src, InodeRef::Message(dst));
                fs.expire_entry(dkey.0, &dkey.1);
                Ok(())
            }),
        ))
    }

    /// Remove whatever the overlay shows at a name about to be replaced by `incoming` (the
    /// message that goes there, if any). A stored message there (with a scratch name: only
    /// from outside this mount) must be deleted from the store for the name to be reused;
    /// so must the message of an attached shadow there, whose last name this was (as its
    /// unlink deletes it), unless it is the one coming in. That deletion is returned, to
    /// commit first.
    fn drop_overlaid(
        &self,
        ov: &mut Overlay,
        key: &(Id, String),
        dst: Option<Found>,
        incoming: Option<Id>,
    ) -> FsResult<Option<Op>> {
        match dst {
            None => Ok(None),
            Some(Found::Node(n)) => {
                ov.names.remove(key);
                if let Some(node) = ov.nodes.get_mut(&n) {
                    node.unlinked = true;
                }
                Self::node_closed_if_idle(ov, n);
                Ok(None)
            }
            Some(Found::Shadow(s)) => {
                ov.names.remove(key);
                if !s.attached || incoming == Some(s.msg) {
                    return Ok(None);
                }
                ov.hidden.retain(|_, m| *m != s.msg);
                // Already gone (nothing else can delete it, but a failed delete must not
                // fail the rename): nothing to commit.
                Ok(self.store.index().entry(s.msg).map(|_| Op::MessageDelete { id: s.msg }))
            }
            Some(Found::Folder(_)) => err(Errno::EISDIR),
            Some(Found::Message(m)) => Ok(Some(Op::MessageDelete { id: m })),
        }
    }

    /// A scratch file renamed to a message name becomes that message's new version (rsync,
    /// editors that write a temporary file), or a new message.
    fn commit_scratch(
        &self,
        mut ov: MutexGuard<'_, Overlay>,
        n: u64,
        skey: (Id, String),
        dkey: (Id, String),
        dst: Option<Found>,
    ) -> FsResult<Renamed> {
        // A name hidden by a shadow (`mv m m~`) still holds its message in the store: the file
        // becomes that message's new version (also over a new file written there meanwhile).
        let hidden = ov.hidden.get(&dkey).copied();
        let mut ops = Vec::new();
        let target = match dst {
            Some(Found::Message(t)) => Some(t),
            Some(Found::Folder(_)) => return err(Errno::EISDIR),
            d => {
                ops.extend(self.drop_overlaid(&mut ov, &dkey, d, None)?);
                hidden
            }
        };
        let node = ov.nodes.get(&n).ok_or(FsError::Errno(Errno::ENOENT))?;
        let NodeKind::Scratch { file } = &node.kind else { return err(Errno::EXDEV) };
        let (file, open, attrs, xattrs) = (file.clone(), node.open, node.attrs, node.xattrs.clone());
        drop(ov);
        let new_in = Some((dkey.0, dkey.1.clone()));
        if let Some(data) = file.in_memory() {
            // Small, held in memory: its bytes go into the log frame (a copy, which a
            // descriptor still open on it cannot change).
            ops.push(self.store.commit_bytes_op(data, target, new_in, attrs, xattrs));
            return Ok(Renamed::Commit(ops, Self::scratch_renamed(n, open, skey, dkey, hidden)));
        }
        let path = file.path().to_path_buf();
        // A scratch file still open by someone keeps being written through its descriptor:
        // commit a copy, so the committed object stays immutable.
        let staged: PathBuf = if open > 0 {
            let copy = self.store.staging_path("c");
            let vfs = self.store.vfs();
            let from = io(vfs.open(&path, OpenMode::Read), "open a scratch file")?;
            let to = io(vfs.open(&copy, OpenMode::CreateNew), "copy a scratch file")?;
            let data = io(from.read_all(), "read a scratch file")?;
            io(to.write_all_at(&data, 0), "copy a scratch file")?;
            copy
        } else {
            path.clone()
        };
        ops.push(self.store.commit_file_op(&staged, target, new_in, attrs, xattrs)?);
        Ok(Renamed::Commit(ops, Self::scratch_renamed(n, open, skey, dkey, hidden)))
    }

    /// What follows a scratch file's rename into a message once it is durable: the name
    /// and the node go (an open one stays, unlinked), the inode is the message's.
    fn scratch_renamed(n: u64, open: u32, skey: (Id, String), dkey: (Id, String), hidden: Option<Id>) -> Box<Then> {
        Box::new(move |fs, out| {
            let Some(out) = out else { return Ok(()) };
            let mut ov = fs.overlay();
            ov.names.remove(&skey);
            if open > 0 {
                if let Some(node) = ov.nodes.get_mut(&n) {
                    node.unlinked = true;
                }
            } else {
                ov.nodes.remove(&n);
            }
            if hidden.is_some() {
                ov.unhide(&dkey, out.id);
            }
            drop(ov);
            fs.inodes.retarget(n, InodeRef::Message(out.id));
            fs.expire_entry(dkey.0, &dkey.1);
            Ok(())
        })
    }
}

/// The step after a rename's operations are durable (the last one's outcome).
type Then = dyn FnOnce(&Arc<StoreFs>, Option<Outcome>) -> FsResult<()> + Send;

/// A rename: done in the overlay alone, or operations for the store and what follows them.
enum Renamed {
    Done,
    Commit(Vec<Op>, Box<Then>),
}

fn nothing_after() -> Box<Then> {
    Box::new(|_, _| Ok(()))
}

impl Renamed {
    /// The same rename with `first` (the deletion of what it replaces) committed before it.
    fn after(self, first: Option<Op>) -> Renamed {
        match (first, self) {
            (None, r) => r,
            (Some(op), Renamed::Done) => Renamed::Commit(vec![op], nothing_after()),
            (Some(op), Renamed::Commit(mut ops, then)) => {
                ops.insert(0, op);
                Renamed::Commit(ops, then)
            }
        }
    }
}
