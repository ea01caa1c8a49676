//! Test 5: the review workflow is enforced, audited, and approving a version retires the
//! previous one; the audit log refuses UPDATE and DELETE even from raw SQL.

use careloop_core::*;
use careloop_store::*;

use crate::common::{self, on_both_backends};
use crate::fixtures::*;

on_both_backends!(
    review_workflow_is_enforced_and_audited,
    audit_log_is_append_only_in_the_database
);

fn draft(title: &str, body: &str) -> NewContentVersion {
    NewContentVersion {
        title: title.to_owned(),
        body: body.to_owned(),
        front_matter: serde_json::json!({"sources": ["WHO fact sheet"]}),
        authored_by: None,
    }
}

async fn review_workflow_is_enforced_and_audited(store: &Store) {
    let org = org(store, "clinic").await;
    let reviewer = staff(store, org.id, "reviewer@example.org", Role::Reviewer).await;
    let actor = Actor::Staff(reviewer.id);
    let key = slug("hypoglycemia");
    let item = store
        .content()
        .upsert_item(
            org.id,
            &NewContentItem {
                kind: ContentKind::Article,
                key: key.clone(),
                condition: Some(slug("type2_diabetes")),
                topic: None,
                language: Language::English,
                reading_level: ReadingLevel::Easy,
            },
        )
        .await
        .unwrap();
    let cond = slug("type2_diabetes");
    let approved = |store: &Store| {
        let (key, cond) = (key.clone(), cond.clone());
        let store = store.clone();
        async move {
            store
                .content()
                .get_approved(
                    org.id,
                    &key,
                    Some(&cond),
                    Language::English,
                    ReadingLevel::Easy,
                )
                .await
                .unwrap()
        }
    };
    let v1 = store
        .content()
        .add_version(org.id, item.id, draft("Low sugar", "Eat 15 g of sugar."))
        .await
        .unwrap();
    assert_eq!(approved(store).await, None, "a draft is never served");

    // Draft → Approved skips review: a typed error, and nothing changes.
    match store
        .content()
        .transition(org.id, v1.id, ReviewState::Approved, &actor)
        .await
    {
        Err(StoreError::InvalidTransition { from, to }) => {
            assert_eq!((from, to), (ReviewState::Draft, ReviewState::Approved));
        }
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    assert_eq!(
        store
            .content()
            .get_version(org.id, v1.id)
            .await
            .unwrap()
            .unwrap()
            .review_state,
        ReviewState::Draft
    );
    assert!(
        store
            .audit()
            .list_for_entity(org.id, "content_version", &v1.id.to_string())
            .await
            .unwrap()
            .is_empty()
    );

    let in_review = store
        .content()
        .transition(org.id, v1.id, ReviewState::InReview, &actor)
        .await
        .unwrap();
    assert_eq!(in_review.review_state, ReviewState::InReview);
    assert!(in_review.submitted_at.is_some());
    let v1_approved = store
        .content()
        .transition(org.id, v1.id, ReviewState::Approved, &actor)
        .await
        .unwrap();
    assert_eq!(v1_approved.review_state, ReviewState::Approved);
    assert_eq!(v1_approved.approved_by, Some(reviewer.id));
    assert!(v1_approved.approved_at.is_some());
    assert_eq!(
        (v1_approved.title.as_str(), v1_approved.body.as_str()),
        ("Low sugar", "Eat 15 g of sugar.")
    );

    let v1_audit = store
        .audit()
        .list_for_entity(org.id, "content_version", &v1.id.to_string())
        .await
        .unwrap();
    assert_eq!(v1_audit.len(), 2, "{v1_audit:?}");
    assert!(
        v1_audit
            .iter()
            .all(|e| e.actor == actor && e.action == "content_version.transition")
    );
    assert_eq!(v1_audit[0].details["to"], "in_review");
    assert_eq!(v1_audit[1].details["from"], "in_review");
    assert_eq!(v1_audit[1].details["to"], "approved");
    let served = approved(store).await.unwrap();
    assert_eq!(served.version.id, v1.id);
    assert_eq!(served.item.id, item.id);

    // v2 goes through review; approving it retires v1.
    let v2 = store
        .content()
        .add_version(
            org.id,
            item.id,
            draft("Low blood sugar", "Eat or drink 15 g of sugar."),
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    store
        .content()
        .transition(org.id, v2.id, ReviewState::InReview, &actor)
        .await
        .unwrap();
    // A reviewer may send it back, then it is resubmitted.
    store
        .content()
        .transition(org.id, v2.id, ReviewState::Draft, &actor)
        .await
        .unwrap();
    store
        .content()
        .transition(org.id, v2.id, ReviewState::InReview, &actor)
        .await
        .unwrap();
    let v2_approved = store
        .content()
        .transition(org.id, v2.id, ReviewState::Approved, &actor)
        .await
        .unwrap();
    assert_eq!(v2_approved.review_state, ReviewState::Approved);

    let v1_now = store
        .content()
        .get_version(org.id, v1.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v1_now.review_state, ReviewState::Retired);
    assert!(v1_now.retired_at.is_some());
    assert_eq!(v1_now.body, v1.body, "retiring never touches the text");
    let v1_audit = store
        .audit()
        .list_for_entity(org.id, "content_version", &v1.id.to_string())
        .await
        .unwrap();
    assert_eq!(v1_audit.len(), 3);
    assert_eq!(v1_audit[2].details["to"], "retired");
    assert_eq!(v1_audit[2].details["superseded_by"], v2.id.to_string());
    assert_eq!(
        store
            .audit()
            .list_for_entity(org.id, "content_version", &v2.id.to_string())
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(approved(store).await.unwrap().version.id, v2.id);
    let versions = store
        .content()
        .list_versions(org.id, item.id)
        .await
        .unwrap();
    assert_eq!(
        versions.iter().map(|v| v.review_state).collect::<Vec<_>>(),
        vec![ReviewState::Retired, ReviewState::Approved]
    );

    // Retired is final.
    assert!(matches!(
        store
            .content()
            .transition(org.id, v1.id, ReviewState::Approved, &actor)
            .await,
        Err(StoreError::InvalidTransition {
            from: ReviewState::Retired,
            to: ReviewState::Approved
        })
    ));
    // Another organization cannot move this organization's content.
    let other = crate::fixtures::org(store, "other").await;
    assert!(matches!(
        store
            .content()
            .transition(other.id, v2.id, ReviewState::Retired, &Actor::System)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // Retiring the approved version leaves nothing to serve.
    store
        .content()
        .transition(org.id, v2.id, ReviewState::Retired, &actor)
        .await
        .unwrap();
    assert_eq!(approved(store).await, None);
}

async fn audit_log_is_append_only_in_the_database(store: &Store) {
    let org = org(store, "clinic").await;
    let entry = store
        .audit()
        .append(NewAuditEntry {
            organization_id: Some(org.id),
            actor: Actor::System,
            action: "test.appended".to_owned(),
            entity_type: "test".to_owned(),
            entity_id: "1".to_owned(),
            details: serde_json::json!({"n": 1}),
        })
        .await
        .unwrap();
    let count_sql = "SELECT count(*) AS n FROM audit_log";
    assert_eq!(common::count(store, count_sql).await, 1);

    let update = common::raw(store, "UPDATE audit_log SET action = 'tampered'").await;
    let err = update.expect_err("UPDATE on audit_log must fail");
    assert!(
        err.to_string()
            .contains(careloop_migrations::APPEND_ONLY_MESSAGE),
        "{err}"
    );

    let delete = common::raw(store, "DELETE FROM audit_log").await;
    let err = delete.expect_err("DELETE on audit_log must fail");
    assert!(
        err.to_string()
            .contains(careloop_migrations::APPEND_ONLY_MESSAGE),
        "{err}"
    );

    if store.backend() == "postgres" {
        assert!(common::raw(store, "TRUNCATE audit_log").await.is_err());
    }

    assert_eq!(common::count(store, count_sql).await, 1);
    assert_eq!(store.audit().list(org.id, 10).await.unwrap(), vec![entry]);
    // Appending still works after the refused statements.
    store
        .audit()
        .append(NewAuditEntry {
            organization_id: None,
            actor: Actor::System,
            action: "test.appended".to_owned(),
            entity_type: "test".to_owned(),
            entity_id: "2".to_owned(),
            details: serde_json::json!({}),
        })
        .await
        .unwrap();
    assert_eq!(common::count(store, count_sql).await, 2);
}
