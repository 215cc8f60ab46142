//! Receiver tests over real HTTP on loopback.
