//! `careloop content check|import`: validate content files and load them into the database.

use std::path::Path;

use anyhow::Context;
use careloop_content::{ContentDocument, ContentError, load_dir};

/// Validates every file under `dir` and scores each against its reading level; the error lists
/// every problem, or else every file that misses its level, one per line.
pub fn check(dir: &Path) -> anyhow::Result<usize> {
    let docs = read(dir)?;
    let misses: Vec<String> = docs
        .iter()
        .filter_map(|doc| {
            let verdict =
                careloop_literacy::assess(&doc.body, doc.language).against(doc.reading_level);
            (!verdict.fits()).then(|| format!("  {}: {verdict}", doc.path.display()))
        })
        .collect();
    if !misses.is_empty() {
        anyhow::bail!(
            "{} file(s) miss their reading level:\n{}",
            misses.len(),
            misses.join("\n")
        );
    }
    Ok(docs.len())
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

pub use careloop_store::ImportReport;

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

/// Loads `dir` into the default organization (see
/// [`careloop_store::Content::import_documents`]); in demo mode seed drafts are approved at once.
pub async fn import(
    store: &careloop_store::Store,
    dir: &Path,
    demo_mode: bool,
) -> anyhow::Result<ImportReport> {
    let docs = read(dir)?;
    let org = default_organization(store).await?;
    store
        .content()
        .import_documents(org, &docs, demo_mode)
        .await
        .with_context(|| format!("importing {}", dir.display()))
}
