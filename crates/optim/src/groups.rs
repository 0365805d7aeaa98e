//! Parameter groups by name pattern: which parameters are projected (GaLore/CrossLore) and with
//! which rank / refresh gap / scale, which get plain AdamW (embeddings, norms, head).
//!
//! Rules are tried in order; the first whose regex matches the parameter name decides. A rule
//! with a projection only projects 2-D parameters (a 1-D bias matching the pattern is plain).
//! Unmatched parameters are plain.
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result};
use crate::projector::ProjType;

/// Regex of the LLaMA linear weights GaLore projects by default (attention and MLP projections).
pub const LLAMA_LINEAR_PATTERN: &str = r"self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj";

/// Projection settings of a group (galore-torch's per-group `rank`, `update_proj_gap`, `scale`,
/// `proj_type`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjSettings {
    /// Projection rank `r` (default 128; LLaMA-Factory uses 16). Must be in `1..=min(m, n)`.
    pub rank: usize,
    /// Refresh the projector when `step % update_proj_gap == 0` (default 200).
    pub update_proj_gap: usize,
    /// Scale `alpha` of the projected-back update (default 0.25; LLaMA-Factory uses 2.0).
    pub scale: f64,
    pub proj_type: ProjType,
}

impl Default for ProjSettings {
    fn default() -> Self {
        Self {
            rank: 128,
            update_proj_gap: 200,
            scale: 0.25,
            proj_type: ProjType::Std,
        }
    }
}

/// One group rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRule {
    /// Regex searched in the parameter name (`Regex::is_match`, so a substring suffices).
    pub pattern: String,
    /// `Some`: project 2-D parameters of this group; `None`: plain AdamW.
    pub projection: Option<ProjSettings>,
    /// Overrides the optimizer's weight decay for this group.
    #[serde(default)]
    pub weight_decay: Option<f64>,
}

impl GroupRule {
    /// Projected group for `pattern`.
    pub fn projected(pattern: &str, settings: ProjSettings) -> Self {
        Self {
            pattern: pattern.to_string(),
            projection: Some(settings),
            weight_decay: None,
        }
    }

    /// Plain (unprojected) group for `pattern`.
    pub fn plain(pattern: &str) -> Self {
        Self {
            pattern: pattern.to_string(),
            projection: None,
            weight_decay: None,
        }
    }
}

/// The default rules: LLaMA attention/MLP linear weights projected with `settings`, the rest plain.
pub fn default_rules(settings: ProjSettings) -> Vec<GroupRule> {
    vec![GroupRule::projected(LLAMA_LINEAR_PATTERN, settings)]
}

/// What a group resolves to for one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Index of the matching rule (None: no rule matched).
    pub rule: Option<usize>,
    /// Projection settings if this parameter is projected (2-D, in a projected group).
    pub projection: Option<ProjSettings>,
    pub weight_decay: Option<f64>,
}

/// Compiled group rules.
#[derive(Debug, Clone)]
pub struct ParamGroups {
    rules: Vec<GroupRule>,
    compiled: Vec<Regex>,
}

impl ParamGroups {
    /// Compiles the rules; invalid regexes and invalid settings (rank 0, gap 0, non-finite
    /// scale) are configuration errors naming the rule.
    pub fn new(rules: Vec<GroupRule>) -> Result<Self> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let re = Regex::new(&r.pattern).map_err(|e| OptimError::Config {
                param: format!("group rule {i} `{}`", r.pattern),
                msg: format!("invalid regex: {e}"),
            })?;
            if let Some(s) = &r.projection {
                let bad = |msg: &str| OptimError::Config {
                    param: format!("group rule {i} `{}`", r.pattern),
                    msg: msg.to_string(),
                };
                if s.rank == 0 {
                    return Err(bad("rank must be at least 1"));
                }
                if s.update_proj_gap == 0 {
                    return Err(bad("update_proj_gap must be at least 1"));
                }
                if !s.scale.is_finite() {
                    return Err(bad("scale must be finite"));
                }
            }
            compiled.push(re);
        }
        Ok(Self { rules, compiled })
    }

    pub fn rules(&self) -> &[GroupRule] {
        &self.rules
    }

    /// Resolves the group of parameter `name` with shape `dims`; a projected 2-D parameter whose
    /// rank exceeds `min(m, n)` is a configuration error naming it.
    pub fn resolve(&self, name: &str, dims: &[usize]) -> Result<Resolved> {
        let Some(i) = self.compiled.iter().position(|re| re.is_match(name)) else {
            return Ok(Resolved {
                rule: None,
                projection: None,
                weight_decay: None,
            });
        };
        let rule = &self.rules[i];
        let projection = match (&rule.projection, dims) {
            (Some(s), &[m, n]) => {
                if s.rank > m.min(n) {
                    return Err(OptimError::Config {
                        param: name.to_string(),
                        msg: format!(
                            "rank {} exceeds min(m, n) = {} of the [{m}, {n}] matrix \
                             (rule `{}`)",
                            s.rank,
                            m.min(n),
                            rule.pattern
                        ),
                    });
                }
                Some(s.clone())
            }
            _ => None,
        };
        Ok(Resolved {
            rule: Some(i),
            projection,
            weight_decay: rule.weight_decay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_project_llama_linears_only() -> anyhow::Result<()> {
        let s = ProjSettings {
            rank: 4,
            ..Default::default()
        };
        let g = ParamGroups::new(default_rules(s.clone()))?;
        let q = g.resolve("model.layers.3.self_attn.q_proj.weight", &[16, 16])?;
        assert_eq!(q.projection, Some(s.clone()));
        let up = g.resolve("model.layers.0.mlp.up_proj.weight", &[32, 16])?;
        assert!(up.projection.is_some());
        // 1-D parameter matching the pattern stays plain
        let b = g.resolve("model.layers.0.mlp.up_proj.bias", &[32])?;
        assert!(b.projection.is_none() && b.rule.is_some());
        for n in [
            "model.embed_tokens.weight",
            "model.norm.weight",
            "lm_head.weight",
            "model.layers.0.input_layernorm.weight",
        ] {
            assert!(g.resolve(n, &[16, 16])?.projection.is_none(), "{n}");
        }
        Ok(())
    }

    #[test]
    fn rank_errors_name_the_parameter() -> anyhow::Result<()> {
        let zero = ProjSettings {
            rank: 0,
            ..Default::default()
        };
        assert!(matches!(
            ParamGroups::new(default_rules(zero)),
            Err(OptimError::Config { .. })
        ));
        assert!(ParamGroups::new(vec![GroupRule::plain("(")]).is_err());
        let g = ParamGroups::new(default_rules(ProjSettings {
            rank: 9,
            ..Default::default()
        }))?;
        match g.resolve("model.layers.0.self_attn.k_proj.weight", &[8, 16]) {
            Err(OptimError::Config { param, msg }) => {
                assert!(param.contains("k_proj"));
                assert!(msg.contains("rank 9"), "{msg}");
            }
            other => panic!("expected config error, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn first_matching_rule_wins() -> anyhow::Result<()> {
        let g = ParamGroups::new(vec![
            GroupRule::plain(r"layers\.0\."),
            GroupRule::projected(
                "proj",
                ProjSettings {
                    rank: 2,
                    ..Default::default()
                },
            ),
        ])?;
        assert!(g
            .resolve("model.layers.0.self_attn.q_proj.weight", &[8, 8])?
            .projection
            .is_none());
        assert!(g
            .resolve("model.layers.1.self_attn.q_proj.weight", &[8, 8])?
            .projection
            .is_some());
        Ok(())
    }
}
