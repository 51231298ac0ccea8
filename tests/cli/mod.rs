//! Helpers shared by the tests that run the `percept` binary: a fresh directory per test,
//! running the command in it, and asserting success or a one-line error with exit 1.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path in the repository, as a string for the command line.
pub fn repo(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p).display().to_string()
}

/// An empty directory of its own for test `name` of the crate `group`.
pub fn tmpdir(group: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("percept-{group}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `percept ARGS` run in `dir`.
pub fn percept(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_percept")).current_dir(dir).args(args).output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `percept ARGS`, which must succeed; its standard output and error.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let o = percept(dir, args);
    assert_eq!(o.status.code(), Some(0), "{args:?}:\n{}", text(&o.stderr));
    text(&o.stdout) + &text(&o.stderr)
}

/// Runs `percept ARGS`, which must fail with exit 1 and one error line containing
/// `message`, without a panic.
pub fn fails(dir: &Path, args: &[&str], message: &str) {
    let o = percept(dir, args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{args:?}:\n{err}");
    assert!(err.contains(message), "{args:?}: expected `{message}` in:\n{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "one error line: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
