//! `careloop content check|import`: validate content files and load them into the database.

use std::path::Path;

use anyhow::Context;
use careloop_content::{ContentDocument, ContentError, load_dir};

/// Validates every file under `dir`; the error lists every problem, one per line.
pub fn check(dir: &Path) -> anyhow::Result<usize> {
    read(dir).map(|docs| docs.len())
}

fn read(dir: &Path) -> anyhow::Result<Vec<ContentDocument>> {
    load_dir(dir).map_err(|errors: Vec<ContentError>| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!(
            "{} problem(s) in content files:\n{}",
            errors.len(),
            lines.join("\n")
        )
    })
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Files whose text became a new version.
    pub new_versions: usize,
    /// Files identical to their item's latest version.
    pub unchanged: usize,
    /// Versions approved because demo mode is on.
    pub approved: usize,
}

/// The organization that owns content and patients of a single-tenant (embedded) install.
pub const DEFAULT_ORGANIZATION: &str = "default";

pub async fn default_organization(
    store: &careloop_store::Store,
) -> anyhow::Result<careloop_core::OrganizationId> {
    let slug: careloop_core::Slug = DEFAULT_ORGANIZATION.parse()?;
    let orgs = store.organizations();
    if let Some(org) = orgs.find_by_slug(&slug).await? {
        return Ok(org.id);
    }
    Ok(orgs.create("Default organization", &slug).await?.id)
}

/// Loads `dir` into the database: a file whose title or text differs from its item's latest
/// version becomes a new draft version. In demo mode, seed drafts are approved at once (by the
/// system, with audit entries); otherwise they wait for a reviewer.
pub async fn import(
    store: &careloop_store::Store,
    dir: &Path,
    demo_mode: bool,
) -> anyhow::Result<ImportReport> {
    use careloop_core::ReviewState;
    use careloop_store::{Actor, NewContentItem, NewContentVersion};

    let docs = read(dir)?;
    let org = default_organization(store).await?;
    let content = store.content();
    let mut report = ImportReport::default();
    for doc in &docs {
        if let Some(condition) = &doc.condition {
            store
                .conditions()
                .upsert(condition, &condition.as_str().replace('_', " "))
                .await?;
        }
        let item = content
            .upsert_item(
                org,
                &NewContentItem {
                    kind: doc.kind,
                    key: doc.key.clone(),
                    condition: doc.condition.clone(),
                    topic: (doc.kind == careloop_core::ContentKind::Article)
                        .then(|| doc.key.clone()),
                    language: doc.language,
                    reading_level: doc.reading_level,
                },
            )
            .await
            .with_context(|| format!("importing {}", doc.path.display()))?;
        let versions = content.list_versions(org, item.id).await?;
        let mut version = match versions.last() {
            Some(latest) if latest.title == doc.title && latest.body == doc.body => {
                report.unchanged += 1;
                latest.clone()
            }
            _ => {
                report.new_versions += 1;
                content
                    .add_version(
                        org,
                        item.id,
                        NewContentVersion {
                            title: doc.title.clone(),
                            body: doc.body.clone(),
                            front_matter: front_matter_json(doc),
                            authored_by: None,
                        },
                    )
                    .await
                    .with_context(|| format!("importing {}", doc.path.display()))?
            }
        };
        if demo_mode && doc.seed {
            for next in [ReviewState::InReview, ReviewState::Approved] {
                if version.review_state.can_move_to(next) {
                    version = content
                        .transition(org, version.id, next, &Actor::System)
                        .await?;
                    if next == ReviewState::Approved {
                        report.approved += 1;
                    }
                }
            }
        }
    }
    tracing::info!(
        files = docs.len(),
        new_versions = report.new_versions,
        unchanged = report.unchanged,
        approved = report.approved,
        demo_mode,
        "content imported"
    );
    Ok(report)
}

fn front_matter_json(doc: &ContentDocument) -> serde_json::Value {
    serde_json::json!({
        "file": doc.path.file_name().map(|n| n.to_string_lossy().into_owned()),
        "file_version": doc.version,
        "declared_review_state": doc.review_state.as_str(),
        "seed": doc.seed,
        "sources": doc.sources.iter().map(|s| serde_json::json!({"title": s.title, "url": s.url})).collect::<Vec<_>>(),
    })
}
