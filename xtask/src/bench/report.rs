//! Writes benchmark results into `docs/benchmarks.md` between named markers.

use std::path::PathBuf;

use anyhow::Context;

/// The workspace root the benchmarks read their scripts from and write their results to:
/// `CROSSKD_ROOT` when set, else the checkout xtask was compiled in while it still holds the
/// benchmark scripts, else the current directory. The last case is a prebuilt xtask carried to a
/// machine without a Rust toolchain (`xtask/bench/gpu_session.sh`), which runs from the root of a
/// copy of the working tree at another path.
pub fn workspace_root() -> PathBuf {
    if let Some(root) = std::env::var_os("CROSSKD_ROOT") {
        return PathBuf::from(root);
    }
    let compiled_in = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    if compiled_in.join("xtask/bench/train_step.py").is_file() {
        return compiled_in;
    }
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// Path of the benchmarks document.
fn benchmarks_md() -> PathBuf {
    workspace_root().join("docs/benchmarks.md")
}

/// Replaces the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in
/// `docs/benchmarks.md` with `markdown`, opened by the commit it was produced at, appending the
/// marked section when it is absent.
pub fn write_section(name: &str, markdown: &str) -> anyhow::Result<()> {
    let path = benchmarks_md();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let open = format!("<!-- bench:{name} -->");
    let close = format!("<!-- /bench:{name} -->");
    let section = format!(
        "{open}\nProduced at commit {}.\n\n{}\n{close}",
        commit_description(),
        markdown.trim_end()
    );
    let updated = match (text.find(&open), text.find(&close)) {
        (Some(start), Some(end)) if end > start => {
            format!(
                "{}{}{}",
                &text[..start],
                section,
                &text[end + close.len()..]
            )
        }
        (None, None) => format!("{}\n{section}\n", text.trim_end()),
        _ => anyhow::bail!(
            "{}: unbalanced markers for section `{name}`",
            path.display()
        ),
    };
    std::fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))
}

/// One line describing the machine: CPU model (from /proc/cpuinfo), thread count.
pub fn machine_description(threads: usize) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} logical cores, {threads} threads used")
}

/// The commit the workspace is at, e.g. `` `37e80ca` `` or `` `37e80ca` with uncommitted
/// changes `` (changes to `docs/benchmarks.md` itself not counted), so a generated section says
/// which code produced it.
pub fn commit_description() -> String {
    let root = workspace_root();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) => {
            // The document itself is left out: it holds the previous run's output.
            let dirty = git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!docs/benchmarks.md",
            ])
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("`{hash}` with uncommitted changes")
            } else {
                format!("`{hash}`")
            }
        }
        None => "unknown (not a git checkout)".to_string(),
    }
}
