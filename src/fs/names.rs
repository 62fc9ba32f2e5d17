//! Name rules of the mounted view: which names are editors' and rsync's scratch files, and
//! how a conflicting save's content is named.

/// Scratch names never become messages: dot files (`.name.swp`, rsync's `.name.XXXXXX`),
/// backups (`name~`), autosaves (`#name#`) and vim's write test file `4913`.
pub fn is_scratch(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || name == "4913"
}

/// `NAME (conflict N).eml` for the Nth conflict copy of `name` (the extension kept, or added).
pub fn conflict_name(name: &str, n: u32) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ".eml"),
    };
    let mut stem = stem.to_string();
    let suffix = format!(" (conflict {n}){ext}");
    // Keep the whole name within 255 bytes, cutting the stem on a character boundary.
    while stem.len() + suffix.len() > 255 {
        stem.pop();
    }
    format!("{stem}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_the_ones_editors_and_rsync_use() {
        for n in [".m.eml.swp", ".m.eml.AbC123", "m.eml~", "#m.eml#", "4913", ".hidden"] {
            assert!(is_scratch(n), "{n}");
        }
        for n in ["m.eml", "2024-01-01 Hello.eml", "sedAbC123", "#", "49130", "a~b"] {
            assert!(!is_scratch(n), "{n}");
        }
    }

    #[test]
    fn conflict_copies_keep_the_extension() {
        assert_eq!(conflict_name("Hello.eml", 1), "Hello (conflict 1).eml");
        assert_eq!(conflict_name("noext", 2), "noext (conflict 2).eml");
        let long = "é".repeat(127) + ".eml";
        assert!(conflict_name(&long, 3).len() <= 255);
    }
}
