//! Outlook PST files: reading them ([`reader`]), turning their items into RFC 5322
//! ([`rfc5322`]), importing them into a store and mounting them read-only.

pub mod item;
pub mod rfc5322;
pub mod rtf;
