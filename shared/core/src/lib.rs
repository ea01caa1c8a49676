//! Domain types shared by every careloop crate.
//!
//! Values that come from outside (HTTP bodies, configuration, files, the database) are parsed into
//! these types once, at the edge, so the rest of the code never re-validates. Every parse error names
//! the field it was about. This crate performs no I/O.

mod error;
mod ids;
mod kinds;
mod values;

pub use error::ParseError;
pub use ids::*;
pub use kinds::*;
pub use values::*;
