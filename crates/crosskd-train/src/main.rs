//! The `crosskd` command-line tool: `train`, `eval`, `predict`, `import-weights`.

use anyhow::Context;
use clap::Parser;
use crosskd_train::cli::{
    eval_command, import_weights_command, predict_command, train_command, Command, CrosskdCli,
};

fn main() -> anyhow::Result<()> {
    crosskd_train::memory::keep_freed_memory();
    let cli = CrosskdCli::parse();
    match &cli.command {
        Command::Train(args) => {
            let (_, code) = train_command(args, None)?;
            if code != crosskd_train::cli::EXIT_FINISHED {
                std::process::exit(code);
            }
        }
        Command::Eval { run, split, device } => eval_command(run, split, device.as_deref())
            .with_context(|| format!("evaluating {}", run.display()))?,
        Command::Predict {
            run,
            input,
            out,
            device,
        } => predict_command(run, input, out, device.as_deref())
            .with_context(|| format!("predicting {} with {}", input.display(), run.display()))?,
        Command::ImportWeights { from, out } => import_weights_command(from, out)
            .with_context(|| format!("importing {}", from.display()))?,
    }
    Ok(())
}
