//! Sender tests against fake endpoints.
