//! Which MPC-friendly approximation replaces each kind of nonlinear op (APPROXIMATIONS.md).
//!
//! A plan records the profile of every op kind ([`ApproxConfig`], in
//! [`ProtocolOptions::approx`](crate::ProtocolOptions::approx)) as applied by the
//! compiler's pass `approximate`: a kind whose profile defines no form for it reads
//! `exact` here. The text form is the one `comet compile --approx`
//! takes: a profile for the whole model (`puma`), `kind=profile` pairs
//! (`softmax=pcf,gelu=bolt`), or both, where the bare profile covers the kinds not named
//! (`puma,softmax=exact`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A named set of approximations, after the system that introduced it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ApproxProfile {
    /// The precise baseline: `expand`'s recipes, nothing replaced.
    #[default]
    Exact,
    /// Liu & Liu, arXiv 2305.18396: ReLU activations, `relun1` softmax, affine norms.
    Pcf,
    /// PUMA (SecretFlow SPU): piecewise polynomials, exp by `(1 + x/32)^32`.
    Puma,
    /// BOLT: GeLU polynomial in `|x|` cut at 2.7, exp by `(1 + x/2^n)^(2^n)`.
    Bolt,
    /// Bumblebee: BOLT's forms with the GeLU cut at 3 and the `seg4` SiLU.
    Bumblebee,
    /// MPCFormer: `Quad` GeLU and `2Quad` softmax (for distilled models).
    Mpcformer,
    /// SIGMA-style FSS lookup tables: GeLU/SiLU as ReLU minus a tabulated gap, softmax's
    /// exponential from a table.
    Lut,
}

impl ApproxProfile {
    /// Every profile, in a fixed order.
    pub const ALL: [ApproxProfile; 7] = [
        ApproxProfile::Exact,
        ApproxProfile::Pcf,
        ApproxProfile::Puma,
        ApproxProfile::Bolt,
        ApproxProfile::Bumblebee,
        ApproxProfile::Mpcformer,
        ApproxProfile::Lut,
    ];

    /// The name `--approx` takes.
    pub fn name(self) -> &'static str {
        match self {
            ApproxProfile::Exact => "exact",
            ApproxProfile::Pcf => "pcf",
            ApproxProfile::Puma => "puma",
            ApproxProfile::Bolt => "bolt",
            ApproxProfile::Bumblebee => "bumblebee",
            ApproxProfile::Mpcformer => "mpcformer",
            ApproxProfile::Lut => "lut",
        }
    }

    fn is_exact(&self) -> bool {
        *self == ApproxProfile::Exact
    }
}

/// A kind of nonlinear op that a profile may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApproxKind {
    /// `gelu`.
    Gelu,
    /// `silu`.
    Silu,
    /// `softmax` (with its exponential and reciprocal).
    Softmax,
    /// `layer_norm` and `rms_norm`.
    Norm,
}

impl ApproxKind {
    /// Every kind, in the order the text form lists them.
    pub const ALL: [ApproxKind; 4] = [
        ApproxKind::Gelu,
        ApproxKind::Silu,
        ApproxKind::Softmax,
        ApproxKind::Norm,
    ];

    /// The name `--approx` takes.
    pub fn name(self) -> &'static str {
        match self {
            ApproxKind::Gelu => "gelu",
            ApproxKind::Silu => "silu",
            ApproxKind::Softmax => "softmax",
            ApproxKind::Norm => "norm",
        }
    }
}

/// The profile of every op kind. Serialized with the exact kinds left out, so a plan
/// without approximations has no trace of this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproxConfig {
    /// For `gelu`.
    #[serde(default, skip_serializing_if = "ApproxProfile::is_exact")]
    pub gelu: ApproxProfile,
    /// For `silu`.
    #[serde(default, skip_serializing_if = "ApproxProfile::is_exact")]
    pub silu: ApproxProfile,
    /// For `softmax`.
    #[serde(default, skip_serializing_if = "ApproxProfile::is_exact")]
    pub softmax: ApproxProfile,
    /// For `layer_norm` and `rms_norm`.
    #[serde(default, skip_serializing_if = "ApproxProfile::is_exact")]
    pub norm: ApproxProfile,
}

impl ApproxConfig {
    /// `profile` for every kind.
    pub fn uniform(profile: ApproxProfile) -> Self {
        ApproxConfig {
            gelu: profile,
            silu: profile,
            softmax: profile,
            norm: profile,
        }
    }

    /// The profile of `kind`.
    pub fn get(&self, kind: ApproxKind) -> ApproxProfile {
        match kind {
            ApproxKind::Gelu => self.gelu,
            ApproxKind::Silu => self.silu,
            ApproxKind::Softmax => self.softmax,
            ApproxKind::Norm => self.norm,
        }
    }

    /// Sets the profile of `kind`.
    pub fn set(&mut self, kind: ApproxKind, profile: ApproxProfile) {
        match kind {
            ApproxKind::Gelu => self.gelu = profile,
            ApproxKind::Silu => self.silu = profile,
            ApproxKind::Softmax => self.softmax = profile,
            ApproxKind::Norm => self.norm = profile,
        }
    }

    /// Nothing is replaced.
    pub fn is_exact(&self) -> bool {
        *self == ApproxConfig::default()
    }
}

/// `exact`; one profile's name when every kind has it; else the non-exact kinds as
/// `kind=profile` pairs in [`ApproxKind::ALL`] order. Reads back with [`FromStr`].
impl fmt::Display for ApproxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = ApproxProfile::ALL
            .iter()
            .find(|p| ApproxConfig::uniform(**p) == *self)
        {
            return f.write_str(p.name());
        }
        let pairs: Vec<String> = ApproxKind::ALL
            .iter()
            .filter(|k| !self.get(**k).is_exact())
            .map(|k| format!("{}={}", k.name(), self.get(*k).name()))
            .collect();
        f.write_str(&pairs.join(","))
    }
}

/// Why an `--approx` string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApproxParseError {
    /// Not a profile name.
    #[error("unknown approximation profile `{0}`: expected one of {list}", list = profiles())]
    UnknownProfile(String),
    /// Not an op kind.
    #[error("unknown op kind `{0}`: expected one of {list}", list = kinds())]
    UnknownKind(String),
    /// An item is not `profile` or `kind=profile`.
    #[error(
        "malformed item `{0}`: expected a profile ({profiles}) or `kind=profile` with kind \
         one of {kinds}, items separated by commas",
        profiles = profiles(),
        kinds = kinds()
    )]
    Malformed(String),
    /// A kind is named twice.
    #[error("op kind `{0}` is given more than one profile")]
    DuplicateKind(&'static str),
    /// More than one bare profile.
    #[error(
        "more than one profile for the whole model (`{0}` and `{1}`): name at most one, and \
         `kind=profile` for the others"
    )]
    DuplicateDefault(&'static str, &'static str),
}

fn profiles() -> String {
    ApproxProfile::ALL.map(|p| p.name()).join(", ")
}

fn kinds() -> String {
    ApproxKind::ALL.map(|k| k.name()).join(", ")
}

impl FromStr for ApproxProfile {
    type Err = ApproxParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApproxProfile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| ApproxParseError::UnknownProfile(s.to_string()))
    }
}

impl FromStr for ApproxKind {
    type Err = ApproxParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApproxKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ApproxParseError::UnknownKind(s.to_string()))
    }
}

impl FromStr for ApproxConfig {
    type Err = ApproxParseError;

    /// Comma-separated items, each a profile (at most one: it covers the kinds not named)
    /// or `kind=profile` (each kind at most once). Surrounding spaces are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut default: Option<ApproxProfile> = None;
        let mut named: Vec<(ApproxKind, ApproxProfile)> = Vec::new();
        for item in s.split(',').map(str::trim) {
            match item.split_once('=') {
                None if item.is_empty() => return Err(ApproxParseError::Malformed(item.into())),
                None => {
                    let p: ApproxProfile = item.parse()?;
                    if let Some(q) = default {
                        return Err(ApproxParseError::DuplicateDefault(q.name(), p.name()));
                    }
                    default = Some(p);
                }
                Some((k, p)) => {
                    let (k, p) = (k.trim(), p.trim());
                    if k.is_empty() || p.is_empty() || p.contains('=') {
                        return Err(ApproxParseError::Malformed(item.into()));
                    }
                    let kind: ApproxKind = k.parse()?;
                    if named.iter().any(|(n, _)| *n == kind) {
                        return Err(ApproxParseError::DuplicateKind(kind.name()));
                    }
                    named.push((kind, p.parse()?));
                }
            }
        }
        let mut config = ApproxConfig::uniform(default.unwrap_or_default());
        for (kind, profile) in named {
            config.set(kind, profile);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ApproxConfig, String> {
        s.parse::<ApproxConfig>().map_err(|e| e.to_string())
    }

    #[test]
    fn whole_model_and_per_kind() {
        assert_eq!(
            parse("puma"),
            Ok(ApproxConfig::uniform(ApproxProfile::Puma))
        );
        let mixed = parse("softmax=pcf, gelu=bolt,norm=exact").unwrap();
        assert_eq!(
            (mixed.gelu, mixed.silu, mixed.softmax, mixed.norm),
            (
                ApproxProfile::Bolt,
                ApproxProfile::Exact,
                ApproxProfile::Pcf,
                ApproxProfile::Exact
            )
        );
        let over = parse("puma,softmax=exact").unwrap();
        assert_eq!(
            (over.gelu, over.softmax),
            (ApproxProfile::Puma, ApproxProfile::Exact)
        );
    }

    #[test]
    fn display_reads_back() {
        for s in [
            "exact",
            "pcf",
            "gelu=bolt,softmax=pcf",
            "silu=puma,norm=pcf",
        ] {
            let c = parse(s).unwrap();
            assert_eq!(c.to_string(), s);
            assert_eq!(parse(&c.to_string()), Ok(c));
        }
        assert_eq!(
            parse("softmax=pcf,gelu=bolt").unwrap().to_string(),
            "gelu=bolt,softmax=pcf"
        );
    }

    #[test]
    fn errors_say_what_is_accepted() {
        let profiles = "exact, pcf, puma, bolt, bumblebee, mpcformer, lut";
        assert_eq!(
            parse("fast").unwrap_err(),
            format!("unknown approximation profile `fast`: expected one of {profiles}")
        );
        assert_eq!(
            parse("exp=pcf").unwrap_err(),
            "unknown op kind `exp`: expected one of gelu, silu, softmax, norm"
        );
        for bad in ["softmax=", "=pcf", "", "puma,", "gelu=pcf=puma"] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with("malformed item"), "{bad}: {e}");
            assert!(e.contains(profiles) && e.contains("gelu, silu"), "{e}");
        }
        assert_eq!(
            parse("gelu=pcf,gelu=puma").unwrap_err(),
            "op kind `gelu` is given more than one profile"
        );
        assert!(
            parse("pcf,puma")
                .unwrap_err()
                .starts_with("more than one profile")
        );
    }

    #[test]
    fn exact_kinds_are_not_serialized() {
        let json = |c: ApproxConfig| serde_json::to_string(&c).unwrap();
        assert_eq!(json(ApproxConfig::default()), "{}");
        assert_eq!(json(parse("softmax=pcf").unwrap()), r#"{"softmax":"pcf"}"#);
        let back: ApproxConfig = serde_json::from_str(r#"{"norm":"pcf"}"#).unwrap();
        assert_eq!(back.norm, ApproxProfile::Pcf);
        assert!(serde_json::from_str::<ApproxConfig>(r#"{"exp":"pcf"}"#).is_err());
    }
}
