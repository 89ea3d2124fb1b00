//! KD methods through the registry: config parsing, both directions, named terms, gradients,
//! the orthogonal retraction, and the projector's split against the reference decomposition.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use crosskd_losses::methods::attention::attention_transfer_loss;
use crosskd_losses::methods::logit_kd::logit_kd_loss;
use crosskd_losses::{
    build_method, decompose_squared_l2, Distance, DistillInputs, FeaturePair, MethodConfig,
};
use crosskd_ops::gradcheck::{assert_gradients, random_f64};
use crosskd_projectors::{Direction, Projector, ProjectorConfig, ProjectorForm};

fn parse(text: &str) -> MethodConfig {
    toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn every_method_builds_from_toml_and_runs_in_both_directions() {
    let pairs = [FeaturePair {
        d_teacher: 5,
        d_student: 3,
        dense: true,
    }];
    let z_s = random_f64(&[2, 3, 4, 4], 1).unwrap();
    let z_t = random_f64(&[2, 5, 2, 2], 2).unwrap(); // smaller teacher map: resized
    let logits_s = random_f64(&[2, 6], 3).unwrap();
    let logits_t = random_f64(&[2, 6], 4).unwrap();
    let students = [z_s];
    let teachers = [z_t];
    let inputs = DistillInputs {
        student_features: &students,
        teacher_features: &teachers,
        student_logits: Some(&logits_s),
        teacher_logits: Some(&logits_t),
    };
    for (text, name) in [
        ("kind = \"fitnets\"\ndirection = \"standard\"", "fitnets"),
        (
            "kind = \"fitnets\"\ndirection = \"inverted\"\nbias = true\nteacher-norm = \"l2\"",
            "fitnets",
        ),
        ("kind = \"srd\"\ndirection = \"inverted\"", "srd"),
        (
            "kind = \"srd\"\ndirection = \"standard\"\ndistance = { kind = \"mse\" }",
            "srd",
        ),
        ("kind = \"vkd\"\ndirection = \"inverted\"", "vkd"),
        (
            "kind = \"vkd\"\ndirection = \"standard\"\nweight = 0.5",
            "vkd",
        ),
        ("kind = \"attention-transfer\"", "attention-transfer"),
        ("kind = \"logit-kd\"\ntemperature = 2.0", "logit-kd"),
    ] {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let method = build_method(&parse(text), &pairs, 0, vb).unwrap();
        let out = method.forward(&inputs).unwrap();
        assert_eq!(method.name(), name);
        assert_eq!(out.terms[0].name, name);
        let total = scalar(&out.total().unwrap());
        assert!(total.is_finite(), "{text}: {total}");
        method.after_step().unwrap();
        for p in method.projectors() {
            if p.form() == ProjectorForm::Orthogonal {
                assert!(p.orthogonality_error().unwrap() < 1e-9);
            }
        }
    }
}

#[test]
fn unknown_keys_and_kinds_are_rejected() {
    assert!(toml::from_str::<MethodConfig>("kind = \"fitnets\"\ndirecton = \"inverted\"").is_err());
    assert!(toml::from_str::<MethodConfig>("kind = \"fitnet\"").is_err());
    assert!(toml::from_str::<MethodConfig>("kind = \"vkd\"\ndirection = \"sideways\"").is_err());
}

#[test]
fn missing_inputs_are_errors() {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
    let pairs = [FeaturePair {
        d_teacher: 4,
        d_student: 3,
        dense: false,
    }];
    let fit = build_method(&parse("kind = \"fitnets\""), &pairs, 0, vb.clone()).unwrap();
    let kd = build_method(&parse("kind = \"logit-kd\""), &pairs, 0, vb).unwrap();
    let none = DistillInputs {
        student_features: &[],
        teacher_features: &[],
        student_logits: None,
        teacher_logits: None,
    };
    assert!(fit.forward(&none).is_err());
    assert!(kd.forward(&none).is_err());
}

#[test]
fn fitnets_logs_a_split_that_adds_up_to_the_weighted_term() {
    let pairs = [FeaturePair {
        d_teacher: 4,
        d_student: 3,
        dense: false,
    }];
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
    let method = build_method(&parse("kind = \"fitnets\"\nweight = 2.5"), &pairs, 0, vb).unwrap();
    let s = [random_f64(&[10, 3], 5).unwrap()];
    let t = [random_f64(&[10, 4], 6).unwrap()];
    let inputs = DistillInputs {
        student_features: &s,
        teacher_features: &t,
        student_logits: None,
        teacher_logits: None,
    };
    let out = method.forward(&inputs).unwrap();
    let total = scalar(&out.total().unwrap());
    let get = |k: &str| out.diagnostics.iter().find(|(n, _)| n == k).unwrap().1;
    let (transfer, spectral) = (get("fitnets.transfer"), get("fitnets.spectral"));
    assert!(
        (transfer + spectral - total).abs() <= 1e-9 * total,
        "{transfer} + {spectral} vs {total}"
    );
}

#[test]
fn projector_split_matches_the_reference_decomposition() {
    // The projector's per-step split (Gram + pivoted Cholesky) against the SVD reference, with
    // the squared-L2 distance (scale 1/n), on pooled and on dense, rank-deficient features.
    for direction in [Direction::Standard, Direction::Inverted] {
        for dense in [false, true] {
            let map = VarMap::new();
            let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
            let form = if dense {
                ProjectorForm::Conv1x1
            } else {
                ProjectorForm::Linear
            };
            let p = Projector::new(direction, form, 6, 3, ProjectorConfig::default(), vb).unwrap();
            let (z_s, z_t) = if dense {
                // Teacher channels 3..6 repeat channels 0..3: rank 3 of 6.
                let half = random_f64(&[2, 3, 3, 3], 7).unwrap();
                (
                    random_f64(&[2, 3, 3, 3], 8).unwrap(),
                    Tensor::cat(&[&half, &half], 1).unwrap(),
                )
            } else {
                (
                    random_f64(&[12, 3], 7).unwrap(),
                    random_f64(&[12, 6], 8).unwrap(),
                )
            };
            let terms = p.distill(&z_s, &z_t, &Distance::SquaredL2).unwrap();
            let reference =
                decompose_squared_l2(&z_s, &z_t, &p.weight_matrix().unwrap(), direction).unwrap();
            let close = |a: f64, b: f64, what: &str| {
                assert!(
                    (a - b).abs() <= 1e-9 * reference.total,
                    "{direction} dense={dense} {what}: {a} vs {b}"
                )
            };
            close(scalar(&terms.total), reference.total, "total");
            close(
                scalar(terms.transfer.as_ref().unwrap()),
                reference.transfer,
                "transfer",
            );
            close(
                scalar(terms.spectral.as_ref().unwrap()),
                reference.spectral,
                "spectral",
            );
        }
    }
}

#[test]
fn attention_transfer_value_and_gradients() {
    // Hand value: one image, one channel each, 1×2 maps.
    let s = Tensor::new(&[[[[3.0f64, 4.0]]]], &Device::Cpu).unwrap();
    let t = Tensor::new(&[[[[1.0f64, 0.0]], [[0.0, 0.0]]]], &Device::Cpu).unwrap();
    // a_s = (9, 16)/√337, a_t = (0.5, 0)/0.5 = (1, 0).
    let r = 337f64.sqrt();
    let expect = ((9.0 / r - 1.0).powi(2) + (16.0 / r).powi(2)) / 2.0;
    let got = scalar(&attention_transfer_loss(&s, &t, 2.0).unwrap());
    assert!((got - expect).abs() < 1e-9, "{got} vs {expect}");

    let z_s = random_f64(&[2, 3, 3, 3], 9).unwrap();
    let z_t = random_f64(&[2, 4, 2, 2], 10).unwrap();
    for p in [2.0, 3.0] {
        assert_gradients(
            "attention transfer",
            |a| Ok(attention_transfer_loss(&a[0], &z_t, p)?),
            std::slice::from_ref(&z_s),
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn logit_kd_value_and_gradients() {
    let s = random_f64(&[3, 4], 11).unwrap();
    let t = random_f64(&[3, 4], 12).unwrap();
    let temperature = 2.0;
    let sv = s.to_vec2::<f64>().unwrap();
    let tv = t.to_vec2::<f64>().unwrap();
    let softmax = |row: &[f64]| {
        let e: Vec<f64> = row.iter().map(|v| (v / temperature).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|v| v / z).collect::<Vec<_>>()
    };
    let mut expect = 0.0;
    for n in 0..3 {
        let (ps, pt) = (softmax(&sv[n]), softmax(&tv[n]));
        expect += (0..4).map(|k| pt[k] * (pt[k] / ps[k]).ln()).sum::<f64>();
    }
    expect *= temperature * temperature / 3.0;
    let got = scalar(&logit_kd_loss(&s, &t, temperature).unwrap());
    assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
    assert!(scalar(&logit_kd_loss(&s, &s, temperature).unwrap()).abs() < 1e-12);
    assert_gradients(
        "logit KD",
        |a| Ok(logit_kd_loss(&a[0], &t, temperature)?),
        &[s],
        1e-6,
        1e-6,
    );
}

#[test]
fn method_losses_have_exact_gradients_through_the_student_feature() {
    // SRD (BN both sides + log loss) and VkD (orthogonal, layer-normed teacher, smooth L1), both
    // directions, gradient with respect to the student's feature.
    for text in [
        "kind = \"srd\"\ndirection = \"inverted\"",
        "kind = \"srd\"\ndirection = \"standard\"",
        "kind = \"vkd\"\ndirection = \"inverted\"",
        "kind = \"vkd\"\ndirection = \"standard\"",
        "kind = \"fitnets\"\ndirection = \"inverted\"\ndistance = { kind = \"smooth-l1\", beta = 0.3 }",
    ] {
        let pairs = [FeaturePair { d_teacher: 4, d_student: 3, dense: true }];
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
        let method = build_method(&parse(text), &pairs, 0, vb).unwrap();
        let z_t = [random_f64(&[2, 4, 2, 2], 13).unwrap()];
        let z_s = random_f64(&[2, 3, 2, 2], 14).unwrap();
        assert_gradients(
            text,
            |a| {
                let s = [a[0].clone()];
                let inputs =
                    DistillInputs { student_features: &s, teacher_features: &z_t, student_logits: None, teacher_logits: None };
                Ok(method.forward(&inputs)?.total()?)
            },
            &[z_s],
            1e-6,
            1e-6,
        );
    }
}
