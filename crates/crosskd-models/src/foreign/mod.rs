//! Networks wrapped from candle-transformers (frozen use only).

#[cfg(feature = "dinov2")]
pub mod dinov2;
