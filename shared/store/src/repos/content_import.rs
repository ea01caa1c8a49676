use careloop_content::ContentDocument;
use careloop_core::{ContentKind, OrganizationId, ReviewState};

use crate::StoreError;
use crate::repos::audit::Actor;
use crate::repos::content::{Content, NewContentItem, NewContentVersion};

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

impl Content<'_> {
    /// Loads content documents into the organization: a document whose title or text differs
    /// from its item's latest version becomes a new draft version. With `approve_seed` (demo
    /// mode), seed drafts are approved at once by the system, with audit entries; otherwise they
    /// wait for a reviewer.
    pub async fn import_documents(
        &self,
        org: OrganizationId,
        docs: &[ContentDocument],
        approve_seed: bool,
    ) -> Result<ImportReport, StoreError> {
        let mut report = ImportReport::default();
        for doc in docs {
            if let Some(condition) = &doc.condition {
                self.store
                    .conditions()
                    .upsert(condition, &condition.as_str().replace('_', " "))
                    .await?;
            }
            let item = self
                .upsert_item(
                    org,
                    &NewContentItem {
                        kind: doc.kind,
                        key: doc.key.clone(),
                        condition: doc.condition.clone(),
                        topic: (doc.kind == ContentKind::Article).then(|| doc.key.clone()),
                        language: doc.language,
                        reading_level: doc.reading_level,
                    },
                )
                .await?;
            let versions = self.list_versions(org, item.id).await?;
            let mut version = match versions.last() {
                Some(latest) if latest.title == doc.title && latest.body == doc.body => {
                    report.unchanged += 1;
                    latest.clone()
                }
                _ => {
                    report.new_versions += 1;
                    self.add_version(
                        org,
                        item.id,
                        NewContentVersion {
                            title: doc.title.clone(),
                            body: doc.body.clone(),
                            front_matter: front_matter_json(doc),
                            authored_by: None,
                        },
                    )
                    .await?
                }
            };
            if approve_seed && doc.seed {
                for next in [ReviewState::InReview, ReviewState::Approved] {
                    if version.review_state.can_move_to(next) {
                        version = self
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
            organization_id = %org,
            files = docs.len(),
            new_versions = report.new_versions,
            unchanged = report.unchanged,
            approved = report.approved,
            approve_seed,
            "content imported"
        );
        Ok(report)
    }
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
