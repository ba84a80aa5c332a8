//! A scratch directory for one test, shared by the test suites of both crates
//! (`tenure-cli`'s includes this file by path).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

/// A fresh directory under the system's temporary directory, removed when dropped (also
/// while unwinding from a failed assertion).
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<tmp>/<what>-<random>`, created.
    pub fn new(what: &str) -> TempDir {
        let random = RandomState::new().hash_one(std::time::Instant::now());
        let dir = std::env::temp_dir().join(format!("{what}-{random:016x}"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// The path of `name` inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
