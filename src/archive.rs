//! archive: see ARCHITECTURE.md.
