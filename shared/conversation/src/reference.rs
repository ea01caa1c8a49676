//! Small reference data from `content/`: the conditions (onboarding order, names per language)
//! and the emergency number for a patient's time zone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use careloop_core::{Language, Slug, TimeZone};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ReferenceError {
    pub path: PathBuf,
    pub problem: String,
}

/// A condition careloop has content for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionInfo {
    pub code: Slug,
    names: BTreeMap<Language, String>,
}

impl ConditionInfo {
    pub fn name(&self, language: Language) -> &str {
        self.names
            .get(&language)
            .or_else(|| self.names.get(&Language::English))
            .map_or(self.code.as_str(), String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// In onboarding order.
    pub conditions: Vec<ConditionInfo>,
    emergency_default: String,
    emergency_by_timezone: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditions {
    condition: Vec<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmergency {
    default: String,
    #[serde(default)]
    by_timezone: BTreeMap<String, String>,
}

fn read(path: &Path) -> Result<String, ReferenceError> {
    std::fs::read_to_string(path).map_err(|e| ReferenceError {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })
}

impl Reference {
    /// Reads `<content>/conditions.toml` and `<content>/safety/emergency.toml`.
    pub fn load(content_dir: &Path) -> Result<Reference, ReferenceError> {
        let path = content_dir.join("conditions.toml");
        let err = |path: &Path, problem: String| ReferenceError {
            path: path.to_path_buf(),
            problem,
        };
        let raw: RawConditions =
            toml::from_str(&read(&path)?).map_err(|e| err(&path, e.message().to_owned()))?;
        let mut conditions = Vec::new();
        for mut entry in raw.condition {
            let code = entry
                .remove("code")
                .ok_or_else(|| err(&path, "every [[condition]] needs a code".into()))?;
            let code: Slug = code.parse().map_err(|e| err(&path, format!("{e}")))?;
            let mut names = BTreeMap::new();
            for (key, name) in entry {
                let language: Language = key.parse().map_err(|e| err(&path, format!("{e}")))?;
                names.insert(language, name);
            }
            conditions.push(ConditionInfo { code, names });
        }
        let path = content_dir.join("safety").join("emergency.toml");
        let raw: RawEmergency =
            toml::from_str(&read(&path)?).map_err(|e| err(&path, e.message().to_owned()))?;
        Ok(Reference {
            conditions,
            emergency_default: raw.default,
            emergency_by_timezone: raw.by_timezone,
        })
    }

    pub fn condition(&self, code: &Slug) -> Option<&ConditionInfo> {
        self.conditions.iter().find(|c| &c.code == code)
    }

    /// The emergency number for a time zone: the longest matching prefix, else the default.
    pub fn emergency_number(&self, timezone: TimeZone) -> &str {
        let name = timezone.name();
        self.emergency_by_timezone
            .iter()
            .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.emergency_default.as_str(), |(_, n)| n.as_str())
    }
}
