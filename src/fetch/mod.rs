//! fetch: see ARCHITECTURE.md.
