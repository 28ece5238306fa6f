//! ingest: see ARCHITECTURE.md.
