//! Counts in what the commands print: "1 message", "2 messages", "0 messages". The one
//! place that picks singular or plural, so that no summary says "1 folders".

/// `n` followed by `one` when n is 1, else by `many`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1u64, "folder", "folders"), "1 folder");
        assert_eq!(count(0u64, "folder", "folders"), "0 folders");
        assert_eq!(count(2u32, "body", "bodies"), "2 bodies");
    }
}
