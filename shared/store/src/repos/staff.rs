use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash::rand_core::OsRng};
use careloop_core::{DisplayName, EmailAddress, OrganizationId, Role, StaffUserId};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};

use crate::convert::{now, parse};
use crate::entities::staff_users::{ActiveModel, Column, Entity, Model};
use crate::repos::updated_one;
use crate::{Store, StoreError};

const TABLE: &str = "staff_users";

/// A member of an organization's care team. The password hash never leaves the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffUser {
    pub id: StaffUserId,
    pub organization_id: OrganizationId,
    pub email: EmailAddress,
    pub display_name: DisplayName,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<Model> for StaffUser {
    type Error = StoreError;
    fn try_from(m: Model) -> Result<Self, StoreError> {
        Ok(StaffUser {
            id: StaffUserId::from_uuid(m.id),
            organization_id: OrganizationId::from_uuid(m.organization_id),
            email: parse(TABLE, "email", &m.email)?,
            display_name: parse(TABLE, "display_name", &m.display_name)?,
            role: parse(TABLE, "role", &m.role)?,
            active: m.active,
            created_at: m.created_at,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStaffUser {
    pub email: EmailAddress,
    pub display_name: DisplayName,
    pub role: Role,
}

/// `store.staff_users()`.
#[derive(Debug, Clone, Copy)]
pub struct StaffUsers<'a> {
    pub(crate) store: &'a Store,
}

/// Hashes with Argon2id (default parameters) into a PHC string, off the async executor.
async fn hash_password(password: &str) -> Result<String, StoreError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| StoreError::PasswordHash)
    })
    .await
    .map_err(|_| StoreError::PasswordHash)?
}

/// Checks a password against a PHC string, off the async executor. A malformed stored hash is
/// [`StoreError::Corrupt`].
async fn check_password(password: &str, phc: String) -> Result<bool, StoreError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc).map_err(|_| StoreError::Corrupt {
            table: TABLE,
            column: "password_hash",
        })?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|_| StoreError::PasswordHash)?
}

/// A real hash of a random value, checked when no user matches so that "no such user" takes as
/// long as "wrong password" and does not reveal which emails exist.
async fn dummy_hash() -> Option<String> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Some(h.clone());
    }
    let h = hash_password(&uuid::Uuid::new_v4().to_string())
        .await
        .ok()?;
    Some(DUMMY.get_or_init(|| h).clone())
}

fn validate_password(password: &str) -> Result<(), StoreError> {
    if password.is_empty() {
        return Err(careloop_core::ParseError::new("password", "must not be empty").into());
    }
    Ok(())
}

impl StaffUsers<'_> {
    /// Creates a staff user with an Argon2id hash of `password`. The same email twice in one
    /// organization is [`StoreError::Conflict`].
    pub async fn create(
        &self,
        org: OrganizationId,
        new: NewStaffUser,
        password: &str,
    ) -> Result<StaffUser, StoreError> {
        validate_password(password)?;
        let hash = hash_password(password).await?;
        let model = ActiveModel {
            id: Set(StaffUserId::new().as_uuid()),
            organization_id: Set(org.as_uuid()),
            email: Set(new.email.as_str().to_owned()),
            display_name: Set(new.display_name.as_str().to_owned()),
            role: Set(new.role.as_str().to_owned()),
            password_hash: Set(hash),
            active: Set(true),
            created_at: Set(now()),
        }
        .insert(self.store.connection())
        .await
        .map_err(|e| StoreError::conflict_or_db(e, "staff user email"))?;
        let user = StaffUser::try_from(model)?;
        tracing::info!(organization_id = %org, staff_user_id = %user.id, role = %user.role, "staff user created");
        Ok(user)
    }

    pub async fn get(
        &self,
        org: OrganizationId,
        id: StaffUserId,
    ) -> Result<Option<StaffUser>, StoreError> {
        Entity::find_by_id(id.as_uuid())
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .one(self.store.connection())
            .await?
            .map(StaffUser::try_from)
            .transpose()
    }

    pub async fn find_by_email(
        &self,
        org: OrganizationId,
        email: &EmailAddress,
    ) -> Result<Option<StaffUser>, StoreError> {
        self.model_by_email(org, email)
            .await?
            .map(StaffUser::try_from)
            .transpose()
    }

    async fn model_by_email(
        &self,
        org: OrganizationId,
        email: &EmailAddress,
    ) -> Result<Option<Model>, StoreError> {
        Ok(Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .filter(Column::Email.eq(email.as_str()))
            .one(self.store.connection())
            .await?)
    }

    /// The active user with this email in this organization, if `password` is theirs; `None` for
    /// an unknown email, a wrong password or a deactivated user alike.
    pub async fn verify_password(
        &self,
        org: OrganizationId,
        email: &EmailAddress,
        password: &str,
    ) -> Result<Option<StaffUser>, StoreError> {
        let Some(model) = self.model_by_email(org, email).await? else {
            if let Some(dummy) = dummy_hash().await {
                let _ = check_password(password, dummy).await;
            }
            return Ok(None);
        };
        let ok = check_password(password, model.password_hash.clone()).await?;
        if !ok || !model.active {
            tracing::info!(organization_id = %org, staff_user_id = %model.id, "staff login rejected");
            return Ok(None);
        }
        StaffUser::try_from(model).map(Some)
    }

    /// Every staff user of the organization, by email.
    pub async fn list(&self, org: OrganizationId) -> Result<Vec<StaffUser>, StoreError> {
        Entity::find()
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .order_by_asc(Column::Email)
            .all(self.store.connection())
            .await?
            .into_iter()
            .map(StaffUser::try_from)
            .collect()
    }

    pub async fn set_password(
        &self,
        org: OrganizationId,
        id: StaffUserId,
        password: &str,
    ) -> Result<(), StoreError> {
        validate_password(password)?;
        let hash = hash_password(password).await?;
        let res = Entity::update_many()
            .col_expr(Column::PasswordHash, Expr::value(hash))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "staff user")
    }

    pub async fn set_active(
        &self,
        org: OrganizationId,
        id: StaffUserId,
        active: bool,
    ) -> Result<(), StoreError> {
        let res = Entity::update_many()
            .col_expr(Column::Active, Expr::value(active))
            .filter(Column::Id.eq(id.as_uuid()))
            .filter(Column::OrganizationId.eq(org.as_uuid()))
            .exec(self.store.connection())
            .await?;
        updated_one(res.rows_affected, "staff user")
    }
}
