//! Which parts of careloop one process runs.

use std::{fmt, str::FromStr};

/// One part of careloop that a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// HTTP: channel webhooks, web chat, staff app and API.
    Gateway,
    /// The LLM engine (in process, or taking jobs from Redis in scale-out).
    Llm,
    /// The apalis reminder workers.
    Reminders,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Gateway, Role::Llm, Role::Reminders];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Llm => "llm",
            Role::Reminders => "reminders",
        }
    }
}

/// A non-empty set of roles, parsed from `gateway,reminders` or `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles(Vec<Role>);

impl Roles {
    pub fn all() -> Self {
        Roles(Role::ALL.to_vec())
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|r| r.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for Roles {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "all" {
            return Ok(Roles::all());
        }
        let mut roles = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let role = Role::ALL
                .into_iter()
                .find(|r| r.as_str() == part)
                .ok_or_else(|| {
                    format!("unknown role '{part}'; roles are: all, gateway, llm, reminders")
                })?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        if roles.is_empty() {
            return Err("name at least one role: all, gateway, llm, reminders".into());
        }
        roles.sort();
        Ok(Roles(roles))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_all() {
        let roles: Roles = "reminders, gateway,gateway".parse().unwrap();
        assert!(roles.contains(Role::Gateway) && roles.contains(Role::Reminders));
        assert!(!roles.contains(Role::Llm));
        assert_eq!(roles.to_string(), "gateway,reminders");
        assert_eq!("all".parse::<Roles>().unwrap(), Roles::all());
    }

    #[test]
    fn rejects_unknown_and_empty() {
        assert!(
            "gateway,web"
                .parse::<Roles>()
                .unwrap_err()
                .contains("unknown role 'web'")
        );
        assert!(" , ".parse::<Roles>().is_err());
    }
}
