//! The real PostgreSQL on 127.0.0.1:5432 (user `postgres`, trust auth): a
//! database of its own per test, and writ replicas sharing it.

use std::path::Path;

use sqlx::Connection;

use super::env::TestEnv;
use super::server::Server;
use super::time::now;

/// The PostgreSQL server every machine of this project runs.
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

/// A database of its own for one test; [`Database::drop_now`] removes it.
pub struct Database {
    /// Its name.
    pub name: String,
    /// `postgres://…/name`, for `store.url`.
    pub url: String,
}

async fn connect_admin() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&format!("{POSTGRES}/postgres"))
        .await
        .unwrap_or_else(|error| {
            panic!(
                "PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres ({error}); \
                 start it (e.g. `service postgresql start`) with trust auth for local TCP"
            )
        })
}

impl Database {
    /// Creates `writ_<test>_<pid>_<time>`.
    pub async fn create(test: &str) -> Self {
        let name = format!(
            "writ_{test}_{}_{}",
            std::process::id(),
            now().unsigned_abs()
        );
        let mut admin = connect_admin().await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        Self {
            url: format!("{POSTGRES}/{name}"),
            name,
        }
    }

    /// A connection of the test's own, to look at or tamper with the tables.
    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url).await.unwrap()
    }

    /// Drops the database, closing whatever is still connected to it.
    pub async fn drop_now(self) {
        let mut admin = connect_admin().await;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

impl TestEnv {
    /// Starts one replica: `writ serve` from `writ-<name>.toml` (the current
    /// config with `server.replica_id = name` and its own audit file), on a
    /// port of its own. Replicas of one env share the store, the issuer and
    /// the policies.
    pub async fn start_replica(&self, name: &str) -> Server {
        self.write_config();
        let toml = self
            .config_toml()
            .replace(
                "path = \"audit.jsonl\"",
                &format!("path = \"audit-{name}.jsonl\""),
            )
            .replacen(
                "[server]\n",
                &format!("[server]\nreplica_id = \"{name}\"\n"),
                1,
            );
        let config = format!("writ-{name}.toml");
        self.write(&config, &toml);
        Server::start(
            Path::new(&self.path(&config)),
            self.dir(),
            &self.pki.ca_pem(),
            &self.admin_token,
        )
        .await
    }
}
