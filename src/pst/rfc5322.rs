//! Writing a PST [`Item`](super::item::Item) as RFC 5322 text (being written).
