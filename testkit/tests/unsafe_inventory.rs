//! Keeps each crate's `UNSAFE.md` equal to its code (`io/UNSAFE.md`, `lsm/UNSAFE.md`): the
//! files under `<crate>/src` that hold `unsafe` blocks, functions, impls or traits, and how
//! many each holds, must match the document's `### <path>` headings and their
//! `Unsafe blocks: N` lines. Every other crate root forbids unsafe code, so the compiler
//! keeps them out of this list.
//!
//! The scan is a grep, not a parser: it drops `//` comments and string literals on each line
//! and then looks for the keyword `unsafe` followed by `{`, `fn`, `impl`, `trait` or `extern`.
//! Lint names such as `unsafe_code` are not the keyword and do not count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use popdb_io::{FileSystem, RealFs};

/// The crates allowed unsafe code, each with its `UNSAFE.md`.
const CRATES: [&str; 2] = ["io", "lsm"];

/// The workspace root (this test lives in `testkit/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace")
        .to_path_buf()
}

/// Where unsafe code is in crate `krate`, as the code says: path (relative to the
/// workspace root) -> count.
fn scan_sources(krate: &str) -> BTreeMap<String, usize> {
    let crate_dir = &workspace().join(krate);
    let mut found = BTreeMap::new();
    let mut pending: Vec<PathBuf> = vec![crate_dir.join("src")];
    let fs = RealFs::without_io_uring();
    // Bounded by the size of the source tree; no symlink cycles live in src/.
    while let Some(dir) = pending.pop() {
        for name in fs.read_dir(&dir).expect("read src dir") {
            let path = dir.join(name);
            if std::fs::metadata(&path).expect("stat").is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                let count = text.lines().map(count_unsafe_on_line).sum::<usize>();
                if count > 0 {
                    let relative = path.strip_prefix(crate_dir).expect("under crate dir");
                    found.insert(format!("{krate}/{}", relative.display()), count);
                }
            }
        }
    }
    found
}

/// How many unsafe items or blocks start on `line`, ignoring comments and strings.
fn count_unsafe_on_line(line: &str) -> usize {
    let code = strip_comment_and_strings(line);
    let mut count = 0;
    let mut rest = code.as_str();
    while let Some(at) = rest.find("unsafe") {
        let before_ok = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let after = &rest[at + "unsafe".len()..];
        let after_word = after.trim_start();
        let is_keyword = before_ok
            && after.starts_with(|c: char| c.is_whitespace() || c == '{')
            && ["{", "fn ", "impl", "trait ", "extern "]
                .iter()
                .any(|next| after_word.starts_with(next));
        count += usize::from(is_keyword);
        rest = after;
    }
    count
}

/// `line` without its `//` comment and with string-literal contents blanked. Good enough for
/// rustfmt-formatted code; raw strings and block comments are not expected around `unsafe`.
fn strip_comment_and_strings(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '/' if chars.peek() == Some(&'/') => break,
            _ => out.push(c),
        }
    }
    out
}

/// Where unsafe code is in crate `name`, as its UNSAFE.md says: path -> count.
fn read_inventory(name: &str) -> BTreeMap<String, usize> {
    let doc_path = workspace().join(name).join("UNSAFE.md");
    let doc = std::fs::read_to_string(&doc_path).expect("the crate's UNSAFE.md exists");
    let mut listed = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(path) = line.strip_prefix("### ") {
            let path = path.trim().to_owned();
            assert!(
                Path::new(&path).extension().is_some_and(|e| e == "rs"),
                "UNSAFE.md heading {path:?} is not a source file"
            );
            assert!(!listed.contains_key(&path), "UNSAFE.md lists {path} twice");
            current = Some(path);
        } else if let Some(count) = line.trim().strip_prefix("- Unsafe blocks:") {
            let path = current
                .take()
                .expect("`Unsafe blocks:` line under a ### heading");
            let count = count
                .trim()
                .parse()
                .expect("`Unsafe blocks:` takes a number");
            listed.insert(path, count);
        }
    }
    assert!(
        current.is_none(),
        "UNSAFE.md entry {current:?} lacks an `Unsafe blocks:` line"
    );
    listed
}

#[test]
fn unsafe_inventory_matches_sources() {
    for name in CRATES {
        let found = scan_sources(name);
        let listed = read_inventory(name);
        assert!(!found.is_empty(), "no unsafe code found under {name}/src");
        assert_eq!(
            found, listed,
            "{name}/UNSAFE.md is stale: the code has unsafe in {found:?} but the document \
             lists {listed:?}; update the document (module, invariant, benchmark, tests)"
        );
    }
}

#[test]
fn unsafe_scan_counts_keywords_not_lint_names_or_comments() {
    assert_eq!(count_unsafe_on_line("let m = unsafe { map(f) }?;"), 1);
    assert_eq!(count_unsafe_on_line("pub unsafe fn f() {}"), 1);
    assert_eq!(count_unsafe_on_line("unsafe impl Send for X {}"), 1);
    assert_eq!(
        count_unsafe_on_line("let a = unsafe{ x }; let b = unsafe { y };"),
        2
    );
    assert_eq!(
        count_unsafe_on_line("#![expect(unsafe_code, reason = \"x\")]"),
        0
    );
    assert_eq!(
        count_unsafe_on_line("// SAFETY: this unsafe { block } is fine"),
        0
    );
    assert_eq!(count_unsafe_on_line("let s = \"unsafe { not code }\";"), 0);
    assert_eq!(count_unsafe_on_line("let not_unsafe = 1; // unsafe fn"), 0);
}
