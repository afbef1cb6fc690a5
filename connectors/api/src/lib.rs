//! The interfaces every data source implements, between the planner (upstream) and the
//! concrete connectors (downstream): [`EventSource`] for one branch of `streams` (hot or
//! cold), [`Watermark`] for the hot/cold boundary `W`, and [`Sources`], the set the binary
//! wires together. [`EventFilter`] reads the listener and time range a scan asks for out of
//! DataFusion's pushed-down filters, so every connector prunes the same way.

mod batch;
mod error;
mod filter;
mod source;

pub use batch::StreamsBatchBuilder;
pub use error::{SourceError, SourceErrorKind};
pub use filter::{EventFilter, TimeRange};
pub use source::{EventSource, FixedWatermark, Sources, Watermark};
