//! Import types and everything needed to turn a file into validated rows, without I/O of
//! its own: the caller hands in a `Read`.
//!
//! decode (bytes -> UTF-8) -> csv (records with line numbers) -> header mapping -> values.

pub mod csv;
pub mod decode;
pub mod reading;
pub mod safeguard;
pub mod stored;
pub mod types;
pub mod values;

pub use csv::{CsvError, CsvReader, Delimiter, Record};
pub use decode::{DecodeError, Encoding};
pub use reading::{ReadSetting, reading};
pub use safeguard::{Breach, Safeguard, SafeguardSetting};
pub use stored::{LayoutChange, Relayout, content_hash, encode_values, layout_change, layout_of};
pub use types::{
    ColumnKind, ImportType, ImportTypes, LoadMode, OnDelete, PersonColumns, PhotoRules, Reference, Related,
    Strictness, TypeError, TypeFormat,
};
pub use values::{HeaderError, HeaderMap, Notes, RowError, Values};
