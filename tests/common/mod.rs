//! Shared helpers of the integration tests: where the project's Python, assets and binary
//! are, and how to run the Python reference scripts.
#![allow(dead_code)] // each test binary uses a different subset

pub mod reference;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder under `assets/` (fetched by `make setup`), which must exist.
pub fn asset(relative: &str) -> PathBuf {
    let path = root().join("assets").join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `make setup` first (it fetches the test assets)",
        path.display()
    );
    path
}

/// The project's Python (`.venv`, made by `make setup`), or DICOM_XAI_PYTHON.
pub fn python() -> PathBuf {
    let path = std::env::var_os("DICOM_XAI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run `make setup` first (it creates .venv)",
        path.display()
    );
    path
}

/// Runs a script of `tests/support/` with the project's Python; panics with its output when
/// it fails.
pub fn run_support_script(script: &str, args: &[&std::ffi::OsStr]) -> Output {
    let output = Command::new(python())
        .arg(root().join("tests/support").join(script))
        .args(args)
        .output()
        .expect("cannot start python");
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The dicom-xai binary built for these tests.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dicom-xai"))
}

/// Every regular file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    files
}

/// Runs a program that must be installed (by `make setup`) and returns its output.
pub fn tool(program: &str, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): run `make setup` first"))
}
