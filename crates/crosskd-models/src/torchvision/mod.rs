//! Networks in the torchvision layout: parameter names match torchvision's state dicts, so
//! converted ImageNet weights load by name.

pub mod mobilenet_v2;
pub mod resnet;
pub mod vgg16;
