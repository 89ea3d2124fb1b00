//! Floats in JSON files that read back whatever their value.
//!
//! JSON has no NaN or infinity, and `serde_json` writes them as `null`, which then fails to read
//! back into an `f64`: one diverged metric would make `summary.json` or `metrics.jsonl`
//! unreadable, and with it the reproduction's report. Here a finite value is a plain number and a
//! non-finite one the string `"NaN"`, `"inf"` or `"-inf"`; reading accepts those strings and, for
//! files written before this rule, `null` as NaN. Use the submodules with `#[serde(with = …)]`.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// The JSON form of one float.
fn to_json_value(v: f64) -> FloatRepr {
    if v.is_finite() {
        FloatRepr::Number(v)
    } else if v.is_nan() {
        FloatRepr::Text("NaN")
    } else if v > 0.0 {
        FloatRepr::Text("inf")
    } else {
        FloatRepr::Text("-inf")
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum FloatRepr {
    Number(f64),
    Text(&'static str),
}

/// A float as [`FloatRepr`] writes it, read back.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LosslessF64(f64);

impl Serialize for LosslessF64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        to_json_value(self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for LosslessF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FloatVisitor;
        impl Visitor<'_> for FloatVisitor {
            type Value = LosslessF64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, \"NaN\", \"inf\" or \"-inf\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LosslessF64, E> {
                Ok(LosslessF64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LosslessF64, E> {
                Ok(LosslessF64(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LosslessF64, E> {
                Ok(LosslessF64(v as f64))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LosslessF64, E> {
                Ok(LosslessF64(f64::NAN))
            }
            fn visit_none<E: de::Error>(self) -> Result<LosslessF64, E> {
                Ok(LosslessF64(f64::NAN))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LosslessF64, E> {
                match v {
                    "NaN" | "nan" => Ok(LosslessF64(f64::NAN)),
                    "inf" | "+inf" | "Infinity" => Ok(LosslessF64(f64::INFINITY)),
                    "-inf" | "-Infinity" => Ok(LosslessF64(f64::NEG_INFINITY)),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
        }
        d.deserialize_any(FloatVisitor)
    }
}

/// `#[serde(with = "json_float::plain")]` for an `f64`.
pub mod plain {
    use super::*;

    /// Writes `v` as a number or a non-finite marker.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        LosslessF64(*v).serialize(s)
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(LosslessF64::deserialize(d)?.0)
    }
}

/// `#[serde(with = "json_float::optional")]` for an `Option<f64>`.
pub mod optional {
    use super::*;

    /// Writes `None` as `null`, a value as [`plain`] does.
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        v.map(LosslessF64).serialize(s)
    }

    /// Reads what [`serialize`] wrote (`null` is `None` here).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Option::<LosslessF64>::deserialize(d)?.map(|v| v.0))
    }
}

/// `#[serde(with = "json_float::list")]` for a `Vec<f64>`.
pub mod list {
    use super::*;

    /// Writes every element as [`plain`] does.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|x| LosslessF64(*x))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<LosslessF64>::deserialize(d)?
            .into_iter()
            .map(|v| v.0)
            .collect())
    }
}

/// `#[serde(with = "json_float::map")]` for a `BTreeMap<String, f64>` of metrics.
pub mod map {
    use std::collections::BTreeMap;

    use super::*;

    /// Writes every value as [`plain`] does.
    pub fn serialize<S: Serializer>(v: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|(k, x)| (k, LosslessF64(*x)))
            .collect::<BTreeMap<_, _>>()
            .serialize(s)
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        Ok(BTreeMap::<String, LosslessF64>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect())
    }
}

/// Metrics as one JSON object, non-finite values written as in [`map`].
pub fn metrics_json(metrics: &std::collections::BTreeMap<String, f64>) -> String {
    let mut out = Vec::new();
    // Writing strings and numbers into a Vec cannot fail.
    let _ = map::serialize(metrics, &mut serde_json::Serializer::new(&mut out));
    String::from_utf8(out).unwrap_or_default()
}

/// `#[serde(with = "json_float::best")]` for the `Option<(f64, u64)>` best value and step.
pub mod best {
    use super::*;

    /// Writes `[value, step]` with the value as [`plain`] does.
    pub fn serialize<S: Serializer>(v: &Option<(f64, u64)>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|(x, step)| (LosslessF64(x), step)).serialize(s)
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(f64, u64)>, D::Error> {
        Ok(Option::<(LosslessF64, u64)>::deserialize(d)?.map(|(x, step)| (x.0, step)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "plain")]
        a: f64,
        #[serde(with = "optional")]
        b: Option<f64>,
        #[serde(with = "list")]
        c: Vec<f64>,
        #[serde(with = "map")]
        d: BTreeMap<String, f64>,
        #[serde(with = "best")]
        e: Option<(f64, u64)>,
    }

    #[test]
    fn non_finite_values_round_trip() {
        let s = Sample {
            a: f64::NAN,
            b: Some(f64::INFINITY),
            c: vec![1.5, f64::NEG_INFINITY],
            d: BTreeMap::from([("loss".to_string(), f64::NAN), ("x".into(), 0.1)]),
            e: Some((f64::NAN, 3)),
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("null"), "{text}");
        let back: Sample = serde_json::from_str(&text).unwrap();
        assert!(back.a.is_nan());
        assert_eq!(back.b, Some(f64::INFINITY));
        assert_eq!(back.c[1], f64::NEG_INFINITY);
        assert!(back.d["loss"].is_nan());
        assert_eq!(back.d["x"], 0.1);
        assert!(back.e.unwrap().0.is_nan() && back.e.unwrap().1 == 3);
    }

    #[test]
    fn finite_values_stay_plain_numbers_and_old_nulls_read_as_nan() {
        let text = r#"{"a":0.25,"b":null,"c":[],"d":{"m":null},"e":[1e-3,2]}"#;
        let s: Sample = serde_json::from_str(text).unwrap();
        assert_eq!(s.a, 0.25);
        assert_eq!(s.b, None);
        assert!(s.d["m"].is_nan());
        let again = serde_json::to_string(&s).unwrap();
        assert!(again.starts_with(r#"{"a":0.25,"#), "{again}");
    }
}
