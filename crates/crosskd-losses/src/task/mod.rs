//! Task losses of the students: depth, segmentation, image-to-image translation, classification.

pub mod classification;
pub mod depth;
pub mod segmentation;
pub mod translation;

pub use classification::classification_cross_entropy;
pub use depth::{berhu_loss, depth_l1_loss, scale_invariant_log_loss, DepthLoss};
pub use segmentation::segmentation_cross_entropy;
pub use translation::{ssim, translation_loss, SsimConfig, TranslationLossConfig};
