//! Behaviour of `Projector`: shapes, gradient routing, dense/pooled agreement, resizing,
//! orthogonality, the transfer/spectral split and finite-difference gradients.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use crosskd_ops::gradcheck::{assert_gradients, random_f64};
use crosskd_ops::resize::resize_bilinear;
use crosskd_projectors::{
    Direction, Error, FeatureDistance, FeatureNorm, Projector, ProjectorConfig, ProjectorForm,
    SquaredL2PerRow,
};

fn build(
    direction: Direction,
    form: ProjectorForm,
    d_t: usize,
    d_s: usize,
    config: ProjectorConfig,
) -> (Projector, VarMap) {
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &Device::Cpu);
    let p = Projector::new(direction, form, d_t, d_s, config, vb).unwrap();
    (p, map)
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    scalar(&a.sub(b).unwrap().abs().unwrap().max_all().unwrap())
}

#[test]
fn both_directions_have_the_same_parameter_count_and_method_md_shapes() {
    let (std_p, _) = build(
        Direction::Standard,
        ProjectorForm::Linear,
        6,
        4,
        ProjectorConfig::default(),
    );
    let (inv_p, _) = build(
        Direction::Inverted,
        ProjectorForm::Linear,
        6,
        4,
        ProjectorConfig::default(),
    );
    assert_eq!(std_p.weight_matrix().unwrap().dims(), &[4, 6]); // P_st: d_s × d_t
    assert_eq!(inv_p.weight_matrix().unwrap().dims(), &[6, 4]); // P_ts: d_t × d_s
    assert_eq!(std_p.weight().elem_count(), inv_p.weight().elem_count());
}

#[test]
fn teacher_gets_no_gradient_student_and_projector_do() {
    for direction in [Direction::Standard, Direction::Inverted] {
        let (p, _) = build(
            direction,
            ProjectorForm::Conv1x1,
            3,
            2,
            ProjectorConfig::default(),
        );
        let z_s = Var::from_tensor(&random_f64(&[2, 2, 3, 3], 1).unwrap()).unwrap();
        let z_t = Var::from_tensor(&random_f64(&[2, 3, 3, 3], 2).unwrap()).unwrap();
        let loss = p
            .distill_loss(z_s.as_tensor(), z_t.as_tensor(), &SquaredL2PerRow)
            .unwrap();
        let grads = loss.backward().unwrap();
        assert!(
            grads.get(z_t.as_tensor()).is_none(),
            "{direction}: teacher received a gradient"
        );
        let gs = grads.get(z_s.as_tensor()).expect("student gradient");
        let gw = grads.get(p.weight()).expect("projector gradient");
        assert!(scalar(&gs.abs().unwrap().sum_all().unwrap()) > 0.0);
        assert!(scalar(&gw.abs().unwrap().sum_all().unwrap()) > 0.0);
    }
}

#[test]
fn conv1x1_on_a_1x1_map_equals_linear_on_pooled_features() {
    for direction in [Direction::Standard, Direction::Inverted] {
        let cfg = ProjectorConfig {
            bias: true,
            ..Default::default()
        };
        let (conv, _) = build(direction, ProjectorForm::Conv1x1, 5, 3, cfg);
        let mut tensors = HashMap::new();
        let (d_in, d_out) = direction.projector_shape(5, 3);
        tensors.insert(
            "weight".to_string(),
            conv.weight().reshape((d_out, d_in)).unwrap(),
        );
        tensors.insert("bias".to_string(), conv.bias().unwrap().clone());
        let vb = VarBuilder::from_tensors(tensors, DType::F64, &Device::Cpu);
        let linear = Projector::new(direction, ProjectorForm::Linear, 5, 3, cfg, vb).unwrap();
        let z_s = random_f64(&[4, 3], 3).unwrap();
        let z_t = random_f64(&[4, 5], 4).unwrap();
        let pooled = linear.distill_loss(&z_s, &z_t, &SquaredL2PerRow).unwrap();
        let dense = conv
            .distill_loss(
                &z_s.reshape((4, 3, 1, 1)).unwrap(),
                &z_t.reshape((4, 5, 1, 1)).unwrap(),
                &SquaredL2PerRow,
            )
            .unwrap();
        assert!((scalar(&pooled) - scalar(&dense)).abs() < 1e-12);
    }
}

#[test]
fn conv1x1_matches_a_hand_written_per_position_product() {
    // Inverted: compare z_s[n,:,h,w] with P_tsᵀ z_t[n,:,h,w] at every position.
    let (p, _) = build(
        Direction::Inverted,
        ProjectorForm::Conv1x1,
        3,
        2,
        ProjectorConfig::default(),
    );
    let z_s = random_f64(&[2, 2, 2, 3], 5).unwrap();
    let z_t = random_f64(&[2, 3, 2, 3], 6).unwrap();
    let pm = p.weight_matrix().unwrap().to_vec2::<f64>().unwrap(); // 3 × 2
    let zs: Vec<f64> = z_s.flatten_all().unwrap().to_vec1().unwrap();
    let zt: Vec<f64> = z_t.flatten_all().unwrap().to_vec1().unwrap();
    let (n, hw) = (2, 6);
    let mut sum = 0.0;
    for b in 0..n {
        for pos in 0..hw {
            for out in 0..2 {
                let proj: f64 = (0..3)
                    .map(|c| zt[(b * 3 + c) * hw + pos] * pm[c][out])
                    .sum();
                let d = zs[(b * 2 + out) * hw + pos] - proj;
                sum += d * d;
            }
        }
    }
    let expect = sum / (n * hw) as f64;
    let got = scalar(&p.distill_loss(&z_s, &z_t, &SquaredL2PerRow).unwrap());
    assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
}

#[test]
fn teacher_map_is_resized_to_the_student_size() {
    let (p, _) = build(
        Direction::Inverted,
        ProjectorForm::Conv1x1,
        3,
        2,
        ProjectorConfig::default(),
    );
    let z_s = random_f64(&[2, 2, 4, 6], 7).unwrap();
    let z_t_small = random_f64(&[2, 3, 2, 3], 8).unwrap();
    let resized = resize_bilinear(&z_t_small, 4, 6).unwrap();
    let a = p.distill_loss(&z_s, &z_t_small, &SquaredL2PerRow).unwrap();
    let b = p.distill_loss(&z_s, &resized, &SquaredL2PerRow).unwrap();
    assert!((scalar(&a) - scalar(&b)).abs() < 1e-12);
}

#[test]
fn wrong_shapes_are_errors_naming_the_tensor() {
    let (p, _) = build(
        Direction::Standard,
        ProjectorForm::Linear,
        6,
        4,
        ProjectorConfig::default(),
    );
    let ok_s = random_f64(&[3, 4], 1).unwrap();
    let ok_t = random_f64(&[3, 6], 1).unwrap();
    let bad_width = random_f64(&[3, 5], 1).unwrap();
    let dense = random_f64(&[3, 4, 2, 2], 1).unwrap();
    let other_batch = random_f64(&[2, 6], 1).unwrap();
    for (s, t, who) in [
        (&bad_width, &ok_t, "student"),
        (&ok_s, &bad_width, "teacher"),
        (&dense, &ok_t, "student"),
        (&ok_s, &other_batch, "teacher"),
    ] {
        match p.distill_loss(s, t, &SquaredL2PerRow) {
            Err(e @ Error::Shape { .. }) => assert!(e.to_string().contains(who), "{e}"),
            other => panic!("expected a shape error, got {other:?}"),
        }
    }
}

#[test]
fn orthogonal_projector_starts_orthogonal_and_retract_restores_it() {
    for direction in [Direction::Standard, Direction::Inverted] {
        let (p, map) = build(
            direction,
            ProjectorForm::Orthogonal,
            7,
            4,
            ProjectorConfig::default(),
        );
        assert!(p.orthogonality_error().unwrap() < 1e-9);
        let z_s = random_f64(&[5, 4], 9).unwrap();
        let z_t = random_f64(&[5, 7], 10).unwrap();
        let loss = p.distill_loss(&z_s, &z_t, &SquaredL2PerRow).unwrap();
        let grads = loss.backward().unwrap();
        for var in map.all_vars() {
            let g = grads.get(var.as_tensor()).unwrap();
            var.set(&(var.as_tensor() - g.affine(0.5, 0.0).unwrap()).unwrap())
                .unwrap();
        }
        assert!(
            p.orthogonality_error().unwrap() > 1e-3,
            "the step should leave the manifold"
        );
        p.retract().unwrap();
        assert!(p.orthogonality_error().unwrap() < 1e-9, "{direction}");
        p.retract().unwrap(); // already orthogonal: a fixed point, not an error
                              // Semi-orthogonal: the shorter side (4) is orthonormal, so ‖P‖_F² = 4.
        let fro = scalar(&p.weight_matrix().unwrap().sqr().unwrap().sum_all().unwrap());
        assert!((fro - 4.0).abs() < 1e-8);
    }
}

#[test]
fn retract_is_a_no_op_for_plain_linear_projectors() {
    let (p, _) = build(
        Direction::Inverted,
        ProjectorForm::Linear,
        3,
        3,
        ProjectorConfig::default(),
    );
    let before = p.weight().copy().unwrap();
    p.retract().unwrap();
    assert_eq!(max_abs_diff(&before, p.weight()), 0.0);
}

fn split_sum_check(direction: Direction, cfg: ProjectorConfig, form: ProjectorForm, dense: bool) {
    let (p, _) = build(direction, form, 5, 3, cfg);
    let (z_s, z_t) = if dense {
        (
            random_f64(&[2, 3, 3, 2], 11).unwrap(),
            random_f64(&[2, 5, 3, 2], 12).unwrap(),
        )
    } else {
        (
            random_f64(&[9, 3], 11).unwrap(),
            random_f64(&[9, 5], 12).unwrap(),
        )
    };
    let terms = p.distill(&z_s, &z_t, &SquaredL2PerRow).unwrap();
    let total = scalar(&terms.total);
    let transfer = scalar(terms.transfer.as_ref().unwrap());
    let spectral = scalar(terms.spectral.as_ref().unwrap());
    assert!(transfer >= 0.0 && spectral >= 0.0);
    assert!(
        (transfer + spectral - total).abs() <= 1e-9 * total,
        "{direction} {cfg:?}: {transfer} + {spectral} != {total}"
    );
}

#[test]
fn split_terms_add_up_to_the_loss() {
    for direction in [Direction::Standard, Direction::Inverted] {
        for cfg in [
            ProjectorConfig::default(),
            ProjectorConfig {
                bias: true,
                ..Default::default()
            },
            ProjectorConfig {
                bias: true,
                student_norm: FeatureNorm::BatchNorm,
                teacher_norm: FeatureNorm::BatchNorm,
                seed: 3,
            },
            ProjectorConfig {
                student_norm: FeatureNorm::L2,
                teacher_norm: FeatureNorm::LayerNorm,
                ..Default::default()
            },
        ] {
            split_sum_check(direction, cfg, ProjectorForm::Linear, false);
            split_sum_check(direction, cfg, ProjectorForm::Conv1x1, true);
        }
    }
}

#[test]
fn inverted_spectral_term_depends_on_the_student_only() {
    // ‖(I − Π_t) Z_s‖²/n is the same for any projector (here with bias and BN on the teacher
    // side, both of which keep the projected side inside span[Z_t, 1]).
    let cfg = ProjectorConfig {
        bias: true,
        teacher_norm: FeatureNorm::BatchNorm,
        ..Default::default()
    };
    let z_s = random_f64(&[10, 3], 13).unwrap();
    let z_t = random_f64(&[10, 4], 14).unwrap();
    let (p1, _) = build(Direction::Inverted, ProjectorForm::Linear, 4, 3, cfg);
    let (p2, _) = build(
        Direction::Inverted,
        ProjectorForm::Linear,
        4,
        3,
        ProjectorConfig { seed: 9, ..cfg },
    );
    assert!(max_abs_diff(p1.weight(), p2.weight()) > 1e-3);
    let s1 = scalar(
        p1.distill(&z_s, &z_t, &SquaredL2PerRow)
            .unwrap()
            .spectral
            .as_ref()
            .unwrap(),
    );
    let s2 = scalar(
        p2.distill(&z_s, &z_t, &SquaredL2PerRow)
            .unwrap()
            .spectral
            .as_ref()
            .unwrap(),
    );
    assert!((s1 - s2).abs() < 1e-10 * s1.max(1e-300), "{s1} vs {s2}");
    assert!(s1 > 0.0);
}

struct NotSquared;
impl FeatureDistance for NotSquared {
    fn distance(&self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        (a - b)?.abs()?.mean_all()
    }
}

#[test]
fn no_split_for_distances_that_are_not_squared_l2() {
    let (p, _) = build(
        Direction::Inverted,
        ProjectorForm::Linear,
        4,
        3,
        ProjectorConfig::default(),
    );
    let terms = p
        .distill(
            &random_f64(&[5, 3], 1).unwrap(),
            &random_f64(&[5, 4], 2).unwrap(),
            &NotSquared,
        )
        .unwrap();
    assert!(terms.transfer.is_none() && terms.spectral.is_none());
}

fn gradcheck_projector(direction: Direction, form: ProjectorForm, cfg: ProjectorConfig) {
    let (d_t, d_s) = (4, 3);
    let (d_in, d_out) = direction.projector_shape(d_t, d_s);
    let dense = form == ProjectorForm::Conv1x1;
    let z_s = if dense {
        random_f64(&[2, d_s, 2, 2], 21)
    } else {
        random_f64(&[6, d_s], 21)
    }
    .unwrap();
    let z_t = if dense {
        random_f64(&[2, d_t, 3, 3], 22)
    } else {
        random_f64(&[6, d_t], 22)
    }
    .unwrap();
    let w_shape: Vec<usize> = if dense {
        vec![d_out, d_in, 1, 1]
    } else {
        vec![d_out, d_in]
    };
    let w = random_f64(&w_shape, 23).unwrap();
    let b = random_f64(&[d_out], 24).unwrap();
    let name = format!("{direction} {form:?} {cfg:?}");
    assert_gradients(
        &name,
        |a| {
            let mut tensors = HashMap::new();
            tensors.insert("weight".to_string(), a[1].clone());
            tensors.insert("bias".to_string(), a[2].clone());
            let vb = VarBuilder::from_tensors(tensors, DType::F64, &Device::Cpu);
            let p = Projector::new(direction, form, d_t, d_s, cfg, vb)?;
            Ok(p.distill_loss(&a[0], &z_t, &SquaredL2PerRow)?)
        },
        &[z_s, w, b],
        1e-6,
        1e-6,
    );
}

#[test]
fn distill_loss_has_exact_gradients() {
    for direction in [Direction::Standard, Direction::Inverted] {
        for cfg in [
            ProjectorConfig {
                bias: true,
                ..Default::default()
            },
            ProjectorConfig {
                bias: true,
                student_norm: FeatureNorm::BatchNorm,
                teacher_norm: FeatureNorm::BatchNorm,
                seed: 0,
            },
            ProjectorConfig {
                bias: true,
                student_norm: FeatureNorm::LayerNorm,
                teacher_norm: FeatureNorm::L2,
                seed: 0,
            },
        ] {
            gradcheck_projector(direction, ProjectorForm::Linear, cfg);
            gradcheck_projector(direction, ProjectorForm::Conv1x1, cfg);
        }
    }
}

#[test]
fn config_reads_the_kebab_case_words_of_the_trainer_toml() {
    #[derive(serde::Deserialize)]
    struct Section {
        direction: Direction,
        form: ProjectorForm,
        projector: ProjectorConfig,
    }
    let s: Section = toml::from_str(
        r#"
direction = "inverted"
form = "conv1x1"
[projector]
bias = true
student-norm = "batch-norm"
teacher-norm = "l2"
"#,
    )
    .unwrap();
    assert_eq!(s.direction, Direction::Inverted);
    assert_eq!(s.form, ProjectorForm::Conv1x1);
    assert_eq!(
        s.projector,
        ProjectorConfig {
            bias: true,
            student_norm: FeatureNorm::BatchNorm,
            teacher_norm: FeatureNorm::L2,
            seed: 0
        }
    );
    assert!(toml::from_str::<ProjectorConfig>("bias = true\nstudent_nrom = \"l2\"").is_err());
}

#[test]
fn initialisation_is_determined_by_the_seed() {
    let cfg = ProjectorConfig {
        bias: true,
        ..Default::default()
    };
    for form in [
        ProjectorForm::Linear,
        ProjectorForm::Conv1x1,
        ProjectorForm::Orthogonal,
    ] {
        let (a, _) = build(Direction::Inverted, form, 5, 3, cfg);
        let (b, _) = build(Direction::Inverted, form, 5, 3, cfg);
        let (c, _) = build(
            Direction::Inverted,
            form,
            5,
            3,
            ProjectorConfig { seed: 1, ..cfg },
        );
        assert_eq!(max_abs_diff(a.weight(), b.weight()), 0.0, "{form:?}");
        assert_eq!(max_abs_diff(a.bias().unwrap(), b.bias().unwrap()), 0.0);
        assert!(max_abs_diff(a.weight(), c.weight()) > 1e-3, "{form:?}");
        // PyTorch's bound 1/√in for the plain forms.
        if form != ProjectorForm::Orthogonal {
            assert!(scalar(&a.weight().abs().unwrap().max_all().unwrap()) <= 1.0 / 5f64.sqrt());
        }
    }
}
