//! `train-depth`: train a crosskd student on the depth task (the options of `crosskd train`, with
//! the task fixed, so no config file is needed).

fn main() -> anyhow::Result<()> {
    crosskd_train::cli::task_main(crosskd_train::Task::Depth)?;
    Ok(())
}
