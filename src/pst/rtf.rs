//! RTF bodies: HTML de-encapsulation and plain text (being written).
