//! Percept's runtime.
