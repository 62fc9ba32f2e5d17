//! `-o` mount options: msgfs's own, and the generic ones an fstab line or `mount -t
//! fuse.msgfs` carries, which are taken or ignored with a note for the log, never refused
//! (a refused option would make a line of /etc/fstab fail at boot).

use crate::fs::MountConfig;

/// What `-o` asked for.
#[derive(Debug)]
pub struct MountOptions {
    pub config: MountConfig,
    /// `-o debug`: log at debug level.
    pub debug: bool,
    /// One line per option that was ignored, and why, for the daemon's log (info level).
    pub notes: Vec<String>,
}

/// Why a generic option is ignored, or None for an option that is not a generic one.
fn ignored(o: &str) -> Option<&'static str> {
    let key = o.split_once('=').map_or(o, |(k, _)| k);
    Some(match key {
        "auto" | "noauto" | "user" | "users" | "nouser" | "owner" | "group" | "_netdev" | "nofail" | "defaults"
        | "comment" => "it is for mount(8) and systemd, not for the filesystem",
        k if k.starts_with("x-") => "it is for mount(8) and systemd, not for the filesystem",
        "nodev" | "dev" | "nosuid" | "suid" => {
            "msgfs does not apply it (fusermount3 makes a user's mount nosuid,nodev)"
        }
        "noatime" | "relatime" | "strictatime" | "atime" | "nodiratime" | "diratime" | "lazytime" | "nolazytime"
        | "noexec" | "exec" | "sync" | "async" | "dirsync" => "msgfs does not apply it",
        "fsname" | "subtype" => {
            "a msgfs mount is always named msgfs:STORE, of type fuse.msgfs (msgfs umount finds it by that)"
        }
        "auto_unmount" => "the daemon unmounts when it ends on SIGTERM, SIGINT or SIGHUP",
        "default_permissions" => "msgfs always has the kernel check permissions",
        _ => return None,
    })
}

pub fn parse(opts: &[String]) -> Result<MountOptions, String> {
    let mut c = MountConfig::default();
    let (mut debug, mut notes) = (false, Vec::new());
    for o in opts.iter().flat_map(|s| s.split(',')).filter(|s| !s.is_empty()) {
        match o.split_once('=') {
            None if o == "ro" => c.read_only = true,
            None if o == "rw" => c.read_only = false,
            None if o == "allow_other" => c.allow_other = true,
            None if o == "debug" => debug = true,
            None if o == "trash" => c.trash = true,
            Some(("snapshot_timeout_ms", v)) => {
                c.snapshot_timeout_ms =
                    v.parse().map_err(|_| format!("-o snapshot_timeout_ms={v}: not a number of milliseconds"))?
            }
            Some(("threads", v)) => c.threads = v.parse().map_err(|_| format!("-o threads={v}: not a number"))?,
            Some(("commit", "durable")) => c.lazy_ms = None,
            Some(("commit", v)) if v == "lazy" || v.starts_with("lazy:") => {
                let ms = match v.strip_prefix("lazy:") {
                    None => crate::store::lazy::DEFAULT_DELAY_MS,
                    Some(n) => n.parse().ok().filter(|n| (1..=60_000).contains(n)).ok_or_else(|| {
                        format!("-o commit={v}: give the delay in milliseconds, 1 to 60000 (commit=lazy:50)")
                    })?,
                };
                c.lazy_ms = Some(ms);
            }
            Some(("commit", v)) => {
                return Err(format!("-o commit={v}: use commit=durable, commit=lazy or commit=lazy:MS"))
            }
            _ => match ignored(o) {
                Some(why) => notes.push(format!("mount option {o} ignored: {why}")),
                None => {
                    return Err(format!(
                    "unknown mount option {o:?} (known: ro, rw, allow_other, trash, threads=N, snapshot_timeout_ms=N, \
                         commit=durable|lazy[:MS], debug, and the generic ones of fstab(5), which are ignored)"
                ))
                }
            },
        }
    }
    Ok(MountOptions { config: c, debug, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every generic option the issue names, as fstab lines and systemd carry them.
    const GENERIC: &str = "rw,noatime,relatime,nodev,nosuid,noexec,exec,auto,noauto,user,users,_netdev,nofail,\
                           x-systemd.automount,x-systemd.idle-timeout=60,default_permissions,fsname=mail,\
                           subtype=x,auto_unmount,defaults";

    #[test]
    fn the_generic_options_of_an_fstab_line_are_accepted_each_with_a_note() {
        let p = parse(&[GENERIC.to_string()]).unwrap();
        assert!(!p.config.read_only);
        // Everything but rw (taken) is noted as ignored, by name.
        let names: Vec<&str> = GENERIC.split(',').filter(|o| *o != "rw").collect();
        assert_eq!(p.notes.len(), names.len(), "{:?}", p.notes);
        for (note, name) in p.notes.iter().zip(&names) {
            assert!(note.starts_with(&format!("mount option {name} ignored: ")), "{note}");
        }
    }

    #[test]
    fn ro_and_debug_are_taken_and_an_unknown_option_is_refused_by_name() {
        let p = parse(&["ro,debug".into(), "threads=2".into()]).unwrap();
        assert!(p.config.read_only && p.debug && p.notes.is_empty());
        assert_eq!(p.config.threads, 2);
        assert!(!p.config.trash);
        assert!(parse(&["rw,trash".into()]).unwrap().config.trash);
        let e = parse(&["rw,frobnicate".into()]).unwrap_err();
        assert!(e.contains("\"frobnicate\""), "{e}");
    }
}
