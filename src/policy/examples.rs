//! The example policy set, embedded so dev mode and `writ demo` work from
//! any directory.

use std::path::Path;

/// File name and contents of every example file.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "schema.cedarschema",
        include_str!("../../policies/schema.cedarschema"),
    ),
    (
        "entities.json",
        include_str!("../../policies/entities.json"),
    ),
    (
        "payments.cedar",
        include_str!("../../policies/payments.cedar"),
    ),
    ("owners.cedar", include_str!("../../policies/owners.cedar")),
    ("ci.cedar", include_str!("../../policies/ci.cedar")),
    (
        "guardrails.cedar",
        include_str!("../../policies/guardrails.cedar"),
    ),
    ("admin.cedar", include_str!("../../policies/admin.cedar")),
    (
        "binding.cedar",
        include_str!("../../policies/binding.cedar"),
    ),
    ("local.cedar", include_str!("../../policies/local.cedar")),
    ("agents.cedar", include_str!("../../policies/agents.cedar")),
    (
        "transactions.cedar",
        include_str!("../../policies/transactions.cedar"),
    ),
];

/// Writes the examples into `dir` (created if needed), leaving existing files alone.
pub fn write_examples(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in EXAMPLES {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(path, text)?;
        }
    }
    Ok(())
}
