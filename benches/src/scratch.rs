//! Scratch directories: one fresh directory per run, and inside it one fresh directory per
//! sample, removed after the sample so that every sample starts from an empty directory on
//! the same file system. All file operations go through `popdb_io::RealFs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use popdb_io::{FileSystem, RealFs};

/// The run's directory; removed (with what is left in it) on drop.
#[derive(Debug)]
pub struct Scratch {
    root: PathBuf,
    next: AtomicU64,
}

impl Scratch {
    /// Creates a fresh directory named `name` inside `parent` (which is created if needed).
    ///
    /// # Errors
    /// If the directory exists already (a fresh one is the point) or cannot be created.
    pub fn create(fs: &RealFs, parent: &Path, name: &str) -> Result<Scratch> {
        fs.create_dir_all(parent)
            .with_context(|| format!("create {}", parent.display()))?;
        let root = parent.join(name);
        ensure!(
            !fs.exists(&root)?,
            "{} exists already; refusing to reuse it",
            root.display()
        );
        fs.create_dir_all(&root)
            .with_context(|| format!("create {}", root.display()))?;
        Ok(Scratch {
            root,
            next: AtomicU64::new(1),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A new empty directory for one sample, named after it.
    pub fn sample_dir(&self, fs: &RealFs, label: &str) -> Result<PathBuf> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(format!("{n:04}-{label}"));
        fs.create_dir_all(&dir)
            .with_context(|| format!("create {}", dir.display()))?;
        fs.sync_dir(&self.root)
            .with_context(|| format!("sync {}", self.root.display()))?;
        Ok(dir)
    }
}

/// Seconds since the Unix epoch: a run's start, in its directory name and its JSON.
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A run's directory name, unique across runs and processes: `<kind>-<unix>-<pid>`.
pub fn run_name(kind: &str, unix: u64) -> String {
    format!("{kind}-{unix}-{}", std::process::id())
}

/// Creates a fresh run directory named by [`run_name`] inside `parent` and returns it.
///
/// # Errors
/// If it exists already (a fresh one is the point) or cannot be created.
pub fn create_run_dir(parent: &Path, kind: &str, unix: u64) -> Result<PathBuf> {
    let root = parent.join(run_name(kind, unix));
    ensure!(!root.exists(), "{} exists already", root.display());
    std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    Ok(root)
}

/// Removes a sample directory and the files in it (sample directories hold no
/// subdirectories).
pub fn remove_dir(fs: &RealFs, dir: &Path) -> Result<()> {
    for name in fs
        .read_dir(dir)
        .with_context(|| format!("list {}", dir.display()))?
    {
        let path = dir.join(&name);
        fs.remove_file(&path)
            .with_context(|| format!("remove {}", path.display()))?;
    }
    fs.remove_dir(dir)
        .with_context(|| format!("remove {}", dir.display()))
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let fs = RealFs::without_io_uring();
        if let Ok(names) = fs.read_dir(&self.root) {
            for name in names {
                // Best effort: a directory left behind is reported below.
                let _ = remove_dir(&fs, &self.root.join(name));
            }
        }
        if fs.remove_dir(&self.root).is_err() {
            eprintln!("note: could not remove {}", self.root.display());
        }
    }
}
