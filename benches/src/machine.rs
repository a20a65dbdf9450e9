//! Facts about the machine a run measured: the file system under the data directory (and
//! whether it is RAM-backed, which makes fdatasync free and durability numbers meaningless),
//! the kernel, the commit, the CPU count.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// The file system holding a directory.
#[derive(Clone, Debug)]
pub struct FsInfo {
    /// The `statfs` magic number.
    pub magic: u64,
    /// Its name: from /proc/self/mountinfo where found, else from the magic number.
    pub name: String,
    /// The mount point, where /proc/self/mountinfo names it.
    pub mount_point: Option<String>,
    /// The device, where /proc/self/mountinfo names it.
    pub source: Option<String>,
}

impl FsInfo {
    /// Whether the file system keeps its data in RAM, so that fdatasync costs nothing.
    pub fn is_ram_backed(&self) -> bool {
        self.magic == TMPFS_MAGIC || self.magic == RAMFS_MAGIC || self.name == "tmpfs"
    }

    pub fn to_json(&self) -> Value {
        json!({
            "type": self.name,
            "magic": format!("{:#x}", self.magic),
            "mount_point": self.mount_point,
            "source": self.source,
        })
    }
}

/// The file system of `dir`, which must exist.
pub fn file_system_of(dir: &Path) -> Result<FsInfo> {
    let stat = rustix::fs::statfs(dir).with_context(|| format!("statfs {}", dir.display()))?;
    // Magic numbers are 32-bit; the field is a signed word on most targets.
    let magic = (stat.f_type as u64) & 0xffff_ffff;
    let canonical = dir
        .canonicalize()
        .with_context(|| format!("canonicalize {}", dir.display()))?;
    let mount = mount_of(&canonical);
    Ok(FsInfo {
        magic,
        name: mount
            .as_ref()
            .map_or_else(|| magic_name(magic).to_string(), |m| m.fs_type.clone()),
        mount_point: mount.as_ref().map(|m| m.point.clone()),
        source: mount.map(|m| m.source),
    })
}

struct Mount {
    point: String,
    fs_type: String,
    source: String,
}

/// The mount holding `path` (the longest mount point that is a prefix of it), from
/// /proc/self/mountinfo. `None` where that file is missing or unreadable.
fn mount_of(path: &Path) -> Option<Mount> {
    // Reading procfs metadata, not PopDB data: no durability claim rests on it.
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<Mount> = None;
    for line in info.lines() {
        // Fields: id parent major:minor root mount_point options [optional...] - type source
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|&f| f == "-") else {
            continue;
        };
        let (Some(&mount_point), Some(&fs_type), Some(&source)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        let point = unescape_mountinfo(mount_point);
        if !path.starts_with(&point) {
            continue;
        }
        // Later lines are later mounts; on a tie the later one hides the earlier.
        if best.as_ref().is_none_or(|b| point.len() >= b.point.len()) {
            best = Some(Mount {
                point,
                fs_type: fs_type.to_string(),
                source: unescape_mountinfo(source),
            });
        }
    }
    best
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && let Ok(value) = u8::from_str_radix(digits, 8)
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn magic_name(magic: u64) -> &'static str {
    match magic {
        0xef53 => "ext2/ext3/ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0xf2f5_2010 => "f2fs",
        0x2fc1_2fc1 => "zfs",
        0x6969 => "nfs",
        0x794c_7630 => "overlayfs",
        TMPFS_MAGIC => "tmpfs",
        RAMFS_MAGIC => "ramfs",
        _ => "unknown",
    }
}

/// The commit checked out, with `-dirty` if the work tree has changes; `None` outside git.
pub fn git_commit() -> Option<String> {
    let head = command_output("git", &["rev-parse", "HEAD"])?;
    let dirty = command_output("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// `uname -srvm`, or `None` where uname cannot run.
pub fn kernel() -> Option<String> {
    command_output("uname", &["-srvm"])
}

/// Logical CPUs available to this process.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// The CPU's model name from /proc/cpuinfo; `None` where it is missing.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, name)| name.trim().to_string())
}

/// Total memory from /proc/meminfo, in bytes; `None` where it is missing.
pub fn memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = info
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn names_tmpfs_as_ram_backed() {
        let fs = FsInfo {
            magic: TMPFS_MAGIC,
            name: "tmpfs".into(),
            mount_point: None,
            source: None,
        };
        assert!(fs.is_ram_backed());
    }
}
