//! Student networks: a UNet-style encoder–decoder for the dense tasks and a small ResNet-style
//! classifier backbone. Both output a feature for a task head (crosskd-heads) to consume.

pub mod small_resnet;
pub mod unet;
