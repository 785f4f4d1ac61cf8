use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{AspectRatio, PromptError};

/// The provider-neutral parameters of one generation.
///
/// Providers receive them through [`GenerationParams::to_canonical_map`] and rename what they call
/// differently. Unset fields are never sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// What the media should not show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Width in pixels; with `height`, wins over `aspect_ratio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels; with `width`, wins over `aspect_ratio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Aspect ratio, turned into width and height unless both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
    /// Denoising steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_inference_steps: Option<u32>,
    /// Classifier-free guidance scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
    /// How far an edit may move from the input image, from 0 (keep it) to 1 (ignore it); image inputs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<f64>,
    /// Random seed, for reproducible media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Sampler / scheduler name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// Number of video frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_frames: Option<u32>,
    /// Video resolution label such as `480p` or `720p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Free-form provider parameters, merged last (they override the fields above).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl GenerationParams {
    /// The pixel size to ask for: explicit width and height win, else the aspect ratio's size.
    /// `None` when neither is complete (the provider's default applies).
    pub fn size(&self) -> Option<(u32, u32)> {
        match (self.width, self.height) {
            (Some(w), Some(h)) => Some((w, h)),
            _ => self.aspect_ratio.map(AspectRatio::size),
        }
    }

    /// Checks values no provider could use, with a message naming the parameter.
    pub fn validate(&self) -> Result<(), PromptError> {
        for (name, value) in [
            ("width", self.width),
            ("height", self.height),
            ("num_inference_steps", self.num_inference_steps),
            ("num_frames", self.num_frames),
        ] {
            if value == Some(0) {
                return Err(PromptError::InvalidParameter {
                    name,
                    reason: "must be greater than zero".into(),
                });
            }
        }
        if let Some(g) = self.guidance_scale
            && !g.is_finite()
        {
            return Err(PromptError::InvalidParameter {
                name: "guidance_scale",
                reason: format!("must be a finite number, got {g}"),
            });
        }
        if let Some(strength) = self.strength
            && !(0.0..=1.0).contains(&strength)
        {
            return Err(PromptError::InvalidParameter {
                name: "strength",
                reason: format!("must be between 0 and 1, got {strength}"),
            });
        }
        if let Some(r) = &self.resolution
            && r.trim().is_empty()
        {
            return Err(PromptError::InvalidParameter {
                name: "resolution",
                reason: "must not be empty (for example `480p` or `720p`)".into(),
            });
        }
        Ok(())
    }

    /// The parameters under their canonical names (`negative_prompt`, `width`, `height`,
    /// `num_inference_steps`, `guidance_scale`, `strength`, `seed`, `scheduler`, `num_frames`, `resolution`,
    /// `aspect_ratio`), then the `extra` entries, which override. Unset fields are left out; width and
    /// height come from [`GenerationParams::size`] when it is known, else as given.
    pub fn to_canonical_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        };
        put("negative_prompt", self.negative_prompt.clone().map(Value::from));
        let (width, height) = match self.size() {
            Some((w, h)) => (Some(w), Some(h)),
            None => (self.width, self.height),
        };
        put("width", width.map(Value::from));
        put("height", height.map(Value::from));
        put("num_inference_steps", self.num_inference_steps.map(Value::from));
        put("guidance_scale", self.guidance_scale.map(Value::from));
        put("strength", self.strength.map(Value::from));
        put("seed", self.seed.map(Value::from));
        put("scheduler", self.scheduler.clone().map(Value::from));
        put("num_frames", self.num_frames.map(Value::from));
        put("resolution", self.resolution.clone().map(Value::from));
        put("aspect_ratio", self.aspect_ratio.map(|r| Value::from(r.as_str())));
        for (key, value) in &self.extra {
            map.insert(key.clone(), value.clone());
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn explicit_size_wins_over_aspect_ratio() {
        let p = GenerationParams {
            width: Some(640),
            height: Some(480),
            aspect_ratio: Some(AspectRatio::WIDESCREEN),
            ..Default::default()
        };
        assert_eq!(p.size(), Some((640, 480)));
    }

    #[test]
    fn aspect_ratio_fills_size_when_one_side_is_missing() {
        let p = GenerationParams {
            width: Some(640),
            aspect_ratio: Some("9:16".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(p.size(), Some((576, 1024)));
        assert_eq!(GenerationParams::default().size(), None);
    }

    #[test]
    fn canonical_map_has_only_set_fields_and_extras_override() {
        let mut extra = Map::new();
        extra.insert("seed".into(), json!(7));
        extra.insert("style".into(), json!("anime"));
        let p = GenerationParams {
            negative_prompt: Some("blurry".into()),
            aspect_ratio: Some(AspectRatio::WIDESCREEN),
            num_inference_steps: Some(4),
            guidance_scale: Some(3.5),
            seed: Some(42),
            extra,
            ..Default::default()
        };
        assert_eq!(
            Value::Object(p.to_canonical_map()),
            json!({"negative_prompt":"blurry","width":1024,"height":576,"num_inference_steps":4,
                   "guidance_scale":3.5,"seed":7,"aspect_ratio":"16:9","style":"anime"})
        );
        assert!(GenerationParams::default().to_canonical_map().is_empty());
    }

    #[test]
    fn a_lone_width_is_passed_as_given() {
        let p = GenerationParams {
            width: Some(800),
            ..Default::default()
        };
        assert_eq!(Value::Object(p.to_canonical_map()), json!({"width": 800}));
    }

    #[test]
    fn validation_names_the_parameter() {
        let zero = GenerationParams {
            height: Some(0),
            ..Default::default()
        };
        let err = zero.validate().unwrap_err();
        assert!(err.to_string().contains("`height`"), "{err}");
        let nan = GenerationParams {
            guidance_scale: Some(f64::NAN),
            ..Default::default()
        };
        assert!(matches!(
            nan.validate(),
            Err(PromptError::InvalidParameter {
                name: "guidance_scale",
                ..
            })
        ));
        let strong = GenerationParams {
            strength: Some(1.5),
            ..Default::default()
        };
        let err = strong.validate().unwrap_err().to_string();
        assert!(err.contains("`strength`") && err.contains("between 0 and 1"), "{err}");
        assert_eq!(GenerationParams::default().validate(), Ok(()));
    }
}
