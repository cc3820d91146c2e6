//! Stamps the build so a pair can refuse a mismatched peer: version, protocol, git commit.
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    println!("cargo:rustc-env=REARGUARD_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    // In a worktree .git is a file: ask git where HEAD and the index are, or cargo sees a
    // missing path and re-runs this (and rebuilds the binary) on every build.
    for what in ["HEAD", "index"] {
        let path = Command::new("git")
            .args(["rev-parse", "--git-path", what])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| format!(".git/{what}"));
        println!("cargo:rerun-if-changed={path}");
    }
}
