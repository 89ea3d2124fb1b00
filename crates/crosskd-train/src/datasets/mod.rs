//! Data sources: one place that maps a `data.dataset` name to its loader, the tasks it serves and
//! the folder layout it expects. Adding a source is one file here and one entry in [`SOURCES`].
//!
//! Every source returns [`Splits`] (train, validation carved from the training split by a seeded
//! shuffle, test); the trainer batches them through `crosskd_data::DataLoader`.

mod cityscapes;
mod config;
mod fashion_mnist;
mod image_folder;
mod nyuv2;
mod pix2pix;
mod scenes;
mod splits;

use std::path::PathBuf;

pub use config::{Augment, AugmentSettings, DataConfig, PairDirection};
pub use splits::Splits;

use crate::error::{Result, TrainError};
use crate::task_kind::Task;

/// What a source needs from the run config to open its splits.
pub struct DataRequest<'a> {
    /// The `[data]` section.
    pub data: &'a DataConfig,
    /// The task trained.
    pub task: Task,
    /// Whether the student reads three channels (grey sources repeat their channel).
    pub rgb: bool,
}

/// Whether and where a source reads files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootUse {
    /// Nothing on disk (rendered data).
    None,
    /// `data.root`, defaulting to this folder.
    Default(&'static str),
    /// `data.root` must be given.
    Required,
}

/// How many classes a source's labels have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassCount {
    /// A fixed table (segmentation and classification tasks use it as `data.num-classes`).
    Fixed(usize),
    /// Found in the data when it is opened (one folder per class).
    Counted,
}

/// One data source.
pub struct DatasetSource {
    /// The `data.dataset` name.
    pub name: &'static str,
    /// The tasks it serves.
    pub tasks: &'static [Task],
    /// One line on what it is.
    pub about: &'static str,
    /// Whether it reads `data.root`.
    pub root: RootUse,
    /// Its class count, where it has labels.
    pub classes: Option<ClassCount>,
    /// The folder layout it expects under `data.root` (shown by `crosskd list datasets` and in
    /// datasets/README.md).
    pub layout: &'static str,
    /// Opens the splits.
    pub open: fn(&DataRequest) -> Result<Splits>,
}

/// Every source, in the order `crosskd list datasets` prints them.
pub const SOURCES: &[DatasetSource] = &[
    scenes::SOURCE,
    fashion_mnist::SOURCE,
    nyuv2::SOURCE,
    cityscapes::SOURCE,
    pix2pix::SOURCE,
    image_folder::SOURCE,
];

/// The source called `name`.
pub fn find(name: &str) -> Option<&'static DatasetSource> {
    SOURCES.iter().find(|s| s.name == name)
}

/// The source a config names, after checking that it serves the task (an error naming both).
pub fn source_for(data: &DataConfig, task: Task) -> Result<&'static DatasetSource> {
    let source = find(&data.dataset).ok_or_else(|| {
        let names: Vec<String> = SOURCES.iter().map(|s| format!("\"{}\"", s.name)).collect();
        TrainError::config(
            "data.dataset",
            format!(
                "expected one of {} (see `crosskd list datasets`), found \"{}\"",
                names.join(", "),
                data.dataset
            ),
        )
    })?;
    if !source.tasks.contains(&task) {
        let serving: Vec<String> = SOURCES
            .iter()
            .filter(|s| s.tasks.contains(&task))
            .map(|s| format!("\"{}\"", s.name))
            .collect();
        return Err(TrainError::config(
            "data.dataset",
            format!(
                "data set \"{}\" serves {}, not task \"{}\" (for {} use {})",
                source.name,
                task_names(source.tasks),
                task.name(),
                task.name(),
                serving.join(" or ")
            ),
        ));
    }
    Ok(source)
}

fn task_names(tasks: &[Task]) -> String {
    tasks
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The data phase of config validation: a source that serves the task, `data.root` where the
/// source needs one, keys that belong to the source, and augmentation ranges.
pub fn validate(data: &DataConfig, task: Task) -> Result<()> {
    let source = source_for(data, task)?;
    match (source.root, &data.root) {
        (RootUse::Required, None) => {
            return Err(TrainError::config(
                "data.root",
                format!(
                    "expected the folder of the {} data set (layout: `crosskd list datasets`), found none",
                    source.name
                ),
            ))
        }
        (RootUse::None, Some(root)) => {
            return Err(TrainError::config(
                "data.root",
                format!(
                    "data set \"{}\" reads no files, found {}",
                    source.name,
                    root.display()
                ),
            ))
        }
        _ => {}
    }
    if data.direction.is_some() && source.name != pix2pix::SOURCE.name {
        return Err(TrainError::config(
            "data.direction",
            format!(
                "only the pix2pix source reads it, found it for \"{}\"",
                source.name
            ),
        ));
    }
    if data.train_samples == 0 && source.root == RootUse::None {
        return Err(TrainError::config(
            "data.train-samples",
            format!("expected at least 1 for \"{}\", found 0", source.name),
        ));
    }
    if let Some(w) = data.workers.filter(|&w| w > 256) {
        return Err(TrainError::config(
            "data.workers",
            format!("expected between 0 and 256, found {w}"),
        ));
    }
    data.augment
        .check()
        .map_err(|message| TrainError::config("data.augment", message))
}

/// The class count `data.num-classes = 0` resolves to before any file is read: the source's
/// fixed table for segmentation and classification, else 0 (no classes, or counted in the data
/// when it is opened).
pub fn default_num_classes(dataset: &str, task: Task) -> usize {
    if !matches!(task, Task::Segmentation | Task::Classification) {
        return 0;
    }
    match find(dataset).and_then(|s| s.classes) {
        Some(ClassCount::Fixed(n)) => n,
        _ => 0,
    }
}

/// Whether the source counts its classes when opened (so `data.num-classes` may stay 0 until then).
pub fn counts_classes(dataset: &str) -> bool {
    find(dataset).and_then(|s| s.classes) == Some(ClassCount::Counted)
}

/// Opens the splits a config describes.
pub fn build_splits(request: &DataRequest) -> Result<Splits> {
    let source = source_for(request.data, request.task)?;
    (source.open)(request)
}

/// The folder a source reads: `data.root`, else its default; a missing folder is an error.
pub(crate) fn root_folder(request: &DataRequest, source: &DatasetSource) -> Result<PathBuf> {
    let root = match (&request.data.root, source.root) {
        (Some(r), _) => r.clone(),
        (None, RootUse::Default(d)) => PathBuf::from(d),
        (None, _) => {
            return Err(TrainError::config(
                "data.root",
                format!(
                    "expected the folder of the {} data set, found none",
                    source.name
                ),
            ))
        }
    };
    if !root.is_dir() {
        return Err(TrainError::config(
            "data.root",
            format!(
                "no folder {} for the {} data set ({}); expected layout:\n{}",
                root.display(),
                source.name,
                source.about,
                source.layout
            ),
        ));
    }
    Ok(root)
}

/// `crosskd list datasets`: every source with its tasks and expected folder layout.
pub fn list() -> String {
    let mut out = String::new();
    for s in SOURCES {
        out.push_str(&format!("{}\n", s.name));
        out.push_str(&format!("  tasks:  {}\n", task_names(s.tasks)));
        out.push_str(&format!("  what:   {}\n", s.about));
        let root = match s.root {
            RootUse::None => "none (nothing is read from disk)".to_string(),
            RootUse::Default(d) => format!("data.root, default {d}"),
            RootUse::Required => "data.root (required)".to_string(),
        };
        out.push_str(&format!("  root:   {root}\n"));
        out.push_str("  layout:\n");
        for line in s.layout.lines() {
            out.push_str(&format!("    {line}\n"));
        }
        out.push('\n');
    }
    out.push_str(
        "Choose one with `[data] dataset = \"NAME\"` and `root = \"FOLDER\"`; validation samples are carved\nfrom the training split (data.val-samples, shuffled with data.seed).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_has_a_source_and_names_are_unique() {
        for task in Task::ALL {
            assert!(SOURCES.iter().any(|s| s.tasks.contains(&task)), "{task:?}");
        }
        let mut names: Vec<&str> = SOURCES.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SOURCES.len());
    }

    #[test]
    fn a_mismatch_names_the_data_set_and_the_task() {
        let data = DataConfig {
            dataset: "nyuv2".into(),
            root: Some("/x".into()),
            ..DataConfig::default()
        };
        let e = validate(&data, Task::Segmentation).unwrap_err().to_string();
        assert!(
            e.contains("data.dataset") && e.contains("\"nyuv2\"") && e.contains("\"segmentation\""),
            "{e}"
        );
        assert!(e.contains("\"cityscapes\""), "{e}");
        let e = validate(
            &DataConfig {
                dataset: "cityscapes".into(),
                ..DataConfig::default()
            },
            Task::Segmentation,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("data.root"), "{e}");
    }

    #[test]
    fn the_readme_shows_every_layout() {
        let readme = include_str!("../../../../datasets/README.md");
        for s in SOURCES {
            assert!(
                readme.contains(s.layout),
                "datasets/README.md lacks the layout of {}:\n{}",
                s.name,
                s.layout
            );
        }
    }
}
