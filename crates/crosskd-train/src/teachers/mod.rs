//! Pretrained teachers from the Hugging Face hub: the hf-hub cache ([`hub`]), the list of named
//! teachers shipped in `models/teachers.toml` ([`catalogue`]), `crosskd fetch-teachers` /
//! `crosskd list teachers` ([`fetch`]), and the weights of a configured teacher ([`source`]).

pub mod catalogue;
pub mod fetch;
pub mod hub;
pub mod source;

pub use catalogue::{Catalogue, CatalogueEntry, Pinning};
pub use hub::{HubError, HubFile};
pub use source::{pretrained_weights, PretrainedWeights};
