//! `cargo xtask bench students`: training steps of the reproduction's students, crosskd against a
//! PyTorch twin (`xtask/bench/students.py`) on the same number of threads, phase by phase, with
//! the peak resident memory of each, and the trainer's own loop on the same configs.
//!
//! Every measurement runs in a process of its own (this binary again, with `--row` and `--part`,
//! or the Python script), so each row's peak memory is attributable to it alone. The sides of a
//! row run back to back, which keeps the load of a shared machine about the same for both.

use std::process::Command;

use anyhow::Context;

use super::students_row::{
    fashion_root, Measured, Row, TrainerMeasured, ROWS, TIMED_STEPS, WARMUP_STEPS,
};

/// Everything measured on one row.
struct RowResult {
    row: Row,
    crosskd: Measured,
    trainer: TrainerMeasured,
    torch: Option<Measured>,
}

/// Runs one part of one row in a child process of this binary and parses its JSON line.
fn child<T: serde::de::DeserializeOwned>(
    row: &Row,
    part: &str,
    threads: usize,
) -> anyhow::Result<T> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let out = Command::new(&exe)
        .args(["bench", "students", "--row", row.name, "--part", part])
        .args(["--threads", &threads.to_string()])
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    parse_last_line(&out, &format!("row {} ({part})", row.name))
}

fn parse_last_line<T: serde::de::DeserializeOwned>(
    out: &std::process::Output,
    what: &str,
) -> anyhow::Result<T> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{what}: last line is not its JSON: {last}"))
}

/// The Python interpreter of `CROSSKD_PYTHON` (else `python3`) and its PyTorch version, or why
/// the PyTorch column cannot run.
fn python_with_torch() -> Result<(String, String), String> {
    let python = std::env::var("CROSSKD_PYTHON").unwrap_or_else(|_| "python3".to_string());
    match Command::new(&python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
    {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            Ok((python, version))
        }
        Ok(_) => Err(format!(
            "`{python}` cannot import torch (`pip install torch`, or point CROSSKD_PYTHON at an \
             interpreter that can)"
        )),
        Err(e) => Err(format!("cannot run `{python}`: {e}")),
    }
}

/// The PyTorch twin of `row`.
fn torch_row(python: &str, row: &Row, threads: usize) -> anyhow::Result<Measured> {
    let script = super::report::workspace_root().join("xtask/bench/students.py");
    let arch = match row.task {
        crosskd_train::Task::Classification => "small-resnet",
        _ => "unet",
    };
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args(["--arch", arch])
        .args(["--size", &row.size.to_string()])
        .args(["--batch", &row.batch.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--warmup", &WARMUP_STEPS.to_string()])
        .args(["--steps", &TIMED_STEPS.to_string()]);
    if row.teacher {
        cmd.arg("--teacher");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    parse_last_line(&out, &format!("{} --arch {arch}", script.display()))
}

/// The record of the median run among `runs` by `key` (the upper median of an even count).
fn median_run<T>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> Option<T> {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mid = runs.len() / 2;
    runs.into_iter().nth(mid)
}

/// Measures `row` `repeats` times, the sides alternating (crosskd, PyTorch, trainer), and keeps
/// each side's median run: a burst of load on a shared machine then hits one run of each side,
/// not one side's every run.
fn measure_row(
    row: &Row,
    threads: usize,
    repeats: usize,
    python: Option<&str>,
) -> anyhow::Result<RowResult> {
    let (mut ours, mut theirs, mut loops) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        let crosskd: Measured = child(row, "crosskd", threads)?;
        if let Some(python) = python {
            let m = torch_row(python, row, threads)?;
            anyhow::ensure!(
                m.parameters == crosskd.parameters,
                "row {}: the PyTorch twin has {} trainable parameters, crosskd {}: the networks \
                 drifted apart",
                row.name,
                m.parameters,
                crosskd.parameters
            );
            theirs.push(m);
        }
        ours.push(crosskd);
        loops.push(child::<TrainerMeasured>(row, "trainer", threads)?);
    }
    let steps = |m: &Measured| m.step_ms;
    Ok(RowResult {
        row: *row,
        crosskd: median_run(ours, steps).context("no crosskd run")?,
        trainer: median_run(loops, |t| t.samples_per_s).context("no trainer run")?,
        torch: median_run(theirs, steps),
    })
}

/// `cargo xtask bench students`.
pub fn run(threads: usize, repeats: usize) -> anyhow::Result<()> {
    let torch = python_with_torch();
    let (_, synthetic) = fashion_root()?;
    let mut results = Vec::new();
    for row in ROWS {
        println!("{} …", row.label());
        let python = torch.as_ref().ok().map(|(p, _)| p.as_str());
        let r = measure_row(&row, threads, repeats, python)?;
        println!(
            "  crosskd {:.1} ms/step ({:.0} samples/s, trainer logged {:.0}){}",
            r.crosskd.step_ms,
            r.crosskd.samples_per_s,
            r.trainer.samples_per_s,
            r.torch
                .as_ref()
                .map(|t| format!(", PyTorch {:.1} ms/step", t.step_ms))
                .unwrap_or_default()
        );
        results.push(r);
    }
    let torch_version = torch
        .as_ref()
        .map(|(_, v)| v.as_str())
        .map_err(|e| e.as_str());
    let md = markdown(&results, threads, repeats, synthetic, torch_version);
    println!("\n{md}");
    super::report::write_section("students", &md)
}

/// The section of docs/benchmarks.md, ending with the ratio line.
fn markdown(
    results: &[RowResult],
    threads: usize,
    repeats: usize,
    synthetic_fashion: bool,
    torch: Result<&str, &str>,
) -> String {
    let mut md = format!(
        "The reproduction's students (`xtask/src/reproduce/grid.rs`, quick profile, seed 1): the \
         U-Net on rendered segmentation scenes, the small ResNet on {}; each without \
         distillation and with the random teacher (U-Net w16 d3, or the same small ResNet) read \
         through the inverted projector (FitNets, α = 1). Median of {TIMED_STEPS} steps after \
         {WARMUP_STEPS} warm-up, every row and side in its own process, {repeats} runs of each \
         side alternating and the median run kept, command \
         `cargo xtask bench students --threads {threads} --repeats {repeats}` (`xtask/src/bench/students.rs`, \
         PyTorch twin `xtask/bench/students.py`{}).\n\n\
         Machine: {}.\n\n",
        if synthetic_fashion {
            "synthetic Fashion-MNIST-shaped IDX files (random 28×28 images and labels; the data \
             set is not installed here)"
        } else {
            "Fashion-MNIST"
        },
        match torch {
            Ok(v) => format!(", PyTorch {v} eager, `torch.set_num_threads({threads})`"),
            Err(_) => String::new(),
        },
        super::report::machine_description(threads),
    );
    md.push_str(
        "Phases in ms: data = reading or decoding and collating the batch, every step on samples \
         not seen before as in the trainer's first epoch (rendered scenes are all rendered when \
         the run opens, in the preceding column, and kept; PyTorch: indexing tensors held in \
         memory); forward = student, head, task loss, projector and distillation \
         loss; teacher = the frozen teacher's forward; backward; optimiser = gradient check, \
         AdamW and retraction. The time ratio is of whole steps (the last line's); the next column \
         leaves the data phase out of both sides, whose data differ (rendered scenes against \
         tensors in memory). Peak RSS is the process's high-water mark (PyTorch's includes \
         about 0.4 GB of its own libraries).\n\n\
         | student | side | samples/s | ms/step | rendered at open (once) | data | forward | teacher | backward | optimiser | peak RSS MB | crosskd/PyTorch time | same, data phase left out |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut worst: Option<f64> = None;
    for r in results {
        let ratio = r.torch.as_ref().map(|t| r.crosskd.step_ms / t.step_ms);
        if let Some(x) = ratio {
            worst = Some(worst.map_or(x, |w: f64| w.max(x)));
        }
        let ratio_text = match (ratio, &r.torch) {
            (Some(x), Some(t)) => {
                let model = |m: &Measured| m.step_ms - m.phases_ms.data;
                format!("{x:.2} | {:.2}", model(&r.crosskd) / model(t))
            }
            _ => " | ".to_string(),
        };
        let preload = format!("{:.1}", r.crosskd.preload_ms);
        md.push_str(&table_line(
            &r.row.label(),
            "crosskd",
            &r.crosskd,
            &preload,
            &ratio_text,
        ));
        if let Some(t) = &r.torch {
            md.push_str(&table_line("", "PyTorch", t, "", " | "));
        }
    }
    if let Err(why) = torch {
        md.push_str(&format!("\nPyTorch column skipped: {why}.\n"));
    }
    md.push_str(
        "\nThe trainer's own loop (`run_training_with`: one epoch of 24 steps of the same config \
         in its own process, with its data path, checks, logging and checkpoints; \
         `train.cache-teacher = \"off\"`, so that it runs the teacher every step like the bench's \
         step and the twin — the default cache removes the teacher from the step, see the \
         distill-step section) against the bench's step: the median of the `samples_per_s` it logged every 4 steps (median run).\n\n\
         | student | bench samples/s | trainer samples/s | trainer/bench | trainer peak RSS MB |\n\
         |---|---|---|---|---|\n",
    );
    for r in results {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} |\n",
            r.row.label(),
            r.crosskd.samples_per_s,
            r.trainer.samples_per_s,
            r.trainer.samples_per_s / r.crosskd.samples_per_s,
            r.trainer.peak_rss_mb
        ));
    }
    match worst {
        Some(x) => md.push_str(&format!("\nratio crosskd/pytorch (worst row): {x:.2}\n")),
        None => md.push_str("\nratio crosskd/pytorch (worst row): not measured (no PyTorch)\n"),
    }
    md
}

fn table_line(label: &str, side: &str, m: &Measured, preload: &str, ratio: &str) -> String {
    let p = &m.phases_ms;
    format!(
        "| {label} | {side} | {:.0} | {:.1} | {preload} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {ratio} |\n",
        m.samples_per_s,
        m.step_ms,
        p.data,
        p.forward,
        p.teacher,
        p.backward,
        p.optimiser,
        m.peak_rss_mb
    )
}

#[cfg(test)]
mod tests {
    use super::super::students_row::Phases;
    use super::*;

    fn measured(step_ms: f64) -> Measured {
        Measured {
            step_ms,
            phases_ms: Phases::default(),
            samples_per_s: 16e3 / step_ms,
            preload_ms: 0.0,
            parameters: 1,
            peak_rss_mb: 40.0,
            final_loss: 1.0,
        }
    }

    /// The last line is the largest crosskd/PyTorch time ratio over the rows, whichever row it is.
    #[test]
    fn last_line_is_the_worst_rows_ratio() {
        let trainer = TrainerMeasured {
            samples_per_s: 100.0,
            intervals: 6,
            peak_rss_mb: 50.0,
        };
        let results: Vec<RowResult> = [(30.0, 60.0), (90.0, 100.0), (20.0, 80.0)]
            .into_iter()
            .zip(ROWS)
            .map(|((ours, theirs), row)| RowResult {
                row,
                crosskd: measured(ours),
                trainer: trainer.clone(),
                torch: Some(measured(theirs)),
            })
            .collect();
        let md = markdown(&results, 2, 3, true, Ok("2.15.0"));
        let last = md.trim_end().lines().last().unwrap();
        assert_eq!(last, "ratio crosskd/pytorch (worst row): 0.90");
        assert!(md.contains("synthetic Fashion-MNIST-shaped"), "{md}");
        let without = markdown(&results, 2, 1, false, Err("no torch"));
        assert!(
            without.contains("PyTorch column skipped: no torch."),
            "{without}"
        );
    }
}
