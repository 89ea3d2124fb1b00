//! The `crosskd` command-line tool: `train`, `eval`, `predict`, `inspect`, `export`, `compare`, `plot`,
//! `list`,
//! `completions`, `import-weights`, `fetch-teachers`.

use anyhow::Context;
use clap::{CommandFactory, Parser};
use crosskd_train::cli::{
    eval_command, import_weights_command, predict_command, train_command, Command, CompareFormat,
    CrosskdCli, ListCommand,
};
use crosskd_train::commands;

fn main() -> anyhow::Result<()> {
    crosskd_train::memory::keep_freed_memory();
    let cli = CrosskdCli::parse();
    crosskd_train::logging::init(cli.verbosity);
    match &cli.command {
        Command::Train(args) => {
            let (_, code) = train_command(args, None)?;
            if code != crosskd_train::cli::EXIT_FINISHED {
                std::process::exit(code);
            }
        }
        Command::Eval {
            run,
            split,
            device,
            json,
        } => eval_command(run, *split, device.as_deref(), *json)
            .with_context(|| format!("evaluating {}", run.display()))?,
        Command::Predict {
            run,
            input,
            out,
            device,
        } => predict_command(run, input, out.as_deref(), device.as_deref())
            .with_context(|| format!("predicting {} with {}", input.display(), run.display()))?,
        Command::Inspect { path } => print!("{}", commands::inspect(path)?),
        Command::Export { run, out } => {
            let n = commands::export(run, out)
                .with_context(|| format!("exporting {}", run.display()))?;
            println!("wrote {} ({n} tensors: student and head)", out.display());
        }
        Command::Compare { runs, format } => {
            let dirs = crosskd_train::compare::expand_run_dirs(runs);
            let comparison = crosskd_train::compare::compare_dirs(&dirs)?;
            match format {
                CompareFormat::Markdown => print!("{}", comparison.to_markdown()),
                CompareFormat::Csv => print!("{}", comparison.to_csv()),
            }
        }
        Command::Plot { run } => {
            let session = crosskd_train::load_run(run)
                .with_context(|| format!("loading {}", run.display()))?;
            for f in crosskd_train::train::write_plots(&session, run)? {
                println!("wrote {}", f.display());
            }
        }
        Command::List(what) => print!(
            "{}",
            match what {
                ListCommand::Archs => commands::list_archs(),
                ListCommand::Taps {
                    arch,
                    size,
                    overrides,
                } => commands::list_taps(arch, *size, overrides)?,
                ListCommand::Datasets => crosskd_train::datasets::list(),
                ListCommand::Configs { dir } => commands::list_configs(dir)?,
                ListCommand::Teachers { list, cache_dir } => {
                    crosskd_train::teachers::fetch::list_teachers(
                        list.as_deref(),
                        cache_dir.as_deref(),
                    )?
                }
            }
        ),
        Command::Completions { shell } => {
            let mut cmd = CrosskdCli::command();
            clap_complete::generate(*shell, &mut cmd, "crosskd", &mut std::io::stdout());
        }
        Command::FetchTeachers(args) => {
            crosskd_train::teachers::fetch::fetch_teachers(&args.options())?
        }
        Command::ImportWeights { from, out } => import_weights_command(from, out)
            .with_context(|| format!("importing {}", from.display()))?,
    }
    Ok(())
}
