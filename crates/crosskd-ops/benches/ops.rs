//! Criterion benchmarks of single crosskd-ops convolutions against candle's, on the reference
//! layer of issue 3 (16×32×64×64 input, 3×3 conv 32→32).

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use crosskd_ops::conv::{conv2d, Conv2dConfig};

fn reference_layer(c: &mut Criterion) {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (16, 32, 64, 64), &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (32, 32, 3, 3), &dev).unwrap()).unwrap();
    let cfg = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let mut group = c.benchmark_group("conv3x3_16x32x64x64");
    group.sample_size(10);
    group.bench_function("crosskd_forward", |b| {
        b.iter(|| conv2d(x.as_tensor(), w.as_tensor(), None, cfg).unwrap())
    });
    group.bench_function("candle_forward", |b| {
        b.iter(|| x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap())
    });
    group.bench_function("crosskd_forward_backward", |b| {
        b.iter(|| {
            let y = conv2d(x.as_tensor(), w.as_tensor(), None, cfg).unwrap();
            y.sum_all().unwrap().backward().unwrap()
        })
    });
    group.bench_function("candle_forward_backward", |b| {
        b.iter(|| {
            let y = x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap();
            y.sum_all().unwrap().backward().unwrap()
        })
    });
    group.finish();
    let _ = DType::F32;
}

criterion_group!(benches, reference_layer);
criterion_main!(benches);
