//! Helpers to start receivers on port 0, in process or as real processes.
