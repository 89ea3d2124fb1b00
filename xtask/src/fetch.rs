//! `cargo xtask fetch-teachers`: the binary's `crosskd fetch-teachers` (the named teachers of
//! `models/teachers.toml` into hf-hub's cache; see `crosskd_train::teachers::fetch`), for
//! scripts that already run xtask.

use anyhow::Result;
use crosskd_train::cli::FetchTeachersArgs;

/// Runs `cargo xtask fetch-teachers`.
pub fn run(args: &FetchTeachersArgs) -> Result<()> {
    crosskd_train::teachers::fetch::fetch_teachers(&args.options())
}
