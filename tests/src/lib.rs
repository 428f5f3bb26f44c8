//! End-to-end tests for Guestloop live in `tests/`; this library holds nothing but the crate root.
