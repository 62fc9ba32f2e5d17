//! Read-ahead across messages. A program that reads a folder's messages one after another
//! in listing order (`grep -r`, `cat *`, `tar`, `rsync`) waits, with a cold cache, for each
//! message's disk reads in turn: the kernel's readahead stops at the end of each file, and a
//! READ reaching the daemon is answered only once the object is read. When the first READs
//! of messages arrive in the order the folder was last listed, threads of this module read
//! the next messages' contents ahead, several at a time, so that their disk reads overlap
//! and the READs that follow find the bytes in the page cache.
//!
//! A hint only, never an answer: what it reads goes through the store's own read path and
//! is dropped; only the page cache keeps it. A message saved or deleted meanwhile is read as
//! it is then, or skipped. Nothing waits for it, and a full queue drops work.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::store::{Id, Store};

/// Threads reading ahead: each has one read in flight, so this many disk reads overlap.
const THREADS: usize = 4;
/// How far ahead of the reader it goes, at most (messages); the window starts at
/// [`FIRST_WINDOW`] and doubles with each first READ that follows the last in order.
const MAX_WINDOW: usize = 32;
const FIRST_WINDOW: usize = 4;
/// Bytes read ahead of each message: its start; the kernel's own readahead takes the rest
/// of a large message once it is being read.
const HEAD_BYTES: usize = 128 << 10;
/// Folders whose listing order is kept.
const STREAMS: usize = 4;
/// Messages queued for the threads at most; more is dropped.
const QUEUE: usize = 256;

/// One folder's listing order, and how far a reader following it has got.
struct Stream {
    folder: Id,
    /// The messages as the folder was last listed (opendir), in that order.
    order: Arc<[Id]>,
    /// Where the next first READ is expected if the reader keeps to the order.
    next: usize,
    /// Read ahead up to here (exclusive).
    ahead: usize,
    window: usize,
}

#[derive(Default)]
pub struct Prefetch {
    /// The folders listed last, the latest at the end.
    streams: Mutex<Vec<Stream>>,
    workers: Mutex<Option<Workers>>,
}

struct Workers {
    jobs: SyncSender<Id>,
    threads: Vec<JoinHandle<()>>,
}

impl Prefetch {
    /// Folder `folder` was listed: its messages, in the order the reader will see them.
    pub fn listed(&self, folder: Id, order: Vec<Id>) {
        let mut s = self.streams.lock().unwrap();
        s.retain(|x| x.folder != folder);
        if s.len() >= STREAMS {
            s.remove(0);
        }
        s.push(Stream { folder, order: order.into(), next: 0, ahead: 0, window: 0 });
    }

    /// A first READ of message `id` (at offset 0) reached the daemon: its bytes were not in
    /// the kernel's cache. If it follows the previous one in its folder's listing order,
    /// read the next messages ahead.
    pub fn first_read(&self, store: &Store, id: Id, folder: Id) {
        let todo: Vec<Id> = {
            let mut streams = self.streams.lock().unwrap();
            let Some(st) = streams.iter_mut().find(|s| s.folder == folder) else { return };
            let at = if st.order.get(st.next) == Some(&id) {
                st.next
            } else {
                match st.order.iter().position(|x| *x == id) {
                    Some(p) => p,
                    None => return,
                }
            };
            if at == st.next && at > 0 {
                st.window = (st.window * 2).clamp(FIRST_WINDOW, MAX_WINDOW);
            } else {
                // Not in sequence (or the first): no reading ahead until it is.
                st.window = 0;
                st.ahead = at + 1;
            }
            st.next = at + 1;
            let from = st.ahead.max(at + 1);
            let to = (at + 1 + st.window).min(st.order.len());
            st.ahead = st.ahead.max(to);
            st.order.get(from..to).map(<[Id]>::to_vec).unwrap_or_default()
        };
        if todo.is_empty() {
            return;
        }
        let mut w = self.workers.lock().unwrap();
        let w = w.get_or_insert_with(|| Workers::start(store));
        for id in todo {
            match w.jobs.try_send(id) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => break,
            }
        }
    }

    /// End the threads (before the store closes); waits for the reads in flight.
    pub fn stop(&self) {
        if let Some(w) = self.workers.lock().unwrap().take() {
            drop(w.jobs);
            for t in w.threads {
                let _ = t.join();
            }
        }
    }
}

impl Workers {
    fn start(store: &Store) -> Workers {
        let (jobs, rx) = sync_channel::<Id>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..THREADS)
            .filter_map(|i| {
                let (store, rx) = (store.clone(), rx.clone());
                std::thread::Builder::new().name(format!("msgfs-ahead-{i}")).spawn(move || read_ahead(&store, &rx)).ok()
            })
            .collect();
        Workers { jobs, threads }
    }
}

fn read_ahead(store: &Store, jobs: &Mutex<Receiver<Id>>) {
    let mut buf = vec![0u8; HEAD_BYTES];
    loop {
        // The lock is held only while waiting for the next message, not while reading it.
        let Ok(id) = jobs.lock().unwrap().recv() else { return };
        // Whatever fails here (the message is gone, the store is locked) fails again, and is
        // reported, when the reader itself gets there.
        let Ok(pin) = store.pin_message(id) else { continue };
        let want = (pin.size as usize).min(HEAD_BYTES);
        if let Ok(f) = pin.file() {
            let _ = f.read_at(&mut buf[..want], 0);
        }
    }
}
