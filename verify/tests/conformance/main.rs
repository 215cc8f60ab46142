//! Conformance tests of the `verify` crate: shared vectors, an independent implementation,
//! and properties over arbitrary input.

mod cross_check;
mod properties;
mod python_peers;
mod vectors;
