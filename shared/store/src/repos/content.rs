use careloop_core::{
    ContentItemId, ContentKind, ContentVersionId, Language, OrganizationId, ReadingLevel,
    ReviewState, Slug, StaffUserId,
};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr, sea_query::OnConflict,
};

use crate::convert::{non_negative_u32, now, parse, parse_opt, required_text};
use crate::entities::{content_items as items, content_versions as versions};
use crate::repos::audit::{Actor, NewAuditEntry, append_in};
use crate::{Store, StoreError};

const ITEMS: &str = "content_items";
const VERSIONS: &str = "content_versions";

/// A slot for one piece of content: an article or a message template for a key, an optional
/// condition, a language and a reading level. Its text lives in [`ContentVersion`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentItem {
    pub id: ContentItemId,
    pub organization_id: OrganizationId,
    pub kind: ContentKind,
    /// The topic slug of an article or the key of a template.
    pub key: Slug,
    /// `None`: meant for every patient, not one condition.
    pub condition: Option<Slug>,
    pub topic: Option<Slug>,
    pub language: Language,
    pub reading_level: ReadingLevel,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContentItem {
    pub kind: ContentKind,
    pub key: Slug,
    pub condition: Option<Slug>,
    pub topic: Option<Slug>,
    pub language: Language,
    pub reading_level: ReadingLevel,
}

/// One immutable revision of an item's text. Only its review state (and the timestamps that go
/// with it) ever changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentVersion {
    pub id: ContentVersionId,
    pub content_item_id: ContentItemId,
    /// 1, 2, 3, ... per item.
    pub version: u32,
    pub title: String,
    pub body: String,
    /// Front matter as written, including `sources`.
    pub front_matter: serde_json::Value,
    pub review_state: ReviewState,
    pub authored_by: Option<StaffUserId>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub approved_by: Option<StaffUserId>,
    pub approved_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContentVersion {
    pub title: String,
    pub body: String,
    pub front_matter: serde_json::Value,
    pub authored_by: Option<StaffUserId>,
}

/// The approved version of an item, with the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedContent {
    pub item: ContentItem,
    pub version: ContentVersion,
}

/// Stored value of "no condition": the unique key treats it as one value on both backends.
const NO_CONDITION: &str = "";

fn condition_column(condition: Option<&Slug>) -> String {
    condition.map_or_else(|| NO_CONDITION.to_owned(), |c| c.as_str().to_owned())
}

impl TryFrom<items::Model> for ContentItem {
    type Error = StoreError;
    fn try_from(m: items::Model) -> Result<Self, StoreError> {
        let condition = if m.condition_code == NO_CONDITION {
            None
        } else {
            Some(parse(ITEMS, "condition_code", &m.condition_code)?)
        };
        Ok(ContentItem {
            id: ContentItemId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            kind: parse(ITEMS, "kind", &m.kind)?,
            key: parse(ITEMS, "key", &m.key)?,
            condition,
            topic: parse_opt(ITEMS, "topic", m.topic.as_deref())?,
            language: parse(ITEMS, "language", &m.language)?,
            reading_level: parse(ITEMS, "reading_level", &m.reading_level)?,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

impl TryFrom<versions::Model> for ContentVersion {
    type Error = StoreError;
    fn try_from(m: versions::Model) -> Result<Self, StoreError> {
        Ok(ContentVersion {
            id: ContentVersionId::from_uuid(m.id),
            content_item_id: ContentItemId::from_uuid(m.content_item_id),
            version: non_negative_u32(VERSIONS, "version", m.version)?,
            title: m.title,
            body: m.body,
            front_matter: m.front_matter,
            review_state: parse(VERSIONS, "review_state", &m.review_state)?,
            authored_by: m.authored_by.map(StaffUserId::from_uuid),
            submitted_at: m.submitted_at,
            approved_by: m.approved_by.map(StaffUserId::from_uuid),
            approved_at: m.approved_at,
            retired_at: m.retired_at,
            created_at: m.created_at,
        })
    }
}

/// `store.content()`: content items, their versions and the review workflow.
#[derive(Debug, Clone, Copy)]
pub struct Content<'a> {
    pub(crate) store: &'a Store,
}

async fn item_in<C: ConnectionTrait>(
    db: &C,
    org: OrganizationId,
    id: ContentItemId,
) -> Result<Option<items::Model>, StoreError> {
    Ok(items::Entity::find_by_id(id.as_uuid())
        .filter(items::Column::OrganizationId.eq(org.as_uuid()))
        .one(db)
        .await?)
}

/// The version, if its item belongs to `org`.
async fn version_in<C: ConnectionTrait>(
    db: &C,
    org: OrganizationId,
    id: ContentVersionId,
) -> Result<Option<(versions::Model, items::Model)>, StoreError> {
    let Some(version) = versions::Entity::find_by_id(id.as_uuid()).one(db).await? else {
        return Ok(None);
    };
    let Some(item) = item_in(db, org, ContentItemId::from_uuid(version.content_item_id)).await?
    else {
        return Ok(None);
    };
    Ok(Some((version, item)))
}

impl Content<'_> {
    /// Creates the item for (key, condition, language, reading level), or updates the kind and
    /// topic of the existing one; returns it either way.
    pub async fn upsert_item(
        &self,
        org: OrganizationId,
        new: &NewContentItem,
    ) -> Result<ContentItem, StoreError> {
        let db = self.store.connection();
        let at = now();
        items::Entity::insert(items::ActiveModel {
            id: Set(ContentItemId::new().as_uuid()),
            organization_id: Set(org.as_uuid()),
            kind: Set(new.kind.as_str().to_owned()),
            key: Set(new.key.as_str().to_owned()),
            condition_code: Set(condition_column(new.condition.as_ref())),
            topic: Set(new.topic.as_ref().map(|t| t.as_str().to_owned())),
            language: Set(new.language.to_string()),
            reading_level: Set(new.reading_level.as_str().to_owned()),
            created_at: Set(at),
            updated_at: Set(at),
        })
        .on_conflict(
            OnConflict::columns([
                items::Column::OrganizationId,
                items::Column::Key,
                items::Column::ConditionCode,
                items::Column::Language,
                items::Column::ReadingLevel,
            ])
            .update_columns([
                items::Column::Kind,
                items::Column::Topic,
                items::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
        self.find_item(
            org,
            &new.key,
            new.condition.as_ref(),
            new.language,
            new.reading_level,
        )
        .await?
        .ok_or(StoreError::NotFound {
            entity: "content item",
        })
    }

    pub async fn get_item(
        &self,
        org: OrganizationId,
        id: ContentItemId,
    ) -> Result<Option<ContentItem>, StoreError> {
        item_in(self.store.connection(), org, id)
            .await?
            .map(ContentItem::try_from)
            .transpose()
    }

    /// The item with exactly this key, condition, language and level (no fallback).
    pub async fn find_item(
        &self,
        org: OrganizationId,
        key: &Slug,
        condition: Option<&Slug>,
        language: Language,
        reading_level: ReadingLevel,
    ) -> Result<Option<ContentItem>, StoreError> {
        items::Entity::find()
            .filter(items::Column::OrganizationId.eq(org.as_uuid()))
            .filter(items::Column::Key.eq(key.as_str()))
            .filter(items::Column::ConditionCode.eq(condition_column(condition)))
            .filter(items::Column::Language.eq(language.to_string()))
            .filter(items::Column::ReadingLevel.eq(reading_level.as_str()))
            .one(self.store.connection())
            .await?
            .map(ContentItem::try_from)
            .transpose()
    }

    /// Every item of the organization, by key.
    pub async fn list_items(&self, org: OrganizationId) -> Result<Vec<ContentItem>, StoreError> {
        items::Entity::find()
            .filter(items::Column::OrganizationId.eq(org.as_uuid()))
            .order_by_asc(items::Column::Key)
            .order_by_asc(items::Column::ConditionCode)
            .order_by_asc(items::Column::Language)
            .order_by_asc(items::Column::ReadingLevel)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(ContentItem::try_from)
            .collect()
    }

    /// The approved version of every item of the organization that has one (the newest approved
    /// version when several are), in the order of [`Content::list_items`]. Two queries, so a
    /// conversation engine can load its whole library at once.
    pub async fn list_approved(
        &self,
        org: OrganizationId,
    ) -> Result<Vec<ApprovedContent>, StoreError> {
        let items = self.list_items(org).await?;
        let mut newest: std::collections::HashMap<uuid::Uuid, versions::Model> =
            std::collections::HashMap::new();
        let approved = versions::Entity::find()
            .filter(versions::Column::ReviewState.eq(ReviewState::Approved.as_str()))
            .filter(
                versions::Column::ContentItemId.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(items::Column::Id)
                        .from(items::Entity)
                        .and_where(items::Column::OrganizationId.eq(org.as_uuid()))
                        .to_owned(),
                ),
            )
            .all(self.store.connection())
            .await?;
        for v in approved {
            match newest.get(&v.content_item_id) {
                Some(seen) if seen.version >= v.version => {}
                _ => {
                    newest.insert(v.content_item_id, v);
                }
            }
        }
        items
            .into_iter()
            .filter_map(|item| {
                newest.remove(&item.id.as_uuid()).map(|v| {
                    Ok(ApprovedContent {
                        item,
                        version: ContentVersion::try_from(v)?,
                    })
                })
            })
            .collect()
    }

    /// Adds the next version (highest number + 1) of an item, as a draft.
    pub async fn add_version(
        &self,
        org: OrganizationId,
        item: ContentItemId,
        new: NewContentVersion,
    ) -> Result<ContentVersion, StoreError> {
        let title = required_text("title", &new.title, 300)?;
        if new.body.trim().is_empty() {
            return Err(careloop_core::ParseError::new("body", "must not be empty").into());
        }
        let txn = self.store.begin_write().await?;
        if item_in(&txn, org, item).await?.is_none() {
            return Err(StoreError::NotFound {
                entity: "content item",
            });
        }
        let max: Option<i32> = versions::Entity::find()
            .select_only()
            .column_as(versions::Column::Version.max(), "max_version")
            .filter(versions::Column::ContentItemId.eq(item.as_uuid()))
            .into_tuple::<Option<i32>>()
            .one(&txn)
            .await?
            .flatten();
        let model = versions::ActiveModel {
            id: Set(ContentVersionId::new().as_uuid()),
            content_item_id: Set(item.as_uuid()),
            version: Set(max.unwrap_or(0) + 1),
            title: Set(title),
            body: Set(new.body),
            front_matter: Set(new.front_matter),
            review_state: Set(ReviewState::Draft.as_str().to_owned()),
            authored_by: Set(new.authored_by.map(|s| s.as_uuid())),
            submitted_at: Set(None),
            approved_by: Set(None),
            approved_at: Set(None),
            retired_at: Set(None),
            created_at: Set(now()),
        }
        .insert(&txn)
        .await
        .map_err(|e| StoreError::conflict_or_db(e, "content version number"))?;
        txn.commit().await?;
        let version = ContentVersion::try_from(model)?;
        tracing::info!(organization_id = %org, content_item_id = %item, version = version.version, "content version added");
        Ok(version)
    }

    pub async fn get_version(
        &self,
        org: OrganizationId,
        id: ContentVersionId,
    ) -> Result<Option<ContentVersion>, StoreError> {
        version_in(self.store.connection(), org, id)
            .await?
            .map(|(v, _)| ContentVersion::try_from(v))
            .transpose()
    }

    /// Every version of an item, oldest first.
    pub async fn list_versions(
        &self,
        org: OrganizationId,
        item: ContentItemId,
    ) -> Result<Vec<ContentVersion>, StoreError> {
        let db = self.store.connection();
        if item_in(db, org, item).await?.is_none() {
            return Err(StoreError::NotFound {
                entity: "content item",
            });
        }
        versions::Entity::find()
            .filter(versions::Column::ContentItemId.eq(item.as_uuid()))
            .order_by_asc(versions::Column::Version)
            .all(db)
            .await?
            .into_iter()
            .map(ContentVersion::try_from)
            .collect()
    }

    /// Moves a version through the review workflow ([`ReviewState::can_move_to`]); anything else
    /// is [`StoreError::InvalidTransition`]. Approving retires the item's previously approved
    /// version. Each state change appends an audit entry in the same transaction.
    pub async fn transition(
        &self,
        org: OrganizationId,
        id: ContentVersionId,
        next: ReviewState,
        actor: &Actor,
    ) -> Result<ContentVersion, StoreError> {
        let txn = self.store.begin_write().await?;
        let (version, item) = version_in(&txn, org, id)
            .await?
            .ok_or(StoreError::NotFound {
                entity: "content version",
            })?;
        let current: ReviewState = parse(VERSIONS, "review_state", &version.review_state)?;
        if !current.can_move_to(next) {
            return Err(StoreError::InvalidTransition {
                from: current,
                to: next,
            });
        }
        let at = now();
        let item_id = version.content_item_id;

        if next == ReviewState::Approved {
            let previous = versions::Entity::find()
                .filter(versions::Column::ContentItemId.eq(item_id))
                .filter(versions::Column::ReviewState.eq(ReviewState::Approved.as_str()))
                .filter(versions::Column::Id.ne(version.id))
                .all(&txn)
                .await?;
            for old in previous {
                versions::Entity::update_many()
                    .col_expr(
                        versions::Column::ReviewState,
                        Expr::value(ReviewState::Retired.as_str()),
                    )
                    .col_expr(versions::Column::RetiredAt, Expr::value(Some(at)))
                    .filter(versions::Column::Id.eq(old.id))
                    .exec(&txn)
                    .await?;
                append_in(
                    &txn,
                    transition_entry(
                        org,
                        actor,
                        &old,
                        item_id,
                        ReviewState::Approved,
                        ReviewState::Retired,
                        Some(version.id),
                    ),
                )
                .await?;
            }
        }

        let mut update = versions::Entity::update_many()
            .col_expr(versions::Column::ReviewState, Expr::value(next.as_str()));
        match next {
            ReviewState::InReview => {
                update = update.col_expr(versions::Column::SubmittedAt, Expr::value(Some(at)));
            }
            ReviewState::Approved => {
                let approver = match actor {
                    Actor::Staff(s) => Some(s.as_uuid()),
                    _ => None,
                };
                update = update
                    .col_expr(versions::Column::ApprovedBy, Expr::value(approver))
                    .col_expr(versions::Column::ApprovedAt, Expr::value(Some(at)));
            }
            ReviewState::Retired => {
                update = update.col_expr(versions::Column::RetiredAt, Expr::value(Some(at)));
            }
            ReviewState::Draft => {}
        }
        // Guarded by the state read above, so a concurrent transition cannot be overwritten.
        let res = update
            .filter(versions::Column::Id.eq(version.id))
            .filter(versions::Column::ReviewState.eq(current.as_str()))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(StoreError::Conflict {
                what: "concurrent review state change",
            });
        }
        append_in(
            &txn,
            transition_entry(org, actor, &version, item_id, current, next, None),
        )
        .await?;
        let updated = versions::Entity::find_by_id(version.id)
            .one(&txn)
            .await?
            .ok_or(StoreError::NotFound {
                entity: "content version",
            })?;
        txn.commit().await?;
        tracing::info!(
            organization_id = %org,
            content_item_id = %item.id,
            content_version_id = %id,
            from = %current,
            to = %next,
            "content version transitioned"
        );
        ContentVersion::try_from(updated)
    }

    /// The approved version for exactly this key, condition, language and reading level.
    pub async fn get_approved(
        &self,
        org: OrganizationId,
        key: &Slug,
        condition: Option<&Slug>,
        language: Language,
        reading_level: ReadingLevel,
    ) -> Result<Option<ApprovedContent>, StoreError> {
        let Some(item) = self
            .find_item(org, key, condition, language, reading_level)
            .await?
        else {
            return Ok(None);
        };
        let version = versions::Entity::find()
            .filter(versions::Column::ContentItemId.eq(item.id.as_uuid()))
            .filter(versions::Column::ReviewState.eq(ReviewState::Approved.as_str()))
            .order_by_desc(versions::Column::Version)
            .one(self.store.connection())
            .await?;
        match version {
            None => Ok(None),
            Some(v) => Ok(Some(ApprovedContent {
                item,
                version: ContentVersion::try_from(v)?,
            })),
        }
    }
}

fn transition_entry(
    org: OrganizationId,
    actor: &Actor,
    version: &versions::Model,
    item_id: uuid::Uuid,
    from: ReviewState,
    to: ReviewState,
    superseded_by: Option<uuid::Uuid>,
) -> NewAuditEntry {
    let mut details = serde_json::json!({
        "content_item_id": item_id.to_string(),
        "version": version.version,
        "from": from.as_str(),
        "to": to.as_str(),
    });
    if let (Some(by), Some(map)) = (superseded_by, details.as_object_mut()) {
        map.insert(
            "superseded_by".to_owned(),
            serde_json::Value::String(by.to_string()),
        );
    }
    NewAuditEntry {
        organization_id: Some(org),
        actor: *actor,
        action: "content_version.transition".to_owned(),
        entity_type: "content_version".to_owned(),
        entity_id: version.id.to_string(),
        details,
    }
}
