//! Every message that crosses a process boundary, each with its codec: what nsrun sends
//! its init (`init`), what `--list`, `--stop`, `--join` and `--disconnect` say to a
//! running nsrun (`control`), what nsrun and the holder say to each other (`holder`), and the
//! kernel's change notifications the holder follows (`events`: nf_tables, forwarding). Decoders
//! refuse (None) anything but an exact, well-formed message; each has round-trip and
//! golden-bytes tests and a fuzz target (src/fuzz.rs).

pub mod control;
pub mod events;
pub mod holder;
pub mod init;
pub mod network;

pub use holder::{Reply, Request};
