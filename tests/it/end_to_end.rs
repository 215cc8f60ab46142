//! The sender delivering to the real receiver.
