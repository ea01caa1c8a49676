//! Clinician content as files: Markdown with a TOML front-matter header between `+++` lines.
//!
//! This crate only reads and validates files into [`ContentDocument`]s; loading them into the
//! database (as drafts, or approved in demo mode) is the store's and the CLI's job. Every error
//! names the file and the field, and a folder is read completely so all problems are reported at
//! once. The format is documented in `content/README.md`.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use careloop_core::{ContentKind, Language, ParseError, ReadingLevel, ReviewState, Slug};
use serde::Deserialize;

/// The largest body a content file may have.
pub const MAX_BODY_CHARS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub title: String,
    pub url: String,
}

/// One validated content file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDocument {
    pub path: PathBuf,
    pub kind: ContentKind,
    /// The topic of an article (`what-it-is`) or the name of a template (`welcome`).
    pub key: Slug,
    /// `None` for templates that serve every condition.
    pub condition: Option<Slug>,
    pub language: Language,
    pub reading_level: ReadingLevel,
    pub version: u32,
    pub review_state: ReviewState,
    pub title: String,
    pub sources: Vec<Source>,
    /// Seed content written for the project; an organization's clinicians must review it.
    pub seed: bool,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub struct ContentError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for ContentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    kind: String,
    key: String,
    condition: Option<String>,
    language: String,
    reading_level: String,
    version: u32,
    review_state: String,
    title: String,
    #[serde(default)]
    seed: bool,
    #[serde(default)]
    sources: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    title: String,
    url: String,
}

impl ContentDocument {
    /// Parses one file's text; `path` is only used in errors and kept for provenance.
    pub fn parse(path: &Path, text: &str) -> Result<ContentDocument, ContentError> {
        let err = |problem: String| ContentError {
            path: path.to_path_buf(),
            problem,
        };
        let field = |e: ParseError| err(e.to_string());

        let text = text
            .strip_prefix('\u{feff}')
            .unwrap_or(text)
            .replace("\r\n", "\n");
        let rest = text
            .strip_prefix("+++\n")
            .ok_or_else(|| err("must start with a +++ line opening the front matter".into()))?;
        let (header, body) = rest
            .split_once("\n+++\n")
            .or_else(|| rest.strip_suffix("\n+++").map(|h| (h, "")))
            .ok_or_else(|| err("the front matter is not closed by a +++ line".into()))?;
        let front: FrontMatter =
            toml::from_str(header).map_err(|e| err(format!("front matter: {}", e.message())))?;

        let kind: ContentKind = front.kind.parse().map_err(field)?;
        let condition = front
            .condition
            .as_deref()
            .map(str::parse::<Slug>)
            .transpose()
            .map_err(field)?;
        if kind == ContentKind::Article && condition.is_none() {
            return Err(err(
                "invalid condition: an article must name its condition".into()
            ));
        }
        let title = front.title.trim().to_owned();
        if title.is_empty() {
            return Err(err("invalid title: must not be empty".into()));
        }
        let body = body.trim().to_owned();
        if body.is_empty() {
            return Err(err("invalid body: must not be empty".into()));
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(err(format!(
                "invalid body: must be at most {MAX_BODY_CHARS} characters"
            )));
        }
        if front.version == 0 {
            return Err(err("invalid version: must be 1 or more".into()));
        }
        for source in &front.sources {
            if !source.url.starts_with("https://") {
                return Err(err(
                    "invalid sources: every url must start with https://".into()
                ));
            }
        }
        Ok(ContentDocument {
            path: path.to_path_buf(),
            kind,
            key: front.key.parse().map_err(field)?,
            condition,
            language: front.language.parse().map_err(field)?,
            reading_level: front.reading_level.parse().map_err(field)?,
            version: front.version,
            review_state: front.review_state.parse().map_err(field)?,
            title,
            sources: front
                .sources
                .into_iter()
                .map(|s| Source {
                    title: s.title,
                    url: s.url,
                })
                .collect(),
            seed: front.seed,
            body,
        })
    }

    /// The identity of the item this file is a version of.
    pub fn identity(&self) -> (ContentKind, &Slug, Option<&Slug>, Language, ReadingLevel) {
        (
            self.kind,
            &self.key,
            self.condition.as_ref(),
            self.language,
            self.reading_level,
        )
    }
}

/// Reads every `*.md` file under `dir` except `README.md`, sorted by path. Returns every problem
/// found (unreadable files, bad headers, two files for the same item) rather than stopping at the
/// first.
pub fn load_dir(dir: &Path) -> Result<Vec<ContentDocument>, Vec<ContentError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect_markdown(dir, &mut files, &mut errors);
    files.sort();
    let mut docs: Vec<ContentDocument> = Vec::new();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => match ContentDocument::parse(&path, &text) {
                Ok(doc) => {
                    if let Some(other) = docs.iter().find(|d| d.identity() == doc.identity()) {
                        errors.push(ContentError {
                            path: path.clone(),
                            problem: format!("describes the same item as {}", other.path.display()),
                        });
                    } else {
                        docs.push(doc);
                    }
                }
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(ContentError {
                path,
                problem: format!("cannot read: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

fn collect_markdown(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<ContentError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(ContentError {
                path: dir.to_path_buf(),
                problem: format!("cannot read folder: {e}"),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_markdown(&path, files, errors);
        } else if path.extension().is_some_and(|e| e == "md")
            && path.file_name().is_some_and(|n| n != "README.md")
        {
            files.push(path);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = "+++\nkind = \"article\"\nkey = \"what-it-is\"\ncondition = \"type2_diabetes\"\nlanguage = \"es\"\nreading_level = \"easy\"\nversion = 2\nreview_state = \"draft\"\ntitle = \"¿Qué es?\"\nseed = true\n[[sources]]\ntitle = \"MedlinePlus\"\nurl = \"https://medlineplus.gov/spanish/\"\n+++\n\nLa diabetes tipo 2 ...\n";

    #[test]
    fn parses_a_good_file() {
        let doc = ContentDocument::parse(Path::new("a.md"), GOOD).unwrap();
        assert_eq!(doc.language, Language::Spanish);
        assert_eq!(doc.reading_level, ReadingLevel::Easy);
        assert_eq!(doc.condition.unwrap().as_str(), "type2_diabetes");
        assert_eq!(doc.version, 2);
        assert_eq!(doc.sources.len(), 1);
        assert_eq!(doc.body, "La diabetes tipo 2 ...");
        assert!(doc.seed);
    }

    #[test]
    fn errors_name_file_and_field() {
        let bad = GOOD.replace("language = \"es\"", "language = \"klingon\"");
        let err = ContentDocument::parse(Path::new("content/x.md"), &bad).unwrap_err();
        assert_eq!(err.to_string().split(": ").next(), Some("content/x.md"));
        assert!(err.problem.contains("invalid language"), "{err}");

        let no_header = ContentDocument::parse(Path::new("y.md"), "just text").unwrap_err();
        assert!(no_header.problem.contains("+++"));
        let unknown = GOOD.replace("seed = true", "seed = true\ncolour = \"red\"");
        assert!(
            ContentDocument::parse(Path::new("z.md"), &unknown)
                .unwrap_err()
                .problem
                .contains("colour")
        );
        let no_condition = GOOD.replace("condition = \"type2_diabetes\"\n", "");
        assert!(
            ContentDocument::parse(Path::new("c.md"), &no_condition)
                .unwrap_err()
                .problem
                .contains("condition")
        );
        let insecure = GOOD.replace("https://medlineplus", "http://medlineplus");
        assert!(
            ContentDocument::parse(Path::new("s.md"), &insecure)
                .unwrap_err()
                .problem
                .contains("sources")
        );
    }

    #[test]
    fn load_dir_reports_every_problem_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.md"), GOOD).unwrap();
        std::fs::write(dir.path().join("sub/b.md"), GOOD).unwrap();
        std::fs::write(dir.path().join("c.md"), "no header").unwrap();
        std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
        let errors = load_dir(dir.path()).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.problem.contains("same item")));

        std::fs::remove_file(dir.path().join("c.md")).unwrap();
        std::fs::remove_file(dir.path().join("sub/b.md")).unwrap();
        assert_eq!(load_dir(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn the_shipped_content_folder_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content");
        let docs = load_dir(&dir)
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .unwrap();
        assert!(!docs.is_empty());
        assert!(
            docs.iter().all(|d| d.seed),
            "every shipped file is marked as seed content"
        );
    }
}
