//! bundle: see ARCHITECTURE.md.
