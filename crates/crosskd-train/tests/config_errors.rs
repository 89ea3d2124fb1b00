//! Config parsing: defaults, overrides, and errors that name the key.

use crosskd_train::config::Config;
use crosskd_train::Task;

fn parse(text: &str, overrides: &[&str]) -> Result<Config, String> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::from_toml_str(text, &o, None).map_err(|e| e.to_string())
}

#[test]
fn minimal_config_gets_task_defaults() {
    let c = parse("task = \"depth\"", &[]).unwrap();
    assert_eq!(c.task, Task::Depth);
    assert_eq!(c.data.dataset, "scenes");
    assert_eq!(c.student.tap, "bottleneck");
    assert_eq!(c.train.epochs, Some(4));
    let c = parse("task = \"classification\"", &[]).unwrap();
    assert_eq!(c.data.dataset, "fashion-mnist");
    assert_eq!(c.student.tap, "pooled");
    assert_eq!(c.data.num_classes, 10);
}

#[test]
fn bad_enum_names_the_key_and_the_choices() {
    let e = parse(
        "task = \"depth\"\n[distill]\nkind = \"fitnets\"\ndirection = \"sideways\"\n",
        &[],
    )
    .unwrap_err();
    assert!(e.contains("distill"), "{e}");
    assert!(
        e.contains("\"sideways\"") && e.contains("\"standard\"") && e.contains("\"inverted\""),
        "{e}"
    );
    let e = parse("task = \"depthh\"", &[]).unwrap_err();
    assert!(
        e.starts_with("task: expected") && e.contains("found \"depthh\""),
        "{e}"
    );
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    let e = parse("task = \"depth\"\n[train]\nbatch_size = 4\n", &[]).unwrap_err();
    assert!(
        e.contains("train") && e.contains("batch_size") && e.contains("batch-size"),
        "{e}"
    );
    let e = parse("task = \"depth\"\nlearning-rate = 1\n", &[]).unwrap_err();
    assert!(e.contains("learning-rate"), "{e}");
}

#[test]
fn out_of_range_values_name_the_key() {
    let cases = [
        (
            "[optimiser]\nlr = -1.0",
            "optimiser.lr: expected a finite number > 0, found -1",
        ),
        (
            "[optimiser]\nmomentum = 1.5",
            "optimiser.momentum: expected in [0, 1), found 1.5",
        ),
        (
            "[train]\nbatch-size = 0",
            "train.batch-size: expected between 1 and 4096, found 0",
        ),
        (
            "[data]\nimage-size = 36",
            "data.image-size: expected a multiple of 2^depth = 8",
        ),
        (
            "[schedule]\ngamma = 2.0",
            "schedule.gamma: expected in (0, 1], found 2",
        ),
        // Found by the fuzzer: a step count that overflowed, and a seed whose teacher seed
        // (seed + 1) no longer fitted a TOML integer, leaving config.toml empty.
        (
            "[train]\nepochs = 9223372036854775807",
            "train.epochs: expected between 1 and 1000000, found 9223372036854775807",
        ),
        (
            "seed = 9223372036854775807",
            "seed: expected at most 9223372036854775806, found 9223372036854775807",
        ),
    ];
    for (snippet, expected) in cases {
        let e = parse(&format!("task = \"depth\"\n{snippet}\n"), &[]).unwrap_err();
        assert!(e.starts_with(expected), "{snippet}: got {e}");
    }
    let e = parse("task = \"depth\"\n[train]\nbatch-size = \"four\"\n", &[]).unwrap_err();
    assert!(e.starts_with("train.batch-size: expected"), "{e}");
}

#[test]
fn overrides_apply_and_parse_as_toml() {
    let c = parse(
        "task = \"depth\"",
        &[
            "train.steps=12",
            "teacher.kind=random",
            "distill.direction=standard",
            "optimiser.lr=0.5",
        ],
    )
    .unwrap();
    assert_eq!(c.train.steps, Some(12));
    assert_eq!(c.optimiser.lr, 0.5);
    assert_eq!(c.teacher.kind_name(), "random");
    assert!(c.to_toml().contains("direction = \"standard\""));
    let e = parse("task = \"depth\"", &["nonsense"]).unwrap_err();
    assert!(
        e.contains("nonsense") && e.contains("key.path=value"),
        "{e}"
    );
    let e = parse("task = \"depth\"\nseed = 3", &["seed.x=1"]).unwrap_err();
    assert!(e.contains("`seed` is a value"), "{e}");
    let e = parse("task = \"depth\"", &["seed.x=1"]).unwrap_err();
    assert!(e.starts_with("seed: expected u64"), "{e}");
}

#[test]
fn resolved_config_round_trips_with_the_same_hash() {
    let c = parse(
        "task = \"segmentation\"\n[teacher]\nkind = \"random\"\n",
        &["regulariser.kind=energy"],
    )
    .unwrap();
    let again = Config::from_toml_str(&c.to_toml(), &[], None).unwrap();
    assert_eq!(again, c);
    assert_eq!(again.hash(), c.hash());
    let other = parse(
        "task = \"segmentation\"\n[teacher]\nkind = \"random\"\n",
        &["seed=5"],
    )
    .unwrap();
    assert_ne!(other.hash(), c.hash());
}

#[test]
fn shipped_example_configs_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::from_file(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 16, "only {n} configs in {}", dir.display());
}
