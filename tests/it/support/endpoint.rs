//! A fake Target URL whose answers a test controls.
