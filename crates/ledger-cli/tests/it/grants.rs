//! Every privilege the ledger's roles hold once the migrations ran and the projectors created
//! their schemas, compared with the table in `docs/security.md` ("Database roles and grants"):
//! a grant added anywhere (a migration, the projector runtime, a projector's DDL) fails this
//! test until the table says so.

use std::collections::BTreeSet;

use ledger_projector::ProjectorConfig;
use ledger_testkit::ledger::{TestLedger, eventually};

/// The roles the migrations create.
const ROLES: [&str; 3] = ["ledger_writer", "ledger_auditor", "ledger_query"];

/// How long the projectors may take to create their schemas.
const SCHEMAS_WAIT_MS: u64 = 30_000;

/// (role, object, privileges): every ACL entry naming one of `$1`'s roles (not PUBLIC's), on
/// this database, its schemas, tables, sequences, columns and functions, plus default
/// privileges and role memberships.
const GRANTS_SQL: &str = "\
WITH roles AS (SELECT oid, rolname FROM pg_roles WHERE rolname = ANY($1)),
grants (role_name, object, privilege) AS (
    SELECT r.rolname, 'database', a.privilege_type
    FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a
    JOIN roles r ON r.oid = a.grantee WHERE d.datname = current_database()
  UNION ALL
    SELECT r.rolname, 'schema ' || n.nspname, a.privilege_type
    FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a
    JOIN roles r ON r.oid = a.grantee
  UNION ALL
    SELECT r.rolname,
           CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view '
             WHEN 'm' THEN 'materialized view ' ELSE 'table ' END
             || n.nspname || '.' || c.relname,
           a.privilege_type
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN roles r ON r.oid = a.grantee
  UNION ALL
    SELECT r.rolname, 'column ' || n.nspname || '.' || c.relname || '.' || t.attname,
           a.privilege_type
    FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL aclexplode(t.attacl) a JOIN roles r ON r.oid = a.grantee
  UNION ALL
    SELECT r.rolname, 'function ' || p.oid::regprocedure::text, a.privilege_type
    FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
    JOIN roles r ON r.oid = a.grantee
  UNION ALL
    SELECT r.rolname, 'default privileges on ' || d.defaclobjtype::text, a.privilege_type
    FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a
    JOIN roles r ON r.oid = a.grantee
  UNION ALL
    SELECT r.rolname, 'member of ' || m.rolname, 'MEMBER'
    FROM pg_auth_members am JOIN roles r ON r.oid = am.member
    JOIN pg_roles m ON m.oid = am.roleid
)
SELECT role_name::text, object, string_agg(DISTINCT privilege, ', ' ORDER BY privilege)
FROM grants GROUP BY role_name, object";

/// The rows of the table `| role | object | privileges |` in the section "Database roles and
/// grants".
fn documented_grants(security_md: &str) -> BTreeSet<(String, String, String)> {
    let section = security_md
        .split("\n## ")
        .find(|section| section.starts_with("Database roles and grants"))
        .expect("docs/security.md has a section \"Database roles and grants\"");
    let (_, table) = section
        .split_once("| role | object | privileges |\n|---|---|---|\n")
        .expect("the section has a table | role | object | privileges |");
    table
        .lines()
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().replace('`', ""))
                .collect();
            assert_eq!(cells.len(), 3, "a grants row has 3 cells: {line}");
            (cells[0].clone(), cells[1].clone(), cells[2].clone())
        })
        .collect()
}

fn rendered(grants: &BTreeSet<(String, String, String)>) -> String {
    grants
        .iter()
        .map(|(role, object, privileges)| format!("| `{role}` | `{object}` | {privileges} |\n"))
        .collect()
}

#[tokio::test]
async fn every_grant_of_the_ledgers_roles_is_the_one_documented() {
    let ledger = TestLedger::new().await;
    let store = ledger.store.clone();
    let config = ProjectorConfig::default;
    let projectors = [
        ledger
            .start_projector(
                projector_customers::CustomersProjector::new(store.clone()),
                config(),
                false,
            )
            .await,
        ledger
            .start_projector(
                projector_revenue::RevenueProjector::new(store.clone(), Default::default()),
                config(),
                false,
            )
            .await,
        ledger
            .start_projector(
                projector_notify::NotifyProjector::new(store, Default::default()),
                config(),
                false,
            )
            .await,
    ];
    let client = ledger.database().client().await;
    let schemas_created = eventually(SCHEMAS_WAIT_MS, || async {
        client
            .query_one(
                "SELECT to_regclass('customers.projector_checkpoint') IS NOT NULL \
                   AND to_regclass('revenue.projector_checkpoint') IS NOT NULL \
                   AND to_regclass('notify.projector_checkpoint') IS NOT NULL",
                &[],
            )
            .await
            .is_ok_and(|row| row.get(0))
    })
    .await;
    assert!(schemas_created, "the projectors create their schemas");
    for projector in projectors {
        projector.stop().await;
    }

    let roles: Vec<&str> = ROLES.to_vec();
    let actual: BTreeSet<(String, String, String)> = client
        .query(GRANTS_SQL, &[&roles])
        .await
        .expect("grants")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let documented = documented_grants(include_str!("../../../../docs/security.md"));
    assert_eq!(
        actual,
        documented,
        "docs/security.md (\"Database roles and grants\") must list exactly the database's \
         grants, which are:\n{}",
        rendered(&actual)
    );
}
